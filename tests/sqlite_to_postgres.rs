//! End-to-end tests of `blocklet-migrate --dialect postgres` against the real 1.17.12 demo fixture.
//!
//! Every test gets its own fixture copy ([`blocklet_migrate_test_support::fixture_copy`]) and, when it needs a server, its
//! own throwaway PostgreSQL cluster ([`blocklet_migrate_test_support::PgCluster`]). The product uses fixed database names,
//! so clusters can't be shared between tests that run in parallel. Every assertion message carries
//! the tool's full output (`{:?}` of [`blocklet_migrate_test_support::Output`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use blocklet_migrate_test_support::*;

const SERVER: &str = "server_db";

fn url_env(pg: &PgCluster) -> Vec<(&'static str, String)> {
    vec![("ABT_NODE_POSTGRES_URL", pg.url())]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Runs the migration of `data_dir` with `--data-dir` from a neutral cwd (the data dir's parent).
fn migrate_with_data_dir(pg: &PgCluster, data_dir: &Path, extra: &[&str]) -> Output {
    let env = url_env(pg);
    let dd = data_dir.to_str().expect("utf-8 path");
    let mut args = vec!["--dialect", "postgres", "--data-dir", dd];
    args.extend_from_slice(extra);
    run_migrate(&args, data_dir.parent().expect("parent"), &env_refs(&env))
}

fn blocklet_db_file(data_dir: &Path, did: &str) -> std::path::PathBuf {
    data_dir.join("data").join(did).join("blocklet.db")
}

/// Byte offset of `needle` in `hay`, with a readable panic.
#[track_caller]
fn pos(hay: &str, needle: &str, out: &Output) -> usize {
    match hay.find(needle) {
        Some(p) => p,
        None => panic!("stdout lacks {needle:?}: {out:?}"),
    }
}

#[test]
fn migrates_demo_fixture_env_exported_first() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let before = hash_tree(&data_dir);

    // The env var is exported before the tool starts (the real 1.17.12 CLI breaks on this).
    // There is no --data-dir, and the cwd is a subdirectory of the data dir, so the config must be found by walking up.
    let env = url_env(&pg);
    let started = SystemTime::now();
    let out = run_migrate(&["--dialect", "postgres"], &data_dir.join("data"), &env_refs(&env));
    let finished = SystemTime::now();
    assert_success(&out);

    // Messages, in order.
    let server_line =
        format!("✔ Server schema successfully migrated: {}", data_dir.join("core").join("server.db").display());
    let p_getting = pos(&out.stdout, "ℹ Getting blocklets...", &out);
    let p_server = pos(&out.stdout, &server_line, &out);
    let p_done = pos(&out.stdout, "✔ Migration postgres completed", &out);
    let p_start = pos(&out.stdout, "ℹ Please start server, will use Postgres database: blocklet server start", &out);
    for did in APP_DIDS {
        let line =
            format!("✔ Blocklet schema successfully migrated: {did}: {}", blocklet_db_file(&data_dir, did).display());
        let p = pos(&out.stdout, &line, &out);
        assert!(p_getting < p && p < p_done, "blocklet line out of order: {out:?}");
    }
    assert!(p_getting < p_server && p_server < p_done && p_done < p_start, "messages out of order: {out:?}");

    assert_lock_file(&data_dir, started, finished);

    // Exactly the expected databases.
    assert_eq!(pg.databases(), expected_databases(), "databases created: {out:?}");

    // Schema: pg_dump of each database equals the reference dump of the real migrate command.
    for db in expected_databases() {
        let reference_path = reference_schema_file(&db);
        let reference =
            fs::read_to_string(&reference_path).unwrap_or_else(|e| panic!("read {}: {e}", reference_path.display()));
        assert_same_schema(&pg.pg_dump_schema(&db), &reference, &db);
    }

    // SequelizeMeta holds exactly the reference migration names, so a real server sees the schema as up to date.
    for db in expected_databases() {
        let kind = kind_for_pg_db(&db);
        let got: Vec<String> =
            pg.psql(&db, "SELECT name FROM \"SequelizeMeta\" ORDER BY name").lines().map(str::to_string).collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, expected_sequelize_meta(kind), "SequelizeMeta of {db}");
    }

    // Every row of every table, compared independently.
    let summary = compare_all(&data_dir, &pg);
    let rows: usize = summary.iter().map(|(_, _, n)| n).sum();
    assert!(rows > 0, "compare_all compared no rows at all");
    for did in APP_DIDS {
        assert!(
            summary.contains(&(format!("blocklet_db_{did}"), "users".to_string(), 6)),
            "expected 6 users for {did}: {summary:?}"
        );
    }

    // The source is unchanged. The lock file is the only new file, and `-shm` files are ignored (see hash_tree).
    let mut after = hash_tree(&data_dir);
    assert!(after.remove(Path::new(LOCK_REL)).is_some(), "lock file not found by hash_tree");
    assert_same_tree(&before, &after, "source data dir after migration");
}

