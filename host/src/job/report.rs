//! The `--report FILE` JSON: a versioned record of a run, written in every outcome.
//!
//! Format version 1. Consumers should ignore fields they do not know; a field's meaning never
//! changes within a version. It never contains credentials: the PostgreSQL URL is redacted.

use serde::Serialize;

/// Bumped only when a field changes meaning or disappears.
pub const REPORT_VERSION: u32 = 1;

#[derive(Serialize, Default, Debug)]
pub struct RunReport {
    pub report_version: u32,
    pub tool: Tool,
    pub component: Option<ComponentIdentity>,
    /// `sqlite-to-postgres` or `postgres-to-sqlite`.
    pub direction: Option<String>,
    pub data_dir: Option<String>,
    /// The PostgreSQL URL with its password replaced by `***`.
    pub postgres: Option<String>,
    pub dry_run: bool,
    pub skip_rejects: bool,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    /// `success`, `success-with-skipped-rows`, `dry-run`, `rejected`, `verification-failed`,
    /// `usage-error` or `failed`.
    pub outcome: String,
    pub exit_code: u8,
    pub error: Option<String>,
    pub databases: Vec<DatabaseEntry>,
    /// Rows that could not be migrated (reported, and skipped or not committed).
    pub rejected_rows: u64,
    /// The JSON-lines file listing each rejected row, when there were any.
    pub rejects_file: Option<String>,
    /// The lock file written or removed (the component's conventions name it).
    pub lock_file: Option<String>,
    /// When each database and table started and finished, in ms since the process started.
    pub timeline: Option<super::progress::Timeline>,
}

#[derive(Serialize, Default, Debug)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Serialize, Default, Debug, Clone)]
pub struct ComponentIdentity {
    pub name: String,
    pub version: String,
    pub wit_version: String,
    pub server_versions: Vec<String>,
    pub sha256: String,
    /// `bundled` or the file it was loaded from.
    pub source: String,
    /// Who vouches for it: the trusted key that signed it, the bundle, or `--allow-unsigned`.
    pub signature: String,
}

#[derive(Serialize, Default, Debug)]
pub struct DatabaseEntry {
    pub kind: String,
    pub sqlite_file: String,
    pub postgres_database: String,
    pub app_pid: Option<String>,
    pub tables: Vec<TableEntry>,
    pub rejected_rows: u64,
    /// Files a PostgreSQL → SQLite run moved aside.
    pub backups: Vec<String>,
}

#[derive(Serialize, Default, Debug)]
pub struct TableEntry {
    pub table: String,
    pub source_rows: u64,
    pub target_rows: u64,
    pub rejected_rows: u64,
    pub checksum: String,
}

impl RunReport {
    pub fn new() -> RunReport {
        RunReport {
            report_version: REPORT_VERSION,
            tool: Tool { name: env!("CARGO_PKG_NAME").into(), version: env!("CARGO_PKG_VERSION").into() },
            started_at: now(),
            ..RunReport::default()
        }
    }

    /// Rows in the targets, as the host counted them.
    pub fn target_rows(&self) -> u64 {
        self.databases.iter().flat_map(|d| d.tables.iter().map(|t| t.target_rows)).sum()
    }

    /// Write the report; a failure to write is reported, never fatal to the run's own outcome.
    pub fn write(&self, path: &std::path::Path) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
