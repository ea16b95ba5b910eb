//! `migrate-to-postgres` sleeps through WASI (`wasi:clocks` + `wasi:io/poll`), an hour at a
//! time, forever. It computes nothing, so a CPU cap that only counts time spent running wasm
//! never fires: only a wall-clock deadline on the job (or on host calls) ends it.

include!("../../shell.rs");

fn hostile(_source: &Handle, _target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
