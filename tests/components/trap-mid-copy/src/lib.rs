//! `migrate-to-postgres` creates `users`, starts `bulk-load("users", ["did", "pk"])`, writes one
//! valid batch of two rows, then traps (`unreachable`) with the load still open. The host must
//! report the trap and roll the target back: no `users` table, no rows.

include!("../../shell.rs");

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "users", USERS_COLUMNS)?;
    let writer = target
        .bulk_load("users", &["did".to_string(), "pk".to_string()])
        .map_err(|e| failure(format!("trap-mid-copy: bulk-load failed: {:?}: {}", e.kind, e.message)))?;
    let batch = Batch {
        rows: 2,
        columns: vec![
            text_column(&["z1TrapMidCopyDid000000000000000001", "z1TrapMidCopyDid000000000000000002"]),
            text_column(&["pk-1", "pk-2"]),
        ],
    };
    writer
        .write(&batch)
        .map_err(|e| failure(format!("trap-mid-copy: the valid batch was refused: {:?}: {}", e.kind, e.message)))?;
    events::log(Level::Info, "trap-mid-copy: one batch written, trapping now");
    core::arch::wasm32::unreachable()
}
