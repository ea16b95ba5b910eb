//! A PostgreSQL handle answers correctly after any failed call, and a target whose transaction
//! a failed statement aborted is never committed.
//!
//! Runs against the server on 127.0.0.1:5432 (or `BLOCKLET_MIGRATE_TEST_PG_PORT`), as user
//! `postgres`, in throwaway databases each test creates and drops. Each call fails the way a
//! component would make it fail, inside a savepoint that is then rolled back, and the handle is
//! then asked questions whose answers are known.

use blocklet_migrate::backend::postgres::{IndexWorkers, PgDatabase};
use blocklet_migrate::backend::{BulkWriter, Source, Target};
use blocklet_migrate::wit::{Batch, ErrorKind, ValueTag};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

fn server() -> PgConnectOptions {
    let port = std::env::var("BLOCKLET_MIGRATE_TEST_PG_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5432);
    PgConnectOptions::new().host("127.0.0.1").port(port).username("postgres")
}

async fn admin() -> PgConnection {
    PgConnection::connect_with(&server().database("postgres")).await.expect("PostgreSQL on 127.0.0.1")
}

/// Run `test` on a database created for it, and drop that database afterwards, pass or fail.
async fn in_new_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    static CREATED: AtomicUsize = AtomicUsize::new(0);
    let name = format!("in_step_{}_{}", std::process::id(), CREATED.fetch_add(1, Ordering::Relaxed));
    let mut admin = admin().await;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test(name.clone()))).await;
    // The handles' connections close in the background: WITH (FORCE) does not wait for them.
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Every value of the only column of `batches`, as integers.
fn integers(batches: &[Batch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            assert_eq!(b.columns.len(), 1);
            b.columns[0].tags.iter().zip(&b.columns[0].numbers).map(|(t, n)| {
                assert_eq!(*t, ValueTag::Integer);
                *n
            })
        })
        .collect()
}

/// Read `column` of `table` to the end, in the column's order when `ordered`.
async fn read_all(target: &PgDatabase, table: &str, column: &str, ordered: bool) -> Result<Vec<Batch>, String> {
    let order_by = if ordered { names(&[column]) } else { Vec::new() };
    let mut rx = target.read(table, &names(&[column]), &order_by, 1000).await.map_err(|e| e.message)?;
    let mut batches = Vec::new();
    while let Some(batch) = rx.recv().await {
        batches.push(batch.map_err(|e| e.message)?);
    }
    Ok(batches)
}

