//! `migrate-to-postgres` starts bulk loads and writes batches that break the `batch` contract
//! or the target's column types. The host must refuse each write itself (error kind
//! `invalid-input` or `limit`) without passing it to PostgreSQL, and a refused batch must leave
//! the load as it was (finishing it then loads nothing). Each case runs under a savepoint, so
//! one case's aborted load cannot hide the next. Fails with `malformed-batch: all N refused`
//! when every write was refused cleanly, else
//! `malformed-batch: problems: <case> (<what happened>) | …`.

include!("../../shell.rs");

fn number_column(tag: ValueTag, values: &[i64]) -> ColumnValues {
    ColumnValues {
        tags: vec![tag; values.len()],
        numbers: values.to_vec(),
        bytes: Vec::new(),
        ends: vec![0; values.len()],
    }
}

fn cases() -> Vec<(&'static str, &'static str, Vec<&'static str>, Batch)> {
    let users = || vec!["did", "pk"];
    let ok_pk = || text_column(&["pk-1"]);
    vec![
        ("one column for two", "users", users(), Batch { rows: 1, columns: vec![text_column(&["did-1"])] }),
        (
            "three columns for two",
            "users",
            users(),
            Batch { rows: 1, columns: vec![text_column(&["did-1"]), ok_pk(), text_column(&["extra"])] },
        ),
        (
            "tags, numbers and ends of different lengths",
            "users",
            users(),
            Batch {
                rows: 2,
                columns: vec![
                    ColumnValues {
                        tags: vec![ValueTag::Text, ValueTag::Text],
                        numbers: vec![0],
                        bytes: b"did-1did-2".to_vec(),
                        ends: vec![5, 10, 10],
                    },
                    text_column(&["pk-1", "pk-2"]),
                ],
            },
        ),
        (
            "rows says 5, columns hold 1",
            "users",
            users(),
            Batch { rows: 5, columns: vec![text_column(&["did-1"]), ok_pk()] },
        ),
        (
            "ends beyond bytes",
            "users",
            users(),
            Batch {
                rows: 2,
                columns: vec![
                    ColumnValues {
                        tags: vec![ValueTag::Text, ValueTag::Text],
                        numbers: vec![0, 0],
                        bytes: b"did-1".to_vec(),
                        ends: vec![5, 1_000_000],
                    },
                    text_column(&["pk-1", "pk-2"]),
                ],
            },
        ),
        (
            "ends going backwards",
            "users",
            users(),
            Batch {
                rows: 2,
                columns: vec![
                    ColumnValues {
                        tags: vec![ValueTag::Text, ValueTag::Text],
                        numbers: vec![0, 0],
                        bytes: b"did-1did-2".to_vec(),
                        ends: vec![10, 5],
                    },
                    text_column(&["pk-1", "pk-2"]),
                ],
            },
        ),
        (
            "text tag into an integer column",
            "tags",
            vec!["id", "title"],
            Batch { rows: 1, columns: vec![text_column(&["12"]), text_column(&["title"])] },
        ),
        (
            "integer tag into a text column",
            "users",
            users(),
            Batch { rows: 1, columns: vec![number_column(ValueTag::Integer, &[42]), ok_pk()] },
        ),
        (
            "blob tag into a text column",
            "users",
            users(),
            Batch {
                rows: 1,
                columns: vec![
                    ColumnValues {
                        tags: vec![ValueTag::Blob],
                        numbers: vec![0],
                        bytes: vec![0xff, 0x00],
                        ends: vec![2],
                    },
                    ok_pk(),
                ],
            },
        ),
        (
            "invalid UTF-8 in a text value",
            "users",
            users(),
            Batch {
                rows: 1,
                columns: vec![
                    ColumnValues {
                        tags: vec![ValueTag::Text],
                        numbers: vec![0],
                        bytes: vec![0xc3, 0x28],
                        ends: vec![2],
                    },
                    ok_pk(),
                ],
            },
        ),
        (
            "two rows of 5 MiB, over the batch byte cap",
            "users",
            users(),
            Batch {
                rows: 2,
                columns: vec![
                    ColumnValues {
                        tags: vec![ValueTag::Text, ValueTag::Text],
                        numbers: vec![0, 0],
                        bytes: vec![b'x'; 10 << 20],
                        ends: vec![5 << 20, 10 << 20],
                    },
                    text_column(&["pk-1", "pk-2"]),
                ],
            },
        ),
    ]
}

/// The savepoint each case runs under: a refused write followed by an aborted load leaves the
/// target's transaction aborted, and rolling back to it lets the next case start clean.
const SAVEPOINT: &str = "SAVEPOINT malformed_batch";
const ROLLBACK: &str = "ROLLBACK TO SAVEPOINT malformed_batch";

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "users", USERS_COLUMNS)?;
    create_table(target, "tags", "id integer NOT NULL, title character varying(64) NOT NULL")?;
    let cases = cases();
    let total = cases.len();
    let mut problems: Vec<String> = Vec::new();
    for (case, table, columns, batch) in cases {
        if let Err(e) = target.execute(SAVEPOINT) {
            problems.push(format!("{case} (could not set a savepoint: {:?}: {})", e.kind, e.message));
            continue;
        }
        let columns: Vec<String> = columns.into_iter().map(String::from).collect();
        let writer = match target.bulk_load(table, &columns) {
            Ok(w) => w,
            Err(e) => {
                problems.push(format!("{case} (could not even start the load: {:?}: {})", e.kind, e.message));
                let _ = target.execute(ROLLBACK);
                continue;
            }
        };
        match writer.write(&batch) {
            Err(e) if matches!(e.kind, ErrorKind::InvalidInput | ErrorKind::Limit) => {
                events::log(Level::Info, &format!("malformed-batch: {case}: refused: {}", e.message));
                // A refused batch must leave the load as it was: finishing it now loads nothing.
                match writer.finish() {
                    Ok(0) => {}
                    Ok(n) => problems.push(format!("{case} (refused, but finishing the load then loaded {n} rows)")),
                    Err(e) => problems.push(format!(
                        "{case} (refused, but the refusal left the load unusable: finish failed: {:?}: {})",
                        e.kind,
                        e.message.lines().next().unwrap_or("")
                    )),
                }
            }
            Err(e) => {
                problems.push(format!(
                    "{case} (NOT refused, reached the database: {:?}: {})",
                    e.kind,
                    e.message.lines().next().unwrap_or("")
                ));
                // Dropping the writer without `finish` aborts the load.
                drop(writer);
            }
            Ok(()) => {
                problems.push(format!("{case} (NOT refused: accepted)"));
                drop(writer);
            }
        }
        drop(batch);
        if let Err(e) = target.execute(ROLLBACK) {
            problems.push(format!("{case} (could not roll back to the savepoint: {:?}: {})", e.kind, e.message));
        }
    }
    if problems.is_empty() {
        Err(failure(format!("malformed-batch: all {total} refused")))
    } else {
        Err(failure(format!("malformed-batch: problems: {}", problems.join(" | "))))
    }
}
