//! The wasm export: binds the plain-Rust logic to the WIT contract. Nothing here decides
//! anything; it only converts between generated WIT types and the crate's own.

use crate::batch::{self, Tag};
use crate::catalog::{KINDS, Kind};
use crate::db::{self, DbError, ErrorKind, Level};
use crate::{migrate, plan};

wit_bindgen::generate!({ world: "migration", path: "../wit" });

use blocklet::migrate::database as wit_db;
use blocklet::migrate::events as wit_events;
use blocklet::migrate::types as wit;
use exports::blocklet::migrate::accounting as wit_accounting;
use exports::blocklet::migrate::conventions as wit_conventions;
use exports::blocklet::migrate::migrator as api;

struct Component;

export!(Component);

impl api::Guest for Component {
    fn info() -> api::ComponentInfo {
        api::ComponentInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            wit_version: crate::WIT_VERSION.into(),
            server_versions: vec![crate::catalog::SERVER_VERSION.into()],
            migrations: KINDS.iter().map(|k| (k.group.to_string(), k.kind.catalog().migrations.len() as u32)).collect(),
        }
    }

    fn layout() -> api::SourceLayout {
        api::SourceLayout {
            index: Kind::Server.facts().sqlite_pattern.into(),
            patterns: KINDS.iter().map(|k| k.sqlite_pattern.to_string()).collect(),
        }
    }

    fn plan_to_postgres(
        index: Option<&wit_db::Handle>,
        files: Vec<String>,
    ) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        let index = index.map(WitDatabase);
        let plan = plan::plan_to_postgres(index.as_ref().map(|d| d as &dyn db::Database), &files, &WitEvents)
            .map_err(|message| api::Failure { kind: api::FailureKind::Refused, message, rejected_rows: 0 })?;
        Ok(plan.into_iter().map(planned_to_wit).collect())
    }

    fn migrate_to_postgres(
        db: api::PlannedDatabase,
        source: &wit_db::Handle,
        target: &wit_db::Handle,
        options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        let planned = planned_from_wit(db);
        migrate::migrate_to_postgres(
            &planned,
            &WitDatabase(source),
            &WitDatabase(target),
            &options_from_wit(options),
            &WitEvents,
        )
        .map(report_to_wit)
        .map_err(failure_to_wit)
    }

    fn plan_to_sqlite(
        index: &wit_db::Handle,
        databases: Vec<String>,
    ) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        let plan = plan::plan_to_sqlite(&WitDatabase(index), &databases, &WitEvents)
            .map_err(|message| api::Failure { kind: api::FailureKind::Refused, message, rejected_rows: 0 })?;
        Ok(plan.into_iter().map(planned_to_wit).collect())
    }

    fn migrate_to_sqlite(
        db: api::PlannedDatabase,
        source: &wit_db::Handle,
        target: &wit_db::Handle,
        options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        let planned = planned_from_wit(db);
        migrate::migrate_to_sqlite(
            &planned,
            &WitDatabase(source),
            &WitDatabase(target),
            &options_from_wit(options),
            &WitEvents,
        )
        .map(report_to_wit)
        .map_err(failure_to_wit)
    }
}

fn report_to_wit(r: migrate::DatabaseReport) -> api::DatabaseReport {
    api::DatabaseReport {
        tables: r
            .tables
            .into_iter()
            .map(|t| api::TableReport {
                table: t.table,
                source_rows: t.source_rows,
                target_rows: t.target_rows,
                rejected_rows: t.rejected_rows,
                checksum: t.checksum,
            })
            .collect(),
        rejected_rows: r.rejected_rows,
    }
}

fn failure_to_wit(f: migrate::Failure) -> api::Failure {
    let kind = match f.kind {
        migrate::FailureKind::RejectedRows => api::FailureKind::RejectedRows,
        migrate::FailureKind::VerificationMismatch => api::FailureKind::VerificationMismatch,
        migrate::FailureKind::Refused => api::FailureKind::Refused,
        migrate::FailureKind::Other => api::FailureKind::Other,
    };
    api::Failure { kind, message: f.message, rejected_rows: f.rejected_rows }
}

