//! `migrate-to-postgres` passes names longer than PostgreSQL's 63-byte identifiers to every
//! host call that takes one: a 50 MiB table name to `describe-table` and `count-rows` (on the
//! source and the target), and 64-byte table, column and order-by names to `read` and
//! `bulk-load`. The host must refuse each before using it (error kind `invalid-input`), with a
//! short message. Fails with `huge-names: all N refused` when every call was refused so, else
//! `huge-names: NOT refused: <case> (…) | …`.

include!("../../shell.rs");

const HUGE_BYTES: usize = 50 << 20;

fn check(problems: &mut Vec<String>, case: &str, outcome: Result<String, DbError>) {
    match outcome {
        Err(e) if e.kind == ErrorKind::InvalidInput && e.message.len() <= 512 => {
            events::log(Level::Info, &format!("huge-names: {case}: refused: {}", e.message));
        }
        Err(e) => problems.push(format!("{case} ({:?}, {} bytes of message)", e.kind, e.message.len())),
        Ok(what) => problems.push(format!("{case} ({what})")),
    }
}

fn hostile(source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "users", USERS_COLUMNS)?;
    let mut problems = Vec::new();
    let mut cases = 0;
    {
        let huge = "n".repeat(HUGE_BYTES);
        for (side, handle) in [("source", source), ("target", target)] {
            cases += 2;
            check(
                &mut problems,
                &format!("{side} describe-table"),
                handle.describe_table(&huge).map(|t| format!("{t:?}")),
            );
            check(&mut problems, &format!("{side} count-rows"), handle.count_rows(&huge).map(|n| format!("{n} rows")));
        }
    }
    let long = "x".repeat(64);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let reads: [(&str, &str, Vec<String>, Vec<String>); 3] = [
        ("read table", &long, names(&["did"]), vec![]),
        ("read column", "users", vec![long.clone()], vec![]),
        ("read order-by", "users", names(&["did"]), vec![long.clone()]),
    ];
    for (case, table, columns, order_by) in reads {
        cases += 1;
        check(&mut problems, case, target.read(table, &columns, &order_by, 10).map(|_| "a cursor".to_string()));
    }
    let loads: [(&str, &str, Vec<String>); 2] = [
        ("bulk-load table", &long, names(&["did", "pk"])),
        ("bulk-load column", "users", vec!["did".into(), long.clone()]),
    ];
    for (case, table, columns) in loads {
        cases += 1;
        check(&mut problems, case, target.bulk_load(table, &columns).map(|_| "a writer".to_string()));
    }
    if problems.is_empty() {
        Err(failure(format!("huge-names: all {cases} refused")))
    } else {
        Err(failure(format!("huge-names: NOT refused: {}", problems.join(" | "))))
    }
}
