//! Both directions' flow, run natively against the in-memory databases of `db/memory.rs`:
//! a clean copy, a rejected value (with and without skip-rejects), a target that loses or
//! alters a row after the load, a target failing mid-table, and an empty database.

use super::{DatabaseReport, Failure, FailureKind, Options, clamp_batch_rows, migrate_to_postgres, migrate_to_sqlite};
use crate::catalog::{Catalog, Kind, META_TABLE};
use crate::db::Database;
use crate::db::memory::{Engine, MemoryDatabase, RecordedEvents, Sequence, Stored, Tamper};
use crate::ddl::Phase;
use crate::naming::database_name;
use crate::plan::Planned;

/// 2024-05-06 07:08:09.123 UTC and 2025-01-31 23:59:59 UTC, in microseconds since the epoch.
const MAY_2024: i64 = 1_714_979_289_123_000;
const JAN_2025: i64 = 1_738_367_999_000_000;

const MESSAGE_COLUMNS: [&str; 5] = ["id", "did", "event", "data", "createdAt"];

fn options() -> Options {
    Options { force: false, batch_rows: 2, skip_rejects: false, dry_run: false }
}

fn planned(kind: Kind) -> Planned {
    let file = kind.facts().sqlite_pattern.to_string();
    Planned { kind, postgres_database: database_name(&file), sqlite_file: file, app_pid: None }
}

fn meta_rows(catalog: &Catalog) -> Vec<Vec<Stored>> {
    catalog.migrations.iter().map(|m| vec![Stored::text(m)]).collect()
}

/// A SQLite file as the server leaves it: its schema and its meta rows, no data.
fn sqlite_source(kind: Kind) -> MemoryDatabase {
    let catalog = kind.catalog();
    let db = MemoryDatabase::new(Engine::Sqlite, catalog.facts.sqlite_pattern);
    for table in &catalog.sqlite.tables {
        db.execute(&table.create_sql).unwrap();
    }
    db.insert(META_TABLE, &["name"], meta_rows(catalog));
    db
}

/// A PostgreSQL database as the server leaves it: its tables, types and sequences, and its
/// meta rows, no data.
fn postgres_source(kind: Kind) -> MemoryDatabase {
    let catalog = kind.catalog();
    let db = MemoryDatabase::new(Engine::Postgres, &planned(kind).postgres_database);
    for stmt in catalog.schema.statements.iter().filter(|s| s.phase == Phase::PreData) {
        db.execute(&stmt.sql).unwrap();
    }
    db.insert(META_TABLE, &["name"], meta_rows(catalog));
    db
}

/// Five service messages as SQLite holds them; `data` of the row named `bad` is not JSON.
fn sqlite_messages(bad: Option<&str>) -> Vec<Vec<Stored>> {
    (1..=5)
        .map(|i| {
            let id = format!("m{i}");
            let data = if bad == Some(id.as_str()) { "not json".to_string() } else { format!("{{\"n\": {i}}}") };
            vec![
                Stored::text(&id),
                Stored::text("zDid"),
                Stored::text("created"),
                Stored::text(&data),
                Stored::text("2024-05-06 07:08:09.123 +00:00"),
            ]
        })
        .collect()
}

/// The same five messages as PostgreSQL holds them; `createdAt` of the row named `bad` has
/// microseconds, which the server's SQLite text cannot keep.
fn postgres_messages(bad: Option<&str>) -> Vec<Vec<Stored>> {
    (1..=5)
        .map(|i| {
            let id = format!("m{i}");
            let at = if bad == Some(id.as_str()) { MAY_2024 + 1 } else { MAY_2024 };
            vec![
                Stored::text(&id),
                Stored::text("zDid"),
                Stored::text("created"),
                Stored::json(&format!("{{\"n\": {i}}}")),
                Stored::Timestamp(at),
            ]
        })
        .collect()
}

fn to_postgres(
    source: &MemoryDatabase,
    options: &Options,
) -> (MemoryDatabase, RecordedEvents, Result<DatabaseReport, Failure>) {
    let plan = planned(Kind::Service);
    let target = MemoryDatabase::new(Engine::Postgres, &plan.postgres_database);
    let events = RecordedEvents::default();
    let result = migrate_to_postgres(&plan, source, &target, options, &events);
    (target, events, result)
}

fn to_sqlite(
    source: &MemoryDatabase,
    options: &Options,
) -> (MemoryDatabase, RecordedEvents, Result<DatabaseReport, Failure>) {
    let plan = planned(Kind::Service);
    let target = MemoryDatabase::new(Engine::Sqlite, &plan.sqlite_file);
    let events = RecordedEvents::default();
    let result = migrate_to_sqlite(&plan, source, &target, options, &events);
    (target, events, result)
}