impl wit_conventions::Guest for Component {
    fn get() -> wit_conventions::ServerConventions {
        use crate::conventions as c;
        wit_conventions::ServerConventions {
            data_dir_markers: c::DATA_DIR_MARKERS
                .iter()
                .map(|m| wit_conventions::DataDirMarker {
                    directory: m.directory.into(),
                    config_file: m.config_file.into(),
                })
                .collect(),
            lock_file: c::LOCK_FILE.into(),
            index_database: c::index_database(),
            meta_table: c::meta_table().into(),
            kind_labels: c::kind_labels().map(|(kind, label)| (kind_to_wit(kind), label.into())).collect(),
        }
    }
}

impl wit_accounting::Guest for Component {
    fn feeds(_db: api::PlannedDatabase, source_tables: Vec<String>) -> Vec<wit_accounting::TableFeed> {
        use crate::accounting::{Destination, feeds};
        feeds(&source_tables)
            .into_iter()
            .map(|(source_table, destination)| wit_accounting::TableFeed {
                source_table,
                destination: match destination {
                    Destination::CopiedTo(t) => wit_accounting::Destination::CopiedTo(t),
                    Destination::NotCopied(why) => wit_accounting::Destination::NotCopied(why),
                },
            })
            .collect()
    }
}

fn options_from_wit(o: api::Options) -> migrate::Options {
    migrate::Options {
        force: o.force,
        batch_rows: migrate::clamp_batch_rows(o.batch_rows),
        skip_rejects: o.skip_rejects,
        dry_run: o.dry_run,
    }
}

fn kind_to_wit(kind: Kind) -> api::DatabaseKind {
    match kind {
        Kind::Server => api::DatabaseKind::Server,
        Kind::Service => api::DatabaseKind::Service,
        Kind::Blocklet => api::DatabaseKind::Blocklet,
        Kind::CertificateManager => api::DatabaseKind::CertificateManager,
    }
}

fn planned_to_wit(p: plan::Planned) -> api::PlannedDatabase {
    api::PlannedDatabase {
        kind: kind_to_wit(p.kind),
        sqlite_file: p.sqlite_file,
        postgres_database: p.postgres_database,
        app_pid: p.app_pid,
    }
}

fn planned_from_wit(p: api::PlannedDatabase) -> plan::Planned {
    plan::Planned {
        kind: match p.kind {
            api::DatabaseKind::Server => Kind::Server,
            api::DatabaseKind::Service => Kind::Service,
            api::DatabaseKind::Blocklet => Kind::Blocklet,
            api::DatabaseKind::CertificateManager => Kind::CertificateManager,
        },
        sqlite_file: p.sqlite_file,
        postgres_database: p.postgres_database,
        app_pid: p.app_pid,
    }
}

fn error_from_wit(e: wit::DbError) -> DbError {
    DbError {
        kind: match e.kind {
            wit::ErrorKind::NotFound => ErrorKind::NotFound,
            wit::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            wit::ErrorKind::Constraint => ErrorKind::Constraint,
            wit::ErrorKind::Connection => ErrorKind::Connection,
            wit::ErrorKind::Limit => ErrorKind::Limit,
            wit::ErrorKind::Denied => ErrorKind::Denied,
            wit::ErrorKind::Other => ErrorKind::Other,
        },
        message: e.message,
        code: e.code,
    }
}

fn tag_from_wit(t: wit::ValueTag) -> Tag {
    match t {
        wit::ValueTag::Null => Tag::Null,
        wit::ValueTag::Integer => Tag::Integer,
        wit::ValueTag::Real => Tag::Real,
        wit::ValueTag::Text => Tag::Text,
        wit::ValueTag::Blob => Tag::Blob,
        wit::ValueTag::Boolean => Tag::Boolean,
        wit::ValueTag::Json => Tag::Json,
        wit::ValueTag::Timestamp => Tag::Timestamp,
    }
}

fn tag_to_wit(t: Tag) -> wit::ValueTag {
    match t {
        Tag::Null => wit::ValueTag::Null,
        Tag::Integer => wit::ValueTag::Integer,
        Tag::Real => wit::ValueTag::Real,
        Tag::Text => wit::ValueTag::Text,
        Tag::Blob => wit::ValueTag::Blob,
        Tag::Boolean => wit::ValueTag::Boolean,
        Tag::Json => wit::ValueTag::Json,
        Tag::Timestamp => wit::ValueTag::Timestamp,
    }
}