#[test]
fn sequences_are_past_max_ids() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let server_db = data_dir.join("core").join("server.db");
    sqlite_exec(
        &server_db,
        "INSERT INTO tags (id, title, color) VALUES (20, 't20', '#fff');\
         INSERT INTO tagging (tagId, taggableId, taggableType) VALUES (20, 'x', 'y');\
         INSERT INTO blacklists (id, scope, \"key\") VALUES (7, 's', 'k');",
    );

    let out = migrate_with_data_dir(&pg, &data_dir, &[]);
    assert_success(&out);

    // Autoincrement ids are kept (the real 1.17.12 tool renumbers them and leaves tagging dangling).
    assert_eq!(
        pg.psql_i64(SERVER, "SELECT count(*) FROM tags WHERE id = 20 AND title = 't20' AND color = '#fff'"),
        1,
        "tags.id=20 not migrated as is: {out:?}"
    );
    assert_eq!(
        pg.psql_i64(
            SERVER,
            "SELECT count(*) FROM tagging WHERE \"tagId\" = 20 AND \"taggableId\" = 'x' AND \"taggableType\" = 'y'"
        ),
        1,
        "tagging row not migrated: {out:?}"
    );
    assert_eq!(
        pg.psql_i64(SERVER, "SELECT count(*) FROM blacklists WHERE id = 7 AND scope = 's' AND \"key\" = 'k'"),
        1,
        "blacklists.id=7 not migrated as is: {out:?}"
    );

    // Every row matches, including the explicitly numbered ones.
    compare_all(&data_dir, &pg);

    // Sequences are moved past the copied ids.
    let next_tag = pg.psql_i64(SERVER, "SELECT nextval('tags_id_seq')");
    assert!(next_tag > 20, "nextval('tags_id_seq') = {next_tag}, must be > 20: {out:?}");
    let next_black = pg.psql_i64(SERVER, "SELECT nextval('blacklists_id_seq')");
    assert!(next_black > 7, "nextval('blacklists_id_seq') = {next_black}, must be > 7: {out:?}");

    // And the same for every serial column in every database.
    pg.assert_sequences_past_max_ids();

    // So the server can insert new rows without an id collision.
    pg.psql(SERVER, "INSERT INTO tags (title, color) VALUES ('new-tag', '#000')");
    pg.psql(SERVER, "INSERT INTO blacklists (scope, \"key\") VALUES ('s2', 'k2')");
}