fn service_sqlite(bad: Option<&str>) -> MemoryDatabase {
    let source = sqlite_source(Kind::Service);
    source.insert("messages", &MESSAGE_COLUMNS, sqlite_messages(bad));
    source
}

fn service_postgres(bad: Option<&str>) -> MemoryDatabase {
    let source = postgres_source(Kind::Service);
    source.insert("messages", &MESSAGE_COLUMNS, postgres_messages(bad));
    source
}

fn ids(db: &MemoryDatabase, table: &str) -> Vec<Stored> {
    db.rows(table, &["id"]).into_iter().map(|mut r| r.remove(0)).collect()
}

fn texts(names: &[&str]) -> Vec<Stored> {
    names.iter().map(|n| Stored::text(n)).collect()
}

fn migrations(kind: Kind) -> Vec<Vec<Stored>> {
    meta_rows(kind.catalog())
}

fn ran(db: &MemoryDatabase, prefix: &str) -> bool {
    db.statements().iter().any(|s| s.starts_with(prefix))
}

#[test]
fn batch_rows_are_clamped_to_what_the_host_serves() {
    assert_eq!([0, 1, 500, 100_000, u32::MAX].map(clamp_batch_rows), [1, 1, 500, 100_000, 100_000]);
}

// SQLite → PostgreSQL

#[test]
fn to_postgres_copies_a_clean_table_and_fills_the_meta_table() {
    let (target, events, result) = to_postgres(&service_sqlite(None), &options());
    let report = result.unwrap();
    assert_eq!(report.rejected_rows, 0);
    assert_eq!(report.tables.len(), 1);
    let messages = &report.tables[0];
    assert_eq!((messages.table.as_str(), messages.source_rows, messages.target_rows), ("messages", 5, 5));
    assert_eq!(messages.rejected_rows, 0);
    // Values arrive converted: JSON as JSON, timestamps as instants.
    let first = &target.rows("messages", &MESSAGE_COLUMNS)[0];
    assert_eq!(first[3], Stored::json("{\"n\": 1}"));
    assert_eq!(first[4], Stored::Timestamp(MAY_2024));
    assert_eq!(ids(&target, "messages"), texts(&["m1", "m2", "m3", "m4", "m5"]));
    assert_eq!(target.rows(META_TABLE, &["name"]), migrations(Kind::Service));
    assert!(ran(&target, "ALTER TABLE ONLY public.messages\n    ADD CONSTRAINT messages_pkey PRIMARY KEY (id);"));
    // Progress: the total first, then after the last batch.
    let progress = events.progress.borrow();
    assert_eq!(progress.first(), Some(&("service_db".into(), "messages".into(), 0, 5)));
    assert_eq!(progress.last(), Some(&("service_db".into(), "messages".into(), 5, 5)));
    assert!(events.rejections.borrow().is_empty());
}

#[test]
fn to_postgres_keeps_serial_ids_past_what_sqlite_handed_out() {
    let source = sqlite_source(Kind::Server);
    let tag = |id: i64, title: &str| vec![Stored::Integer(id), Stored::text(title), Stored::text("#fff")];
    source.insert("tags", &["id", "title", "color"], vec![tag(1, "a"), tag(2, "b"), tag(7, "c")]);
    // Ids 8 and 9 were handed out and deleted: PostgreSQL must not hand them out again.
    source.insert("sqlite_sequence", &["name", "seq"], vec![vec![Stored::text("tags"), Stored::Integer(9)]]);
    let plan = planned(Kind::Server);
    let target = MemoryDatabase::new(Engine::Postgres, &plan.postgres_database);
    let report = migrate_to_postgres(&plan, &source, &target, &options(), &RecordedEvents::default()).unwrap();
    assert_eq!(report.tables.len(), Kind::Server.catalog().load_order.len());
    let tags = report.tables.iter().find(|t| t.table == "tags").unwrap();
    assert_eq!((tags.source_rows, tags.target_rows), (3, 3));
    assert_eq!(target.sequence("tags_id_seq"), Some(Sequence { last_value: 10, is_called: false }));
    assert_eq!(target.sequence("blacklists_id_seq"), Some(Sequence { last_value: 1, is_called: false }));
    assert_eq!(target.rows(META_TABLE, &["name"]), migrations(Kind::Server));
}

