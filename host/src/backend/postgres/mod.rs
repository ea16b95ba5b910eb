//! PostgreSQL databases: one connection each, inside one transaction, served by a task that
//! owns the connection. A target's transaction commits only when the whole job succeeded; a
//! source reads one read-only, repeatable-read snapshot. Bulk loads are binary COPY, encoded
//! by hand and streamed to the server while the component converts the next batch.
//!
//! | file | concern |
//! |---|---|
//! | this one | opening a database, the [`Source`]/[`Target`] side of a handle |
//! | `connection.rs` | the task that owns the connection and its commands |
//! | `copy.rs` | binary COPY encode/decode, the bulk writer |
//! | `catalog.rs` | the catalog queries that describe tables |
//! | `socket.rs` | `TCP_NODELAY` on the server connections |
//! | `error.rs` | sqlx errors as WIT errors |
//! | `server.rs` | the server named by `ABT_NODE_POSTGRES_URL`: URL, admin work |

mod catalog;
mod connection;
mod copy;
mod error;
pub mod server;
mod socket;

pub use catalog::PgColumn;
pub use copy::PgWriter;
pub use error::pg_error;
pub use server::PgServer;
pub use socket::disable_nagle;

use super::{Batches, Source, Target, clamp_batch_rows, quote};
use crate::wit::blocklet::migrate::database::Dialect;
use crate::wit::{Batch, ColumnInfo, DbError, ErrorKind, TableInfo};
use connection::{Command, Reply};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::{mpsc, oneshot};

/// Whether `CREATE INDEX` on a target may use PostgreSQL's parallel maintenance workers.
///
/// Parallel workers split a build's scan and sort and merge the parts: more CPU in all, less
/// wall time only when cores are idle. When the server shares this machine's cores and the
/// databases loading at once already keep them busy, they are overhead: on 2 cores, with the
/// server on the same machine, a 200k-row SQLite → PostgreSQL run took 5% less wall time
/// without them (medians of 8 alternating runs; no difference at 1M rows), and the bench's
/// ceiling spent 0.3–0.5 core-s less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexWorkers {
    /// Whatever the server's `max_parallel_maintenance_workers` says.
    ServerDefault,
    /// Each index is built by the session's own backend.
    None,
}

impl IndexWorkers {
    /// Workers pay only when some core is left once every database loading at once has one.
    /// A remote server's cores are its own: its configuration decides.
    pub fn for_run(server_is_local: bool, cores: usize, databases_at_once: usize) -> IndexWorkers {
        if server_is_local && cores <= databases_at_once { IndexWorkers::None } else { IndexWorkers::ServerDefault }
    }
}

/// One PostgreSQL database, open inside a transaction: a target until [`PgDatabase::commit`],
/// or a read-only source.
pub struct PgDatabase {
    database: String,
    writable: bool,
    commands: mpsc::Sender<Command>,
}

impl PgDatabase {
    /// Connect to `database` and begin the transaction everything will run in, in the
    /// background: commands queue until the connection is up, and if it cannot open, each of
    /// them fails with the reason. Connecting (TCP, the server starting a backend for the
    /// database, BEGIN) takes 8–14 ms here, and the component's first steps, its checks of the
    /// SQLite source, need no target, so the two overlap.
    ///
    /// With [`IndexWorkers::None`], the session builds each index in its own backend only
    /// (`max_parallel_maintenance_workers = 0`).
    pub fn open(options: &PgConnectOptions, database: &str, index_workers: IndexWorkers) -> PgDatabase {
        let begin = match index_workers {
            IndexWorkers::ServerDefault => "SET client_min_messages = warning; BEGIN",
            IndexWorkers::None => "SET client_min_messages = warning; SET max_parallel_maintenance_workers = 0; BEGIN",
        };
        Self::start(options, database, begin, true)
    }

