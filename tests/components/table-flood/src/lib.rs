//! `migrate-to-postgres` creates tables in its target's transaction until the host refuses one
//! (each `CREATE TABLE` holds locks in PostgreSQL's shared lock table until the job ends: thousands
//! of them starve every other database of the server), then fails with the host's refusal. The
//! host must stop it at its object limit, well before the lock table fills.

include!("../../shell.rs");

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    for i in 0..20_000 {
        if let Err(e) = create_table(target, &format!("flood_{i}"), "id integer") {
            return Err(failure(format!("table-flood: refused after {i} tables: {}", e.message)));
        }
    }
    Err(failure("table-flood: 20000 tables created, none refused"))
}