#[test]
fn to_postgres_refuses_a_rejected_value_unless_told_to_skip_it() {
    let (target, events, result) = to_postgres(&service_sqlite(Some("m2")), &options());
    let failure = result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::RejectedRows);
    assert_eq!(failure.rejected_rows, 1);
    assert_eq!(failure.message, "1 row(s) of services/service.db cannot be migrated faithfully; nothing was committed");
    let rejections = events.rejections.borrow();
    assert_eq!(rejections.len(), 1);
    let r = &rejections[0];
    assert_eq!(
        (r.database.as_str(), r.table.as_str(), r.primary_key.as_str(), r.column.as_str(), r.value_excerpt.as_str()),
        ("service_db", "messages", "id=m2", "data", "not json")
    );
    assert!(!r.reason.is_empty());
    // The other rows were loaded (the host rolls them back); no key was added to rows that failed.
    assert_eq!(ids(&target, "messages"), texts(&["m1", "m3", "m4", "m5"]));
    assert!(!ran(&target, "ALTER TABLE ONLY public.messages\n    ADD CONSTRAINT"));

    let skip = Options { skip_rejects: true, ..options() };
    let (target, events, result) = to_postgres(&service_sqlite(Some("m2")), &skip);
    let report = result.unwrap();
    assert_eq!(report.rejected_rows, 1);
    let messages = &report.tables[0];
    assert_eq!((messages.source_rows, messages.target_rows, messages.rejected_rows), (5, 4, 1));
    assert_eq!(ids(&target, "messages"), texts(&["m1", "m3", "m4", "m5"]));
    assert_eq!(events.rejections.borrow().len(), 1);
    assert!(ran(&target, "ALTER TABLE ONLY public.messages\n    ADD CONSTRAINT messages_pkey"));
}

#[test]
fn to_postgres_fails_verification_when_the_target_loses_or_alters_a_row() {
    let source = service_sqlite(None);
    let plan = planned(Kind::Service);
    let target = MemoryDatabase::new(Engine::Postgres, &plan.postgres_database);
    target.tamper_after_load("messages", Tamper::LoseLastRow);
    let failure = migrate_to_postgres(&plan, &source, &target, &options(), &RecordedEvents::default()).unwrap_err();
    assert_eq!(failure.kind, FailureKind::VerificationMismatch);
    assert!(
        failure.message.starts_with("verification failed for service_db.messages: source 5 rows (checksum "),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("target 4 rows"), "{}", failure.message);

    let target = MemoryDatabase::new(Engine::Postgres, &plan.postgres_database);
    let altered = Tamper::Replace { row: 2, column: "event".into(), value: Stored::text("deleted") };
    target.tamper_after_load("messages", altered);
    let failure = migrate_to_postgres(&plan, &source, &target, &options(), &RecordedEvents::default()).unwrap_err();
    assert_eq!(failure.kind, FailureKind::VerificationMismatch);
    assert_checksums_differ(&failure.message, 5);
}

/// A verification message names the same row count on both sides and different checksums.
fn assert_checksums_differ(message: &str, rows: u64) {
    let checksums: Vec<&str> = message.split("(checksum ").skip(1).map(|s| &s[..16]).collect();
    assert_eq!(checksums.len(), 2, "{message}");
    assert_ne!(checksums[0], checksums[1], "{message}");
    assert_eq!(message.matches(&format!("{rows} rows")).count(), 2, "{message}");
}

#[test]
fn to_postgres_stops_at_a_batch_the_target_fails() {
    let source = service_sqlite(None);
    let plan = planned(Kind::Service);
    let target = MemoryDatabase::new(Engine::Postgres, &plan.postgres_database);
    target.fail_write("messages", 2);
    let failure = migrate_to_postgres(&plan, &source, &target, &options(), &RecordedEvents::default()).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Other);
    assert_eq!(failure.message, "loading service_db.messages: batch 2 of messages: connection lost");
    assert_eq!(ids(&target, "messages"), texts(&["m1", "m2"]));
    assert!(!target.has_table(META_TABLE), "nothing after the failed table ran");
}

#[test]
fn to_postgres_of_an_empty_database_creates_the_schema_and_the_meta_rows() {
    let (target, events, result) = to_postgres(&sqlite_source(Kind::Service), &options());
    let report = result.unwrap();
    assert_eq!(report.tables.len(), 1);
    assert_eq!((report.tables[0].source_rows, report.tables[0].target_rows), (0, 0));
    assert!(target.rows("messages", &["id"]).is_empty());
    assert_eq!(target.rows(META_TABLE, &["name"]), migrations(Kind::Service));
    assert_eq!(events.progress.borrow().as_slice(), &[("service_db".into(), "messages".into(), 0, 0)]);

    // A file whose tables were never created: every table is created empty, and said so.
    let bare = MemoryDatabase::new(Engine::Sqlite, "services/service.db");
    let (target, events, result) = to_postgres(&bare, &options());
    assert_eq!(result.unwrap().tables[0].target_rows, 0);
    assert!(target.has_table("messages"));
    let logs = events.logs.borrow();
    assert!(logs.iter().any(|(_, m)| m.contains("table messages is not in the source (older server); created empty")));
}

