//! The PostgreSQL databases a job works with, beyond the migration transactions themselves:
//! the admin connection (version check), which names a plan may use, and removing the
//! databases a failed job created.

use super::outcome::JobError;
use crate::backend::postgres::PgServer;
use crate::text::printable;
use sqlx::postgres::PgConnection;

/// A connection to the server's admin database, refused for a server too old to migrate to.
pub(super) async fn admin(server: &PgServer) -> Result<PgConnection, JobError> {
    let mut admin = server.connect_admin().await.map_err(JobError::Config)?;
    server.check_version(&mut admin).await.map_err(JobError::Config)?;
    Ok(admin)
}

/// Refuse database names a migration must never touch: the server's own and templates.
pub(super) fn check_target_name(name: &str, server: &PgServer) -> Result<(), JobError> {
    let reserved = ["postgres", "template0", "template1"];
    if reserved.contains(&name) || server.admin_database() == Some(name) {
        return Err(JobError::Failed(format!(
            "the migration component planned to use database {}, which is not a Blocklet database",
            printable(name)
        )));
    }
    Ok(())
}

/// Drop a database this job created. Its rolled-back connections close asynchronously, so a
/// "being accessed by other users" refusal is retried for a while.
pub(super) async fn drop_created(server: &PgServer, admin: &mut PgConnection, name: &str) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..20 {
        match server.drop_database(admin, name).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(last)
}
