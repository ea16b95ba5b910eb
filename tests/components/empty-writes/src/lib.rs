//! `migrate-to-postgres` opens a bulk load and writes batches in a loop: zero-row batches for
//! the first 2 s, then one-row batches, until the host stops it. Every write is a real host
//! call, so only the job's time limit ends it; meanwhile each write would add a progress
//! event. The host must send no event for an empty write and coalesce the rest (at most a
//! few per second per table). If the loop ever completes the component fails with
//! `empty-writes: wrote N batches without being stopped`.

include!("../../shell.rs");

const BATCHES: u64 = 1_000_000_000;
const EMPTY_FOR: std::time::Duration = std::time::Duration::from_secs(2);

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "users", USERS_COLUMNS)?;
    let writer = target
        .bulk_load("users", &["did".to_string(), "pk".to_string()])
        .map_err(|e| failure(format!("empty-writes: bulk-load failed: {:?}: {}", e.kind, e.message)))?;
    let started = std::time::Instant::now();
    for i in 0..BATCHES {
        let batch = if started.elapsed() < EMPTY_FOR {
            Batch { rows: 0, columns: vec![text_column(&[]), text_column(&[])] }
        } else {
            let did = format!("did-{i}");
            Batch { rows: 1, columns: vec![text_column(&[&did]), text_column(&["pk"])] }
        };
        BulkWriter::write(&writer, &batch)
            .map_err(|e| failure(format!("empty-writes: write {i} failed: {:?}: {}", e.kind, e.message)))?;
    }
    Err(failure(format!("empty-writes: wrote {BATCHES} batches without being stopped")))
}