#[test]
fn to_postgres_replaces_a_target_holding_rows_only_when_forced() {
    let source = service_sqlite(None);
    let (target, _, result) = to_postgres(&source, &options());
    result.unwrap();
    let plan = planned(Kind::Service);
    let events = RecordedEvents::default();
    let failure = migrate_to_postgres(&plan, &source, &target, &options(), &events).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Refused);
    assert_eq!(
        failure.message,
        "PostgreSQL database service_db already holds Blocklet Server data (messages: 5 rows); re-run with --force to replace it"
    );
    let forced = Options { force: true, ..options() };
    let report = migrate_to_postgres(&plan, &source, &target, &forced, &events).unwrap();
    assert_eq!(report.tables[0].target_rows, 5);
    assert_eq!(ids(&target, "messages"), texts(&["m1", "m2", "m3", "m4", "m5"]));
    assert_eq!(target.rows(META_TABLE, &["name"]), migrations(Kind::Service));
    assert!(ran(&target, "DROP TABLE IF EXISTS public.\"messages\" CASCADE"));
}

// PostgreSQL → SQLite

#[test]
fn to_sqlite_writes_the_servers_representation() {
    let (target, events, result) = to_sqlite(&service_postgres(None), &options());
    let report = result.unwrap();
    assert_eq!(report.rejected_rows, 0);
    let messages = &report.tables[0];
    assert_eq!((messages.table.as_str(), messages.source_rows, messages.target_rows), ("messages", 5, 5));
    let first = &target.rows("messages", &MESSAGE_COLUMNS)[0];
    // JSON as compact text and timestamps as Sequelize's text, as the server writes them.
    assert_eq!(first[3], Stored::text("{\"n\":1}"));
    assert_eq!(first[4], Stored::text("2024-05-06 07:08:09.123 +00:00"));
    assert_eq!(ids(&target, "messages"), texts(&["m1", "m2", "m3", "m4", "m5"]));
    assert_eq!(target.rows(META_TABLE, &["name"]), migrations(Kind::Service));
    assert!(ran(&target, "CREATE INDEX `messages_did_index`"));
    assert!(events.rejections.borrow().is_empty());
}

#[test]
fn to_sqlite_keeps_sqlite_sequence_at_postgres_sequences() {
    let source = postgres_source(Kind::Server);
    let at = |id: i64| {
        vec![Stored::Integer(id), Stored::text(&format!("t{id}")), Stored::text("#fff"), Stored::Timestamp(JAN_2025)]
    };
    source.insert("tags", &["id", "title", "color", "createdAt"], vec![at(1), at(4)]);
    source.set_sequence("tags_id_seq", 12, true);
    let plan = planned(Kind::Server);
    let target = MemoryDatabase::new(Engine::Sqlite, &plan.sqlite_file);
    let report = migrate_to_sqlite(&plan, &source, &target, &options(), &RecordedEvents::default()).unwrap();
    let tags = report.tables.iter().find(|t| t.table == "tags").unwrap();
    assert_eq!((tags.source_rows, tags.target_rows), (2, 2));
    assert_eq!(target.rows("tags", &["createdAt"])[1], vec![Stored::text("2025-01-31 23:59:59.000 +00:00")]);
    assert_eq!(target.rows("sqlite_sequence", &["name", "seq"]), vec![vec![Stored::text("tags"), Stored::Integer(12)]]);
    assert_eq!(target.rows(META_TABLE, &["name"]), migrations(Kind::Server));
}

#[test]
fn to_sqlite_refuses_a_rejected_value_unless_told_to_skip_it() {
    let (target, events, result) = to_sqlite(&service_postgres(Some("m4")), &options());
    let failure = result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::RejectedRows);
    assert_eq!(failure.rejected_rows, 1);
    assert_eq!(failure.message, "1 row(s) of service_db cannot be written to SQLite faithfully; nothing was written");
    let rejections = events.rejections.borrow();
    assert_eq!(rejections.len(), 1);
    let r = &rejections[0];
    assert_eq!(
        (r.database.as_str(), r.primary_key.as_str(), r.column.as_str()),
        ("services/service.db", "id=m4", "createdAt")
    );
    assert!(r.reason.contains("microseconds"), "{}", r.reason);
    assert!(target.rows(META_TABLE, &["name"]).is_empty(), "the meta table is filled only after every table copied");

    let skip = Options { skip_rejects: true, ..options() };
    let (target, _, result) = to_sqlite(&service_postgres(Some("m4")), &skip);
    let report = result.unwrap();
    assert_eq!(report.rejected_rows, 1);
    let messages = &report.tables[0];
    assert_eq!((messages.source_rows, messages.target_rows, messages.rejected_rows), (5, 4, 1));
    assert_eq!(ids(&target, "messages"), texts(&["m1", "m2", "m3", "m5"]));
    assert_eq!(target.rows(META_TABLE, &["name"]), migrations(Kind::Service));
}