#[test]
fn moved_data_dir_uses_actual_location() {
    // Precondition: the BLOCKLET_DATA_DIR stored in the fixture points to a place that does not exist.
    assert!(
        !Path::new("/srv/blocklet-demo").exists(),
        "/srv/blocklet-demo exists on this machine; the moved-install test would be meaningless"
    );
    let stored = sqlite_rows_raw_data_dirs();
    assert_eq!(stored.len(), 2, "expected one BLOCKLET_DATA_DIR per app: {stored:?}");
    assert!(
        stored.iter().all(|d| d.starts_with("/srv/blocklet-demo/.blocklet-server/data/")),
        "fixture no longer has the stale BLOCKLET_DATA_DIR values: {stored:?}"
    );

    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let elsewhere = tempfile::tempdir().expect("temp cwd");
    let env = url_env(&pg);
    let out = run_migrate(
        &["--dialect", "postgres", "--data-dir", data_dir.to_str().unwrap()],
        elsewhere.path(),
        &env_refs(&env),
    );
    assert_success(&out);

    for did in APP_DIDS {
        let db = format!("blocklet_db_{did}");
        assert_eq!(pg.count(&db, "users"), 6, "users in {db}: {out:?}");
        let file = blocklet_db_file(&data_dir, did);
        for table in ["users", "passports", "connected_accounts", "permissions", "access_policies"] {
            compare_table(&file, &pg, &db, table);
        }
        let line = format!("✔ Blocklet schema successfully migrated: {did}: {}", file.display());
        assert!(out.stdout.contains(&line), "expected {line:?}: {out:?}");
    }
    assert!(!out.stdout.contains("/srv/blocklet-demo"), "stale path used: {out:?}");
}

/// The BLOCKLET_DATA_DIR values stored in the fixture's `blocklets.environments` (read from a snapshot).
fn sqlite_rows_raw_data_dirs() -> Vec<String> {
    let snap = SqliteSnapshot::new(&fixture_dir().join(".blocklet-server").join("core").join("server.db"));
    snap.query_json(
        "SELECT json_extract(e.value, '$.value') AS dir FROM blocklets, json_each(blocklets.environments) e \
         WHERE json_extract(e.value, '$.key') = 'BLOCKLET_DATA_DIR'",
    )
    .into_iter()
    .map(|r| r["dir"].as_str().unwrap_or("").to_string())
    .collect()
}

#[test]
fn never_started_data_dir_gives_hint() {
    let pg = PgCluster::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = fs::canonicalize(tmp.path()).unwrap();
    let dd = root.join(".blocklet-server");
    fs::create_dir_all(dd.join("core")).unwrap();
    let src = fixture_dir().join(".blocklet-server");
    for f in ["config.yml", ".sock"] {
        fs::copy(src.join(f), dd.join(f)).unwrap();
        fs::set_permissions(dd.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    // `blocklet server init` without a start leaves an empty server.db.
    fs::File::create(dd.join("core").join("server.db")).unwrap();

    // The cwd is the directory that contains .blocklet-server (the other form of discovery).
    let env = url_env(&pg);
    let out = run_migrate(&["--dialect", "postgres"], &root, &env_refs(&env));
    assert_failure(&out);
    assert!(
        out.has_error_line(
            "Failed to get blocklets: SQLITE_ERROR: no such table: blocklets, you need ensure blocklet server start once."
        ),
        "missing never-started hint: {out:?}"
    );
    assert_no_lock_file(&dd);
}

#[test]
fn bad_json_row_fails_and_leaves_no_data() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let did_app = APP_DIDS[0];
    let db_file = blocklet_db_file(&data_dir, did_app);
    let user_did = sqlite_exec(&db_file, "SELECT did FROM users WHERE rowid = (SELECT min(rowid) FROM users)");
    assert!(!user_did.is_empty(), "fixture has no users in {}", db_file.display());
    sqlite_exec(&db_file, "UPDATE users SET extra = '{not json' WHERE rowid = (SELECT min(rowid) FROM users)");

    let out = migrate_with_data_dir(&pg, &data_dir, &[]);
    assert_failure(&out);
    for needle in [did_app, "users", user_did.as_str(), "extra"] {
        assert!(out.stderr.contains(needle), "stderr should name the database/table/row/column ({needle:?}): {out:?}");
    }
    pg.assert_no_rows_anywhere();
    assert_no_lock_file(&data_dir);
}

#[test]
fn non_empty_target_is_refused_then_force_replaces() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());

    let first = migrate_with_data_dir(&pg, &data_dir, &[]);
    assert_success(&first);
    compare_all(&data_dir, &pg);

    let second = migrate_with_data_dir(&pg, &data_dir, &[]);
    assert_failure(&second);
    assert!(second.stderr.contains("--force"), "refusal should mention --force: {second:?}");
    // The refusal did not damage what is there.
    compare_all(&data_dir, &pg);

    let forced_start = SystemTime::now();
    let forced = migrate_with_data_dir(&pg, &data_dir, &["--force"]);
    let forced_end = SystemTime::now();
    assert_success(&forced);
    assert_eq!(pg.databases(), expected_databases(), "{forced:?}");
    // Replaced, not appended: compare_all compares multisets, so duplicated rows would fail here.
    compare_all(&data_dir, &pg);
    for db in expected_databases() {
        let n = pg.count(&db, "SequelizeMeta");
        assert_eq!(n as usize, expected_sequelize_meta(kind_for_pg_db(&db)).len(), "SequelizeMeta of {db}");
    }
    assert_lock_file(&data_dir, forced_start, forced_end);
}

