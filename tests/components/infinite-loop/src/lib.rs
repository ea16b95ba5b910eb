//! `migrate-to-postgres` spins forever without calling the host: only a CPU cap (epoch
//! deadline or fuel) can stop it.

include!("../../shell.rs");

fn hostile(_source: &Handle, _target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
