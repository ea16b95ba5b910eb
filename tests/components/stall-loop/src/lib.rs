//! `migrate-to-postgres` lists the source's tables in a loop, forever. Every call is a cheap
//! database call, so the CPU limit (compute without calling the host) never fires, and no row
//! ever moves. Only a limit on time without progress (`--stall-limit`) ends it before the job's
//! wall-clock limit.

include!("../../shell.rs");

fn hostile(source: &Handle, _target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    let mut calls: u64 = 0;
    loop {
        let _ = source.list_tables();
        calls += 1;
        if calls % 100_000 == 0 {
            events::log(Level::Debug, &format!("stall-loop: {calls} calls"));
        }
    }
}
