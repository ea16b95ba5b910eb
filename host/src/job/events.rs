//! The job's [`EventSink`]: what a component reports, shown on the console and fed to the
//! progress display, and every rejected row recorded in a JSON-lines file (the console lists
//! the first [`REJECTS_SHOWN`]).

use super::console::{error, info, warn};
use super::progress::Progress;
use crate::capability::EventSink;
use crate::wit::blocklet::migrate::events::{Level, RejectedRow};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Rejected rows printed in full before the rest are only counted.
pub const REJECTS_SHOWN: u64 = 200;

/// Shows what a component reports and records every rejected row.
#[derive(Clone)]
pub struct ConsoleEvents {
    state: Arc<Mutex<EventState>>,
    progress: Progress,
}

struct EventState {
    rejects: u64,
    rejects_path: PathBuf,
    rejects_file: Option<std::io::BufWriter<std::fs::File>>,
    write_error: Option<String>,
}

impl ConsoleEvents {
    /// Rejected rows go to `rejects_path` (created on the first one).
    pub fn new(rejects_path: PathBuf) -> ConsoleEvents {
        ConsoleEvents::with_progress(rejects_path, Progress::silent())
    }

    /// Also feed `progress` (bars, lines, events file, timeline).
    pub fn with_progress(rejects_path: PathBuf, progress: Progress) -> ConsoleEvents {
        ConsoleEvents {
            state: Arc::new(Mutex::new(EventState { rejects: 0, rejects_path, rejects_file: None, write_error: None })),
            progress,
        }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn rejects(&self) -> u64 {
        self.state.lock().unwrap().rejects
    }

    /// The rejects file, once something was written to it; flushes it.
    pub fn rejects_file(&self) -> Option<PathBuf> {
        let mut s = self.state.lock().unwrap();
        let path = s.rejects_path.clone();
        s.rejects_file.as_mut().map(|f| {
            let _ = f.flush();
            path
        })
    }

    pub fn write_error(&self) -> Option<String> {
        self.state.lock().unwrap().write_error.clone()
    }
}

/// The default rejects file: in the temp dir, never inside the data dir being migrated.
pub fn default_rejects_path() -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    std::env::temp_dir().join(format!("blocklet-migrate-rejects-{stamp}-{}.jsonl", std::process::id()))
}

/// One rejected row, as a line.
pub fn describe_reject(r: &RejectedRow) -> String {
    format!(
        "{}.{} [{}] column {}: {} (value: {})",
        r.database, r.table, r.primary_key, r.column, r.reason, r.value_excerpt
    )
}

impl EventSink for ConsoleEvents {
    fn log(&mut self, level: Level, message: &str) {
        match level {
            Level::Debug => {}
            Level::Info => info(message),
            Level::Warn => warn(message),
            Level::Error => error(message),
        }
    }

    fn progress(&mut self, database: &str, table: &str, _rows_done: u64, rows_total: u64) {
        self.progress.table_rows_total(database, table, rows_total);
    }

    fn load_started(&mut self, database: &str, table: &str) {
        self.progress.table_started(database, table);
    }

    fn rows_sent(&mut self, database: &str, table: &str, rows: u64) {
        self.progress.rows_sent(database, table, rows);
    }

    fn load_finished(&mut self, database: &str, table: &str, rows: u64) {
        self.progress.table_loaded(database, table, rows);
    }

    fn reject(&mut self, row: RejectedRow) {
        let mut s = self.state.lock().unwrap();
        s.rejects += 1;
        if s.rejects <= REJECTS_SHOWN {
            error(&describe_reject(&row));
        } else if s.rejects == REJECTS_SHOWN + 1 {
            error("… more rejected rows follow; see the rejects file");
        }
        if s.rejects_file.is_none() && s.write_error.is_none() {
            match std::fs::File::create(&s.rejects_path) {
                Ok(f) => s.rejects_file = Some(std::io::BufWriter::new(f)),
                Err(e) => s.write_error = Some(format!("cannot write {}: {e}", s.rejects_path.display())),
            }
        }
        if let Some(f) = s.rejects_file.as_mut() {
            let line = serde_json::json!({
                "database": row.database,
                "table": row.table,
                "primary_key": row.primary_key,
                "column": row.column,
                "value_excerpt": row.value_excerpt,
                "reason": row.reason,
            });
            let _ = writeln!(f, "{line}");
        }
    }
}
