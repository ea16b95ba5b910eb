//! The PostgreSQL databases a job works with, beyond the migration transactions themselves:
//! the admin connection (version check), which databases a plan may use, and, when a job
//! fails, ending its sessions and removing the databases it created.
//!
//! A job touches only its own databases: a plan may name neither the server's own databases
//! nor templates, nor one outside the job's bound (`JobOptions::databases`, a hosting
//! provider's per-tenant list), and an existing target must hold nothing but tables this plan
//! writes ([`admit_existing_target`]), checked before the component reads or writes anything.

use super::outcome::JobError;
use crate::backend::postgres::{PgDatabase, PgServer};
use crate::text::printable;
use sqlx::postgres::PgConnection;

/// A connection to the server's admin database, refused for a server too old to migrate to.
pub(super) async fn admin(server: &PgServer) -> Result<PgConnection, JobError> {
    let mut admin = server.connect_admin().await.map_err(JobError::Config)?;
    server.check_version(&mut admin).await.map_err(JobError::Config)?;
    Ok(admin)
}

/// Refuse database names a migration must never touch: the server's own, templates, and any
/// outside the job's `bound` (names or `*` patterns).
pub(super) fn check_target_name(name: &str, server: &PgServer, bound: Option<&[String]>) -> Result<(), JobError> {
    let reserved = ["postgres", "template0", "template1"];
    if reserved.contains(&name) || server.admin_database() == Some(name) {
        return Err(JobError::Failed(format!(
            "the migration component planned to use database {}, which is not a Blocklet database",
            printable(name)
        )));
    }
    if let Some(bound) = bound
        && !bound.iter().any(|pattern| matches_name(pattern, name))
    {
        return Err(JobError::Failed(format!(
            "the migration component planned to use database {}, which this job may not use (it may use: {})",
            printable(name),
            bound.join(", ")
        )));
    }
    Ok(())
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn matches_name(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(after) = name.strip_prefix(head) else { return false };
            if rest.is_empty() {
                return true;
            }
            (0..=after.len()).filter(|&i| after.is_char_boundary(i)).any(|i| matches_name(rest, &after[i..]))
        }
    }
}

/// Admit an existing database as `db`'s target only if every relation it holds is a table of
/// schema `public` that this plan writes (`writes`: the target tables of the plan's feeds and
/// the meta table); anything else is another application's data, which the job must neither
/// read nor change, `--force` or not.
pub(super) async fn admit_existing_target(
    target: &PgDatabase,
    writes: &std::collections::BTreeSet<String>,
) -> Result<(), JobError> {
    let name = target.database();
    let relations = target.relations().await.map_err(|e| JobError::Failed(e.message))?;
    // Not the component's doing: the server holds someone else's data where the plan would go.
    let foreign: Vec<String> = relations
        .iter()
        .filter(|(schema, table)| schema != "public" || !writes.contains(table))
        .map(|(schema, table)| format!("{}.{}", printable(schema), printable(table)))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let shown = foreign.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    let more = if foreign.len() > 5 { format!(" and {} more", foreign.len() - 5) } else { String::new() };
    Err(JobError::Config(format!(
        "PostgreSQL database {} already exists and holds {shown}{more}, which this migration does not write: a job \
         writes only into a database it creates or one holding nothing but its own tables (migrate into another \
         server or database name, or move that data away)",
        printable(name)
    )))
}

/// After a failure: end every session the job still has on the server (a statement the
/// component started keeps running after the host stops waiting for it), then drop the
/// databases the job created, newest first. Problems are printed, not returned: the job's own
/// error is the one to report.
pub(super) async fn clean_up(server: &PgServer, admin: &mut PgConnection, created: &[String]) {
    if let Err(e) = server.end_sessions(admin).await {
        super::console::error(&format!("could not end this run's sessions on PostgreSQL: {e}"));
    }
    for name in created.iter().rev() {
        if let Err(drop_err) = drop_created(server, admin, name).await {
            super::console::error(&format!("could not remove database {name} created by this run: {drop_err}"));
        }
    }
}

/// Drop a database this job created. Its rolled-back connections close asynchronously, so a
/// "being accessed by other users" refusal is retried for a while.
async fn drop_created(server: &PgServer, admin: &mut PgConnection, name: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_is_names_and_star_patterns() {
        assert!(matches_name("server_db", "server_db"));
        assert!(!matches_name("server_db", "server_db2"));
        assert!(matches_name("tenant_a_*", "tenant_a_blocklet"));
        assert!(!matches_name("tenant_a_*", "tenant_b_blocklet"));
        assert!(matches_name("*_db", "service_db") && !matches_name("*_db", "service_dbx"));
        assert!(matches_name("a*b*c", "a-x-b-y-c") && !matches_name("a*b*c", "a-c-b"));
        let server = PgServer::parse("postgres://u@127.0.0.1:5432/postgres").unwrap();
        let bound = ["server_db".to_string(), "app_*".to_string()];
        assert!(check_target_name("app_1", &server, Some(&bound)).is_ok());
        let refused = check_target_name("other_db", &server, Some(&bound)).unwrap_err().to_string();
        assert!(refused.contains("which this job may not use (it may use: server_db, app_*)"), "{refused}");
        assert!(check_target_name("template1", &server, None).is_err());
        assert!(check_target_name("anything", &server, None).is_ok());
    }
}
