//! Bulk loads into a SQLite target: the writer the component holds ([`SqliteWriter`]) queues
//! batches on the file's thread, which inserts them (`rows.rs`) while the component converts
//! the next batch.

use super::thread::Command;
use crate::backend::{BulkWriter, quote};
use crate::wit::{Batch, DbError, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use tokio::sync::oneshot;

/// Batches a bulk load may have queued on the file's thread and not yet seen inserted. Two
/// keep the thread busy while the component converts the next batch, and bound the memory
/// held to two batches.
const MAX_QUEUED_INSERTS: usize = 2;

/// A bulk load into one table of a SQLite target. `write` queues a batch on the file's
/// thread and returns; the outcome of a batch is collected when the queue is full, and at
/// `finish`. A failed insert fails the next call, and every call after it.
pub struct SqliteWriter {
    /// `file: table`, for messages.
    target: String,
    path: PathBuf,
    sql: std::sync::Arc<str>,
    columns: usize,
    commands: std_mpsc::Sender<Command>,
    queued: std::collections::VecDeque<oneshot::Receiver<Result<u64, DbError>>>,
    rows: u64,
    failed: Option<DbError>,
    finished: bool,
}

impl BulkWriter for SqliteWriter {
    async fn write(&mut self, rows: Batch) -> Result<(), DbError> {
        self.still_open()?;
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        rows.validate(self.columns)?;
        rows.check_write_size(&self.target)?;
        let (reply, outcome) = oneshot::channel();
        self.commands.send(Command::Insert { sql: self.sql.clone(), rows, reply }).map_err(|_| self.stopped())?;
        self.queued.push_back(outcome);
        while self.queued.len() > MAX_QUEUED_INSERTS {
            self.collect_oldest().await?;
        }
        Ok(())
    }

    /// Wait for every queued batch; the rows inserted.
    async fn finish(&mut self) -> Result<u64, DbError> {
        self.still_open()?;
        self.finished = true;
        while !self.queued.is_empty() {
            self.collect_oldest().await?;
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(self.rows),
        }
    }

    /// Inserts run on the file's thread: the handle stays free for other calls.
    fn holds_connection(&self) -> bool {
        false
    }
}

impl SqliteWriter {
    /// A load of `columns` of `table` in the file at `path`, whose thread takes `commands`.
    pub(super) fn new(
        path: &Path,
        table: &str,
        columns: &[String],
        commands: std_mpsc::Sender<Command>,
    ) -> SqliteWriter {
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(table),
            columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "),
            (1..=columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
        );
        SqliteWriter {
            target: format!("{}: {table}", path.display()),
            path: path.to_path_buf(),
            sql: sql.into(),
            columns: columns.len(),
            commands,
            queued: std::collections::VecDeque::new(),
            rows: 0,
            failed: None,
            finished: false,
        }
    }

    async fn collect_oldest(&mut self) -> Result<(), DbError> {
        let Some(outcome) = self.queued.pop_front() else { return Ok(()) };
        match outcome.await.map_err(|_| self.stopped()).and_then(|r| r) {
            Ok(n) => {
                self.rows += n;
                Ok(())
            }
            Err(e) => {
                self.failed.get_or_insert(e.clone());
                Err(e)
            }
        }
    }

    fn still_open(&self) -> Result<(), DbError> {
        if self.finished {
            return Err(DbError::new(ErrorKind::InvalidInput, format!("{}: bulk load already finished", self.target)));
        }
        Ok(())
    }

    fn stopped(&self) -> DbError {
        DbError::new(ErrorKind::Connection, format!("{}: writer stopped", self.path.display()))
    }
}