fn batch_from_wit(b: wit::Batch) -> batch::Batch {
    batch::Batch {
        rows: b.rows,
        columns: b
            .columns
            .into_iter()
            .map(|c| batch::Column {
                tags: c.tags.into_iter().map(tag_from_wit).collect(),
                numbers: c.numbers,
                bytes: c.bytes,
                ends: c.ends,
            })
            .collect(),
    }
}

fn batch_to_wit(b: &batch::Batch) -> wit::Batch {
    wit::Batch {
        rows: b.rows,
        columns: b
            .columns
            .iter()
            .map(|c| wit::ColumnValues {
                tags: c.tags.iter().map(|t| tag_to_wit(*t)).collect(),
                numbers: c.numbers.clone(),
                bytes: c.bytes.clone(),
                ends: c.ends.clone(),
            })
            .collect(),
    }
}

struct WitDatabase<'a>(&'a wit_db::Handle);
struct WitCursor(wit_db::Cursor);
struct WitWriter(wit_db::BulkWriter);
struct WitEvents;

impl db::Cursor for WitCursor {
    fn next_batch(&mut self) -> Result<Option<batch::Batch>, DbError> {
        self.0.next_batch().map(|b| b.map(batch_from_wit)).map_err(error_from_wit)
    }
}

impl db::BulkWriter for WitWriter {
    fn write(&mut self, rows: &batch::Batch) -> Result<(), DbError> {
        self.0.write(&batch_to_wit(rows)).map_err(error_from_wit)
    }

    fn finish(self: Box<Self>) -> Result<u64, DbError> {
        self.0.finish().map_err(error_from_wit)
    }
}

impl db::Database for WitDatabase<'_> {
    fn label(&self) -> String {
        self.0.label()
    }

    fn list_tables(&self) -> Result<Vec<String>, DbError> {
        self.0.list_tables().map_err(error_from_wit)
    }

    fn describe_table(&self, table: &str) -> Result<Option<db::TableInfo>, DbError> {
        let info = self.0.describe_table(table).map_err(error_from_wit)?;
        Ok(info.map(|t| db::TableInfo {
            name: t.name,
            columns: t
                .columns
                .into_iter()
                .map(|c| db::ColumnInfo {
                    name: c.name,
                    declared_type: c.declared_type,
                    not_null: c.not_null,
                    default_value: c.default_value,
                    primary_key: c.primary_key,
                })
                .collect(),
        }))
    }

    fn count_rows(&self, table: &str) -> Result<u64, DbError> {
        self.0.count_rows(table).map_err(error_from_wit)
    }

    fn read(
        &self,
        table: &str,
        columns: &[String],
        order_by: &[String],
        batch_rows: u32,
    ) -> Result<Box<dyn db::Cursor + '_>, DbError> {
        let cursor = self.0.read(table, columns, order_by, batch_rows).map_err(error_from_wit)?;
        Ok(Box::new(WitCursor(cursor)))
    }

    fn execute(&self, statement: &str) -> Result<u64, DbError> {
        self.0.execute(statement).map_err(error_from_wit)
    }

    fn execute_script(&self, statements: &[&str]) -> Result<(), DbError> {
        let owned: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
        self.0.execute_script(&owned).map_err(error_from_wit)
    }

    fn query(&self, statement: &str) -> Result<batch::Batch, DbError> {
        self.0.query(statement).map(batch_from_wit).map_err(error_from_wit)
    }

    fn bulk_load(&self, table: &str, columns: &[String]) -> Result<Box<dyn db::BulkWriter + '_>, DbError> {
        let writer = self.0.bulk_load(table, columns).map_err(error_from_wit)?;
        Ok(Box::new(WitWriter(writer)))
    }
}

impl db::Events for WitEvents {
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => wit_events::Level::Debug,
            Level::Info => wit_events::Level::Info,
            Level::Warn => wit_events::Level::Warn,
            Level::Error => wit_events::Level::Error,
        };
        wit_events::log(level, message);
    }

    fn progress(&self, database: &str, table: &str, rows_done: u64, rows_total: u64) {
        wit_events::progress(database, table, rows_done, rows_total);
    }

    fn reject(&self, row: &db::Rejection) {
        wit_events::reject(&wit_events::RejectedRow {
            database: row.database.clone(),
            table: row.table.clone(),
            primary_key: row.primary_key.clone(),
            column: row.column.clone(),
            value_excerpt: row.value_excerpt.clone(),
            reason: row.reason.clone(),
        });
    }
}
