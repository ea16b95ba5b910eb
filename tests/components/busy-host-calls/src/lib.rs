//! `migrate-to-postgres` spins forever, but calls the host (`events.log` with an empty debug
//! line) on every iteration. A CPU cap measured as "time computing without calling the host"
//! never fires; a rate-limited log drops the lines but still returns. Only a total CPU or
//! wall-clock budget for the job ends it.

include!("../../shell.rs");

fn hostile(_source: &Handle, _target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    loop {
        events::log(Level::Debug, "");
    }
}