#[test]
fn no_config_found() {
    let pg = PgCluster::start();
    let empty = tempfile::tempdir().expect("temp dir");
    let cwd = fs::canonicalize(empty.path()).unwrap();
    // Precondition: no ancestor of the temp dir has a .blocklet-server/config.yml.
    for dir in cwd.ancestors() {
        assert!(
            !dir.join(".blocklet-server").join("config.yml").exists(),
            "{} has a .blocklet-server/config.yml; this test needs a clean ancestry",
            dir.display()
        );
    }
    let env = url_env(&pg);
    let out = run_migrate(&["--dialect", "postgres"], &cwd, &env_refs(&env));
    assert_failure(&out);
    assert!(
        out.has_error_line("Cannot find config file for Blocklet Server"),
        "expected the config-not-found error: {out:?}"
    );
    assert!(pg.databases().is_empty(), "databases created without a config: {:?}", pg.databases());
}

#[test]
fn missing_url_and_bad_url_and_unreachable() {
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let before = hash_tree(&data_dir);
    let dd = data_dir.to_str().unwrap();
    let args = ["--dialect", "postgres", "--data-dir", dd];
    let cwd = data_dir.parent().unwrap();

    // 1. Not set at all.
    let out = run_migrate(&args, cwd, &[]);
    assert_failure(&out);
    assert!(out.stderr.contains("ABT_NODE_POSTGRES_URL"), "should name the env var: {out:?}");
    assert_no_lock_file(&data_dir);

    // 2. Not a URL.
    let out = run_migrate(&args, cwd, &[("ABT_NODE_POSTGRES_URL", "not a url")]);
    assert_failure(&out);
    assert!(out.stderr.contains("ABT_NODE_POSTGRES_URL"), "should name the env var: {out:?}");
    assert_no_lock_file(&data_dir);

    // 3. Valid, but nothing listens on port 1. The password must never be printed.
    let out =
        run_migrate(&args, cwd, &[("ABT_NODE_POSTGRES_URL", "postgres://postgres:s3cretpw@127.0.0.1:1/postgres")]);
    assert_failure(&out);
    assert!(out.stderr.contains("127.0.0.1:1"), "should name the unreachable address: {out:?}");
    assert!(!out.stderr.contains("s3cretpw") && !out.stdout.contains("s3cretpw"), "password leaked: {out:?}");
    assert_no_lock_file(&data_dir);

    assert_same_tree(&before, &hash_tree(&data_dir), "source data dir after failed runs");
}

