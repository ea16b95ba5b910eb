//! `migrate-to-postgres` loads 3 000 rows into a table of its own, then queries a three-way
//! cross join of it (27 billion rows to count): a statement the SQL allowlist accepts, on a
//! table the job created, that keeps PostgreSQL busy for hours. The host's time limit or a
//! cancellation must end the statement on the server too, not only stop waiting for it, and
//! remove the database the job created.

include!("../../shell.rs");

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "numbers", "n integer NOT NULL")?;
    let writer = target.bulk_load("numbers", &["n".to_string()]).map_err(|e| failure(e.message))?;
    let n = 3000;
    let batch = Batch {
        rows: n,
        columns: vec![ColumnValues {
            tags: vec![ValueTag::Integer; n as usize],
            numbers: (0..n as i64).collect(),
            bytes: Vec::new(),
            ends: vec![0; n as usize],
        }],
    };
    writer.write(&batch).map_err(|e| failure(e.message))?;
    writer.finish().map_err(|e| failure(e.message))?;
    events::log(Level::Info, "runaway-query: counting the cross join");
    match target.query("SELECT count(*) FROM public.numbers a, public.numbers b, public.numbers c") {
        Ok(_) => Err(failure("runaway-query: the cross join finished?")),
        Err(e) => Err(failure(format!("runaway-query: {:?}: {}", e.kind, e.message))),
    }
}