#[test]
fn to_sqlite_fails_verification_when_the_target_loses_or_alters_a_row() {
    let source = service_postgres(None);
    let plan = planned(Kind::Service);
    let target = MemoryDatabase::new(Engine::Sqlite, &plan.sqlite_file);
    target.tamper_after_load("messages", Tamper::LoseLastRow);
    let failure = migrate_to_sqlite(&plan, &source, &target, &options(), &RecordedEvents::default()).unwrap_err();
    assert_eq!(failure.kind, FailureKind::VerificationMismatch);
    assert!(
        failure.message.starts_with("verification failed for services/service.db.messages: source 5 rows"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("target 4 rows"), "{}", failure.message);

    let target = MemoryDatabase::new(Engine::Sqlite, &plan.sqlite_file);
    let altered = Tamper::Replace { row: 0, column: "data".into(), value: Stored::text("{\"n\":9}") };
    target.tamper_after_load("messages", altered);
    let failure = migrate_to_sqlite(&plan, &source, &target, &options(), &RecordedEvents::default()).unwrap_err();
    assert_eq!(failure.kind, FailureKind::VerificationMismatch);
    assert_checksums_differ(&failure.message, 5);
}

#[test]
fn to_sqlite_stops_at_a_batch_the_target_fails() {
    let source = service_postgres(None);
    let plan = planned(Kind::Service);
    let target = MemoryDatabase::new(Engine::Sqlite, &plan.sqlite_file);
    target.fail_write("messages", 3);
    let failure = migrate_to_sqlite(&plan, &source, &target, &options(), &RecordedEvents::default()).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Other);
    assert_eq!(failure.message, "loading services/service.db.messages: batch 3 of messages: connection lost");
    assert_eq!(ids(&target, "messages"), texts(&["m1", "m2", "m3", "m4"]));
    assert!(target.rows(META_TABLE, &["name"]).is_empty());
}

#[test]
fn to_sqlite_of_an_empty_database_creates_the_schema_and_the_meta_rows() {
    let (target, events, result) = to_sqlite(&postgres_source(Kind::Service), &options());
    let report = result.unwrap();
    assert_eq!((report.tables[0].source_rows, report.tables[0].target_rows), (0, 0));
    assert!(target.rows("messages", &["id"]).is_empty());
    assert_eq!(target.rows(META_TABLE, &["name"]), migrations(Kind::Service));
    assert!(events.rejections.borrow().is_empty());
}

#[test]
fn a_source_from_a_newer_server_is_refused() {
    let source = service_sqlite(None);
    source.insert(META_TABLE, &["name"], vec![vec![Stored::text("20991231000000-future.js")]]);
    let (target, _, result) = to_postgres(&source, &options());
    let failure = result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Refused);
    assert!(failure.message.contains("(20991231000000-future.js)"), "{}", failure.message);
    assert!(target.statements().is_empty(), "nothing was sent to the target");
}

/// The component built with `test-other-conventions` creates and fills its own meta table.
#[cfg(feature = "test-other-conventions")]
#[test]
fn another_meta_table_is_the_one_created_and_filled() {
    let (target, _, result) = to_postgres(&service_sqlite(None), &options());
    result.unwrap();
    assert!(ran(&target, "CREATE TABLE public.\"MigrationMeta\" ("));
    assert!(ran(&target, "INSERT INTO public.\"MigrationMeta\" (name) VALUES ('20230422000000-genesis.js'), "));
    assert_eq!(target.rows("MigrationMeta", &["name"]), migrations(Kind::Service));
    assert!(!target.has_table("SequelizeMeta"));

    let (target, _, result) = to_sqlite(&service_postgres(None), &options());
    result.unwrap();
    assert!(ran(&target, "CREATE TABLE `MigrationMeta` ("));
    assert_eq!(target.rows("MigrationMeta", &["name"]), migrations(Kind::Service));
    assert!(!target.has_table("SequelizeMeta"));
}
