//! A dry run's stand-in for a PostgreSQL database that does not exist yet: it accepts
//! statements and rows, keeps nothing, and answers like an empty database. The statements it
//! receives still pass the PostgreSQL rules (the capability layer checks them as for a real
//! target), so a dry run refuses what the real run would refuse.

use super::{Batches, BulkWriter, Source, Target};
use crate::wit::blocklet::migrate::database::Dialect;
use crate::wit::{Batch, DbError, TableInfo};
use tokio::sync::mpsc;

/// A database that keeps nothing, named for messages.
pub struct Discard {
    name: String,
}

impl Discard {
    pub fn new(name: &str) -> Discard {
        Discard { name: name.to_string() }
    }
}

impl Source for Discard {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn label(&self) -> String {
        self.name.clone()
    }

    fn writable(&self) -> bool {
        true
    }

    async fn list_tables(&self) -> Result<Vec<String>, DbError> {
        Ok(Vec::new())
    }

    async fn describe_table(&self, _table: &str) -> Result<Option<TableInfo>, DbError> {
        Ok(None)
    }

    async fn count_rows(&self, _table: &str) -> Result<u64, DbError> {
        Ok(0)
    }

    async fn read(
        &self,
        _table: &str,
        _columns: &[String],
        _order_by: &[String],
        _rows: u32,
    ) -> Result<Batches, DbError> {
        // No sender: the stream is over before it starts.
        Ok(mpsc::channel(1).1)
    }

    async fn query(&self, _statement: &str) -> Result<Batch, DbError> {
        Ok(Batch::empty(0, 0))
    }
}

impl Target for Discard {
    type Writer = DiscardWriter;

    async fn execute(&self, _statement: &str) -> Result<u64, DbError> {
        Ok(0)
    }

    async fn execute_script(&self, _statements: &[String]) -> Result<(), DbError> {
        Ok(())
    }

    async fn bulk_load(&self, _table: &str, columns: &[String]) -> Result<DiscardWriter, DbError> {
        Ok(DiscardWriter { columns: columns.len(), rows: 0 })
    }
}

/// Counts what a dry run would load, checking each batch's shape as a real load does.
pub struct DiscardWriter {
    columns: usize,
    rows: u64,
}

impl BulkWriter for DiscardWriter {
    async fn write(&mut self, rows: Batch) -> Result<(), DbError> {
        rows.validate(self.columns)?;
        rows.check_write_size("a dry run's bulk load")?;
        self.rows += rows.rows as u64;
        Ok(())
    }

    async fn finish(&mut self) -> Result<u64, DbError> {
        Ok(self.rows)
    }

    fn holds_connection(&self) -> bool {
        false
    }
}