    /// Connect to `database` as a source: one read-only snapshot for every read.
    pub async fn open_source(options: &PgConnectOptions, database: &str) -> Result<PgDatabase, DbError> {
        let begin = "SET client_min_messages = warning; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
        let source = Self::start(options, database, begin, false);
        // The snapshot is taken by the first query, not by BEGIN: take it now (this also waits
        // for the connection, and fails with the reason if it could not open).
        source.list_tables().await?;
        Ok(source)
    }

    /// Connect and run `begin` on a task of its own, which then serves the commands.
    fn start(options: &PgConnectOptions, database: &str, begin: &'static str, writable: bool) -> PgDatabase {
        let (tx, rx) = mpsc::channel(8);
        let (options, name) = (options.clone().database(database), database.to_string());
        tokio::spawn(async move {
            let connected = async {
                let mut conn = PgConnection::connect_with(&options)
                    .await
                    .map_err(|e| pg_error(&format!("connecting to database {name}"), e))?;
                disable_nagle(options.get_port());
                sqlx::raw_sql(begin).execute(&mut conn).await.map_err(|e| pg_error(&name, e))?;
                Ok(conn)
            };
            match connected.await {
                Ok(conn) => connection::serve(conn, name, writable, rx).await,
                Err(e) => connection::refuse_all(rx, e).await,
            }
        });
        PgDatabase { database: database.to_string(), writable, commands: tx }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// Every relation the database holds outside PostgreSQL's own schemas, as (schema, name):
    /// what a job checks before it may use an existing database as a target.
    pub async fn relations(&self) -> Result<Vec<(String, String)>, DbError> {
        self.ask(Command::Relations).await
    }

    fn stopped(&self) -> DbError {
        DbError::new(ErrorKind::Connection, format!("{}: connection task stopped", self.database))
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// The columns of `table` as the catalog describes them (none when it does not exist).
    pub async fn columns(&self, table: &str) -> Result<Vec<PgColumn>, DbError> {
        self.ask(|r| Command::Columns(table.to_string(), r)).await
    }

    /// Look up `columns` of `table`, failing with a message naming a missing one.
    async fn pick_columns(&self, table: &str, columns: &[String]) -> Result<Vec<PgColumn>, DbError> {
        let all = self.columns(table).await?;
        if all.is_empty() {
            return Err(DbError::new(ErrorKind::NotFound, format!("{}: no table {table}", self.database)));
        }
        columns
            .iter()
            .map(|name| {
                all.iter().find(|c| &c.name == name).cloned().ok_or_else(|| {
                    DbError::new(ErrorKind::NotFound, format!("{}: table {table} has no column {name}", self.database))
                })
            })
            .collect()
    }

    /// Commit the transaction. Dropping a database without committing rolls it back.
    pub async fn commit(&self) -> Result<(), DbError> {
        self.ask(Command::Commit).await
    }
}

impl Source for PgDatabase {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn label(&self) -> String {
        self.database.clone()
    }

    fn writable(&self) -> bool {
        self.writable
    }

    async fn list_tables(&self) -> Result<Vec<String>, DbError> {
        self.ask(Command::ListTables).await
    }

    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        let columns = self.columns(table).await?;
        Ok((!columns.is_empty()).then(|| TableInfo {
            name: table.to_string(),
            columns: columns
                .into_iter()
                .map(|c| ColumnInfo {
                    name: c.name,
                    declared_type: c.declared,
                    not_null: c.not_null,
                    default_value: c.default,
                    primary_key: c.primary_key,
                })
                .collect(),
        }))
    }

    async fn count_rows(&self, table: &str) -> Result<u64, DbError> {
        self.ask(|r| Command::Count(table.to_string(), r)).await
    }

    /// Stream `columns` of `table` back, decoded into tagged values.
    async fn read(
        &self,
        table: &str,
        columns: &[String],
        order_by: &[String],
        batch_rows: u32,
    ) -> Result<Batches, DbError> {
        let picked = self.pick_columns(table, columns).await?;
        let (sql, decoders) = copy::copy_out_statement(table, &picked, order_by);
        let (tx, rx) = mpsc::channel(2);
        let command = Command::Read { sql, decoders, batch_rows: clamp_batch_rows(batch_rows) as usize, out: tx };
        self.commands.send(command).await.map_err(|_| self.stopped())?;
        Ok(rx)
    }

    async fn query(&self, sql: &str) -> Result<Batch, DbError> {
        self.ask(|r| Command::Query(sql.to_string(), r)).await
    }
}

impl Target for PgDatabase {
    type Writer = PgWriter;