/// Tables with known contents: `one` holds 1 row, `many` 97, `big` 20,000 (many COPY
/// messages), and the view `breaks` fails on its 5,000th row, mid-stream.
async fn known_tables(target: &PgDatabase) {
    for sql in [
        "CREATE TABLE one (id int8 PRIMARY KEY, name text NOT NULL)",
        "INSERT INTO one VALUES (1, 'a')",
        "CREATE TABLE many (id int8 PRIMARY KEY)",
        "INSERT INTO many SELECT generate_series(1, 97)",
        "CREATE TABLE big (id int8 PRIMARY KEY, pad text)",
        "INSERT INTO big SELECT i, repeat('x', 100) FROM generate_series(1, 20000) i",
        "CREATE VIEW breaks AS SELECT id, 10 / (id - 5000) AS ratio FROM big",
    ] {
        target.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

/// Ask `target` questions with known answers; `after` names the failure that came before.
async fn assert_answers(target: &PgDatabase, after: &str) {
    let one = target.describe_table("one").await.unwrap_or_else(|e| panic!("after {after}: describe: {e:?}"));
    let columns: Vec<String> = one.map(|t| t.columns.into_iter().map(|c| c.name).collect()).unwrap_or_default();
    assert_eq!(columns, ["id", "name"], "after {after}: describe-table one");
    assert_eq!(target.count_rows("one").await.ok(), Some(1), "after {after}: count-rows one");
    assert_eq!(target.count_rows("many").await.ok(), Some(97), "after {after}: count-rows many");
    let answer = target.query("SELECT 40 + 2").await.unwrap_or_else(|e| panic!("after {after}: query: {e:?}"));
    assert_eq!(integers(&[answer]), [42], "after {after}: SELECT 40 + 2");
    let read = read_all(target, "many", "id", true).await.unwrap_or_else(|e| panic!("after {after}: read: {e}"));
    assert_eq!(integers(&read), (1..=97).collect::<Vec<_>>(), "after {after}: read many");
    let tables = target.list_tables().await.unwrap_or_else(|e| panic!("after {after}: list-tables: {e:?}"));
    assert_eq!(tables, ["big", "many", "one"], "after {after}: list-tables");
}

/// One row of `one`'s shape.
fn row(id: i64, name: &str) -> Batch {
    let mut b = Batch::empty(2, 1);
    b.columns[0].push_number(ValueTag::Integer, id);
    b.columns[1].push_bytes(ValueTag::Text, name.as_bytes());
    b.rows = 1;
    b
}

#[tokio::test]
async fn every_answer_after_a_failed_call_is_right() {
    in_new_database(|db| async move {
        let target = PgDatabase::open(&server(), &db, IndexWorkers::ServerDefault);
        known_tables(&target).await;
        assert_answers(&target, "nothing").await;
        let savepoint = || target.execute("SAVEPOINT before_failure");
        let roll_back = || target.execute("ROLLBACK TO SAVEPOINT before_failure");

        // A read the server rejects before it starts: an order-by naming no column.
        savepoint().await.unwrap();
        let mut rx = target.read("one", &names(&["id"]), &names(&["no_such_column"]), 100).await.unwrap();
        let e = rx.recv().await.expect("an answer").expect_err("ORDER BY a column that does not exist");
        assert!(e.message.contains("no_such_column"), "{e:?}");
        roll_back().await.unwrap();
        assert_answers(&target, "a read rejected by the server").await;

        // A read the server fails mid-stream, after thousands of rows were sent.
        savepoint().await.unwrap();
        let failed = match read_all(&target, "breaks", "ratio", false).await {
            Err(e) => e,
            Ok(batches) => panic!("read {} batches of a view that fails at row 5000", batches.len()),
        };
        assert!(failed.contains("division by zero"), "{failed}");
        roll_back().await.unwrap();
        assert_answers(&target, "a read failed mid-stream").await;

        // A cursor dropped after its first batch, with most of the table still to come.
        let mut rx = target.read("big", &names(&["id"]), &[], 100).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().unwrap().rows, 100);
        drop(rx);
        assert_answers(&target, "a cursor dropped mid-stream").await;

        // A query the server rejects, and one that fails while it runs.
        savepoint().await.unwrap();
        assert!(target.query("SELECT no_such_column FROM one").await.is_err());
        roll_back().await.unwrap();
        savepoint().await.unwrap();
        assert!(target.query("SELECT 1 / (id - 50) FROM many").await.is_err());
        roll_back().await.unwrap();
        assert_answers(&target, "failed queries").await;

        // Describe, count and read in a transaction a failed statement aborted.
        savepoint().await.unwrap();
        assert!(target.execute("SELECT 1/0").await.is_err());
        let e = target.describe_table("one").await.expect_err("describe in an aborted transaction");
        assert_eq!(e.code.as_deref(), Some("25P02"), "{e:?}");
        assert!(target.count_rows("one").await.is_err());
        assert!(target.count_rows("no_such_table").await.is_err());
        assert!(read_all(&target, "one", "id", true).await.is_err());
        roll_back().await.unwrap();
        assert_answers(&target, "calls in an aborted transaction").await;

        // A count of a table that does not exist.
        savepoint().await.unwrap();
        assert_eq!(target.count_rows("no_such_table").await.unwrap_err().kind, ErrorKind::NotFound);
        roll_back().await.unwrap();
        assert_answers(&target, "a count of a missing table").await;

        // A COPY in that the server fails on a duplicate key, at finish.
        savepoint().await.unwrap();
        let mut writer = target.bulk_load("one", &names(&["id", "name"])).await.unwrap();
        writer.write(row(2, "b")).await.unwrap();
        writer.write(row(1, "duplicate")).await.unwrap();
        let e = writer.finish().await.expect_err("a duplicate key");
        assert_eq!(e.kind, ErrorKind::Constraint, "{e:?}");
        roll_back().await.unwrap();
        assert_answers(&target, "a COPY in failed at finish").await;

        // A writer dropped without finish after the server failed its COPY: the abort meets
        // the server's error.
        savepoint().await.unwrap();
        let mut writer = target.bulk_load("one", &names(&["id", "name"])).await.unwrap();
        writer.write(row(1, "duplicate")).await.unwrap();
        writer.write(row(3, "c")).await.unwrap();
        drop(writer);
        roll_back().await.unwrap();
        assert_answers(&target, "a failed COPY in whose writer was dropped").await;

        // A writer dropped without finish while its COPY was fine.
        savepoint().await.unwrap();
        let mut writer = target.bulk_load("one", &names(&["id", "name"])).await.unwrap();
        writer.write(row(4, "d")).await.unwrap();
        drop(writer);
        roll_back().await.unwrap();
        assert_answers(&target, "a COPY in whose writer was dropped").await;

        // The handle still writes and commits what it is asked to.
        let mut writer = target.bulk_load("one", &names(&["id", "name"])).await.unwrap();
        writer.write(row(5, "e")).await.unwrap();
        assert_eq!(writer.finish().await.unwrap(), 1);
        target.commit().await.unwrap();
        let mut conn = PgConnection::connect_with(&server().database(&db)).await.unwrap();
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM one ORDER BY id").fetch_all(&mut conn).await.unwrap();
        assert_eq!(ids, [1, 5]);
        conn.close().await.unwrap();
    })
    .await;
}

/// A source, read-only, answers correctly after a read the server rejected.
#[tokio::test]
async fn a_source_answers_right_after_a_rejected_read() {
    in_new_database(|db| async move {
        let setup = PgDatabase::open(&server(), &db, IndexWorkers::ServerDefault);
        known_tables(&setup).await;
        setup.commit().await.unwrap();
        let source = PgDatabase::open_source(&server(), &db).await.unwrap();
        source.execute("SAVEPOINT before_failure").await.unwrap();
        let mut rx = source.read("one", &names(&["id"]), &names(&["no_such_column"]), 100).await.unwrap();
        assert!(rx.recv().await.unwrap().is_err());
        source.execute("ROLLBACK TO SAVEPOINT before_failure").await.unwrap();
        assert_answers(&source, "a read rejected by the server").await;
    })
    .await;
}

/// Whether `table` exists in `db`, asked on a connection of its own.
async fn table_exists(db: &str, table: &str) -> bool {
    let mut conn = PgConnection::connect_with(&server().database(db)).await.unwrap();
    let found: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    found
}

/// PostgreSQL turns the COMMIT of an aborted transaction into a ROLLBACK without an error:
/// the commit must say so, and nothing of it may be there afterwards.
#[tokio::test]
async fn a_transaction_a_failed_statement_aborted_is_not_committed() {
    in_new_database(|db| async move {
        let target = PgDatabase::open(&server(), &db, IndexWorkers::ServerDefault);
        target.execute("CREATE TABLE copied (id int8)").await.unwrap();
        target.execute("INSERT INTO copied VALUES (1), (2)").await.unwrap();
        let e = target.execute("SELECT 1/0").await.unwrap_err();
        assert_eq!(e.code.as_deref(), Some("22012"), "{e:?}");
        let e = target.commit().await.expect_err("the commit of an aborted transaction fails");
        assert!(e.message.starts_with(&format!("{db}: the transaction was not committed: ")), "{e:?}");
        assert!(e.message.contains("not rolled back to a savepoint"), "{e:?}");
        assert!(!table_exists(&db, "copied").await, "nothing of the aborted transaction is committed");
    })
    .await;
}

#[tokio::test]
async fn a_failed_statement_rolled_back_to_its_savepoint_commits() {
    in_new_database(|db| async move {
        let target = PgDatabase::open(&server(), &db, IndexWorkers::ServerDefault);
        target.execute("CREATE TABLE copied (id int8)").await.unwrap();
        target.execute("SAVEPOINT guarded").await.unwrap();
        assert!(target.execute("SELECT 1/0").await.is_err());
        target.execute("ROLLBACK TO SAVEPOINT guarded").await.unwrap();
        target.execute("INSERT INTO copied VALUES (1), (2)").await.unwrap();
        target.commit().await.unwrap();
        assert!(table_exists(&db, "copied").await);
    })
    .await;
}
