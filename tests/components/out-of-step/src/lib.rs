//! `migrate-to-postgres` makes every kind of call fail on the PostgreSQL target, each inside a
//! savepoint it then rolls back — a `read` ordered by a missing column, a query PostgreSQL
//! rejects, a count and a bulk load of a missing table, a `CREATE TABLE` of an existing one, a
//! batch the column type refuses, a cursor dropped mid-stream, a bulk load dropped unfinished —
//! and after each asks four questions whose answers it knows (a count, a description, the table
//! list, a query). Fails with `out-of-step: all N answers right after M failed calls`, else
//! `out-of-step: WRONG: <after what>: <question> (<answer>) | …`.

include!("../../shell.rs");

use blocklet::migrate::database::Cursor;

fn integers(values: &[i64]) -> Batch {
    Batch {
        rows: values.len() as u32,
        columns: vec![ColumnValues {
            tags: vec![ValueTag::Integer; values.len()],
            numbers: values.to_vec(),
            bytes: Vec::new(),
            ends: vec![0; values.len()],
        }],
    }
}

/// The questions with known answers: `k` holds 1..=200 in column `a`.
fn wrong_answers(target: &Handle) -> Vec<String> {
    let mut wrong = Vec::new();
    match target.count_rows("k") {
        Ok(200) => {}
        other => wrong.push(format!("count-rows k ({other:?})")),
    }
    match target.describe_table("k") {
        Ok(Some(info)) if info.columns.len() == 1 && info.columns[0].name == "a" => {}
        other => wrong.push(format!("describe-table k ({:?})", other.map(|i| i.map(|i| i.columns.len())))),
    }
    match target.list_tables() {
        Ok(tables) if tables == ["k"] => {}
        other => wrong.push(format!("list-tables ({other:?})")),
    }
    match target.query("SELECT max(a) + 1 FROM public.k") {
        Ok(b) if b.rows == 1 && b.columns.first().is_some_and(|c| c.numbers.first() == Some(&201)) => {}
        other => wrong.push(format!("query max(a) + 1 ({:?})", other.map(|b| (b.rows, b.columns.first().map(|c| c.numbers.clone()))))),
    }
    wrong
}

fn fail_one(target: &Handle, case: &str) -> Result<(), String> {
    let columns = ["a".to_string()];
    match case {
        "read ordered by a missing column" => {
            let cursor: Result<Cursor, _> = target.read("k", &columns, &["missing".to_string()], 10);
            match cursor {
                Err(e) => Err(e.message),
                Ok(c) => c.next_batch().map(|_| ()).map_err(|e| e.message),
            }
        }
        "a query PostgreSQL rejects" => target.query("SELECT 1/0").map(|_| ()).map_err(|e| e.message),
        "count of a missing table" => target.count_rows("missing").map(|_| ()).map_err(|e| e.message),
        "CREATE TABLE of an existing table" => {
            target.execute("CREATE TABLE public.k (a integer)").map(|_| ()).map_err(|e| e.message)
        }
        "bulk load of a missing table" => target.bulk_load("missing", &columns).map(|_| ()).map_err(|e| e.message),
        "a batch the column refuses" => {
            let w = target.bulk_load("k", &columns).map_err(|e| e.message)?;
            let refused = w.write(&Batch { rows: 1, columns: vec![text_column(&["not a number"])] });
            let _ = w.finish();
            refused.map_err(|e| e.message)
        }
        "a cursor dropped mid-stream" => {
            let c = target.read("k", &columns, &[], 10).map_err(|e| e.message)?;
            c.next_batch().map_err(|e| e.message)?;
            drop(c);
            Err("dropped after one batch".into())
        }
        "a bulk load dropped unfinished" => {
            let w = target.bulk_load("k", &columns).map_err(|e| e.message)?;
            w.write(&integers(&[1000, 1001])).map_err(|e| e.message)?;
            drop(w);
            Err("dropped after one batch".into())
        }
        _ => Ok(()),
    }
}

const CASES: [&str; 8] = [
    "read ordered by a missing column",
    "a query PostgreSQL rejects",
    "count of a missing table",
    "CREATE TABLE of an existing table",
    "bulk load of a missing table",
    "a batch the column refuses",
    "a cursor dropped mid-stream",
    "a bulk load dropped unfinished",
];

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "k", "a integer NOT NULL")?;
    let w = target.bulk_load("k", &["a".to_string()]).map_err(|e| failure(e.message))?;
    w.write(&integers(&(1..=200).collect::<Vec<_>>())).map_err(|e| failure(e.message))?;
    w.finish().map_err(|e| failure(e.message))?;
    let mut wrong: Vec<String> = wrong_answers(target).into_iter().map(|w| format!("before any failure: {w}")).collect();
    let mut failed = 0;
    for case in CASES {
        target.execute("SAVEPOINT out_of_step").map_err(|e| failure(format!("out-of-step: SAVEPOINT: {}", e.message)))?;
        match fail_one(target, case) {
            Ok(()) => wrong.push(format!("{case}: did not fail")),
            Err(e) => {
                failed += 1;
                events::log(Level::Info, &format!("out-of-step: {case}: {e}"));
            }
        }
        target
            .execute("ROLLBACK TO SAVEPOINT out_of_step")
            .map_err(|e| failure(format!("out-of-step: after {case}: ROLLBACK TO SAVEPOINT: {}", e.message)))?;
        wrong.extend(wrong_answers(target).into_iter().map(|w| format!("after {case}: {w}")));
    }
    if wrong.is_empty() {
        let asked = 4 * (CASES.len() + 1);
        Err(failure(format!("out-of-step: all {asked} answers right after {failed} failed calls")))
    } else {
        Err(failure(format!("out-of-step: WRONG: {}", wrong.join(" | "))))
    }
}