    async fn execute(&self, sql: &str) -> Result<u64, DbError> {
        self.ask(|r| Command::Execute(sql.to_string(), r)).await
    }

    /// Run checked single statements in order as one simple-protocol query: one round trip.
    async fn execute_script(&self, statements: &[String]) -> Result<(), DbError> {
        if statements.is_empty() {
            return Ok(());
        }
        // Each statement passed the SQL guard as exactly one statement, so a newline (ending
        // any trailing line comment) and a semicolon separate them safely.
        let script = statements.join("\n;\n");
        self.ask(|r| Command::Execute(script, r)).await.map(|_| ())
    }

    /// Start a binary COPY of `columns` into `table`.
    async fn bulk_load(&self, table: &str, columns: &[String]) -> Result<PgWriter, DbError> {
        let picked = self.pick_columns(table, columns).await?;
        let statement = format!(
            "COPY public.{} ({}) FROM STDIN (FORMAT binary)",
            quote(table),
            columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
        );
        let (data_tx, data_rx) = mpsc::channel(copy::COPY_QUEUE_CHUNKS);
        let (reply_tx, reply_rx) = oneshot::channel();
        let writer = PgWriter::new(format!("{}.{table}", self.database), picked, data_tx, reply_rx)?;
        self.commands
            .send(Command::Copy { statement, data: data_rx, reply: reply_tx })
            .await
            .map_err(|_| self.stopped())?;
        Ok(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_workers_stay_the_servers_unless_a_local_server_has_no_core_to_spare() {
        let (none, server) = (IndexWorkers::None, IndexWorkers::ServerDefault);
        assert_eq!(IndexWorkers::for_run(true, 2, 4), none, "2 cores, 4 databases at once");
        assert_eq!(IndexWorkers::for_run(true, 2, 2), none, "a core per database, none left");
        assert_eq!(IndexWorkers::for_run(true, 8, 4), server, "spare cores on this machine");
        assert_eq!(IndexWorkers::for_run(true, 2, 1), server, "one database: a core is idle");
        assert_eq!(IndexWorkers::for_run(false, 2, 4), server, "a remote server has its own cores");
    }

    /// A target connects in the background; when it cannot, every command the component sends
    /// fails with the reason (not with "connection task stopped"), and nothing hangs.
    #[tokio::test]
    async fn a_target_that_cannot_connect_answers_every_command_with_why() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = PgConnectOptions::new().host("127.0.0.1").port(port).username("postgres");
        let target = PgDatabase::open(&options, "server_db", IndexWorkers::ServerDefault);
        let errors = [
            target.list_tables().await.unwrap_err(),
            target.execute("CREATE TABLE t (id int)").await.unwrap_err(),
            target.count_rows("t").await.unwrap_err(),
            target.commit().await.unwrap_err(),
        ];
        for e in errors {
            assert_eq!(e.kind, ErrorKind::Connection, "{e:?}");
            assert!(e.message.starts_with("connecting to database server_db: "), "{e:?}");
        }
        // A read looks its columns up first, and fails the same way.
        let e = target.read("t", &["id".to_string()], &[], 100).await.unwrap_err();
        assert!(e.message.starts_with("connecting to database server_db: "), "{e:?}");
    }
}