#[test]
fn fk_violation_is_reported() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    sqlite_exec(
        &data_dir.join("core").join("server.db"),
        "INSERT INTO passports (id,userDid,type,issuer,name,title) \
         VALUES ('orphan-passport','zNoSuchUser','[]','{}','n','t')",
    );

    let out = migrate_with_data_dir(&pg, &data_dir, &[]);
    assert_failure(&out);
    for needle in ["passports", "orphan-passport", "userDid"] {
        assert!(out.stderr.contains(needle), "stderr should mention {needle:?}: {out:?}");
    }
    pg.assert_no_rows_anywhere();
    assert_no_lock_file(&data_dir);
}

/// `--quiet` prints only the result; `--progress-events` and the report's timeline say what
/// was sent where and when, and agree with the report's row counts.
#[test]
fn quiet_run_keeps_progress_events_and_timeline() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let events_file = tmp.path().join("events.jsonl");
    let report_file = tmp.path().join("report.json");
    let out = migrate_with_data_dir(
        &pg,
        &data_dir,
        &["--quiet", "--progress-events", events_file.to_str().unwrap(), "--report", report_file.to_str().unwrap()],
    );
    assert_success(&out);
    assert_eq!(out.stdout.trim(), "✔ Migration postgres completed", "quiet prints only the result: {out:?}");
    assert_eq!(out.stderr.trim(), "", "{out:?}");

    let report: serde_json::Value = serde_json::from_slice(&fs::read(&report_file).unwrap()).unwrap();
    let events: Vec<serde_json::Value> = fs::read_to_string(&events_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |kind: &'static str| events.iter().filter(move |e| e["event"] == kind);
    assert_eq!(of("component-ready").count(), 1);
    assert_eq!(of("first-row").count(), 1);
    for db in expected_databases() {
        assert_eq!(of("database-started").filter(|e| e["database"] == db.as_str()).count(), 1, "{db}");
        let finished: Vec<_> = of("database-finished").filter(|e| e["database"] == db.as_str()).collect();
        assert_eq!(finished.len(), 1, "{db}");
        assert_eq!(finished[0]["ok"], true, "{db}");
    }
    // Every table with rows was loaded with exactly the rows the report verified.
    let mut checked = 0;
    for db in report["databases"].as_array().unwrap() {
        let name = db["postgres_database"].as_str().unwrap();
        for t in db["tables"].as_array().unwrap().iter().filter(|t| t["target_rows"].as_u64() > Some(0)) {
            let loaded: Vec<_> =
                of("table-loaded").filter(|e| e["database"] == name && e["table"] == t["table"]).collect();
            assert_eq!(loaded.len(), 1, "{name}.{}", t["table"]);
            assert_eq!(loaded[0]["rows"], t["target_rows"], "{name}.{}", t["table"]);
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} tables with rows");
    // Databases set up one at a time, the first until its rows flow: no other database starts a
    // table before the first one has sent rows (another database's setup would compete with
    // those rows for the cores).
    let first_row = of("first-row").next().unwrap();
    let first_started = &of("table-started").next().unwrap()["database"];
    assert_eq!(&first_row["database"], first_started, "the first rows come from the database set up first");
    for e in of("table-started").filter(|e| &e["database"] != first_started) {
        assert!(e["at_ms"].as_u64() >= first_row["at_ms"].as_u64(), "{e} started before the first rows: {first_row}");
    }
    // Times only go forward, and the timeline agrees with the events.
    let times: Vec<u64> = events.iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "event times go backwards: {times:?}");
    let timeline = &report["timeline"];
    assert_eq!(timeline["first_row_ms"], of("first-row").next().unwrap()["at_ms"]);
    assert!(timeline["component_ready_ms"].as_u64() <= timeline["first_row_ms"].as_u64());
    assert_eq!(timeline["databases"].as_array().unwrap().len(), expected_databases().len());
}
