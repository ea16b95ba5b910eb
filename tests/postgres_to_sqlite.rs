//! End-to-end tests of `blocklet-migrate --dialect sqlite` (PostgreSQL → SQLite) against the real
//! 1.17.12 demo fixture.
//!
//! The PostgreSQL side is always made by the tool itself: the fixture copy is first migrated with
//! `--dialect postgres` into a throwaway cluster ([`blocklet_migrate_test_support::PgCluster`], one per test, because the
//! database names are fixed), then written back with `--dialect sqlite` into the same data dir.
//! SQLite files are only ever read through private copies ([`blocklet_migrate_test_support::SqliteSnapshot`]), so reading
//! them can't change what a test compares. Every assertion message carries the tool's full output.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use blocklet_migrate_test_support::*;

const SERVER: &str = "server_db";

fn url_env(pg: &PgCluster) -> Vec<(&'static str, String)> {
    vec![("ABT_NODE_POSTGRES_URL", pg.url())]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn args<'a>(dialect: &'a str, data_dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--dialect", dialect, "--data-dir", data_dir.to_str().expect("utf-8 path")];
    v.extend_from_slice(extra);
    v
}

/// Runs the tool on `data_dir` with `--data-dir`, from a neutral cwd (the data dir's parent).
fn migrate(pg: &PgCluster, data_dir: &Path, dialect: &str, extra: &[&str]) -> Output {
    let env = url_env(pg);
    run_migrate(&args(dialect, data_dir, extra), data_dir.parent().expect("parent"), &env_refs(&env))
}

/// SQLite → PostgreSQL, which has to succeed: the starting point of every test here.
#[track_caller]
fn to_postgres(pg: &PgCluster, data_dir: &Path) -> Output {
    let out = migrate(pg, data_dir, "postgres", &[]);
    assert_success(&out);
    out
}

/// PostgreSQL → SQLite, the direction under test.
fn to_sqlite(pg: &PgCluster, data_dir: &Path) -> Output {
    migrate(pg, data_dir, "sqlite", &[])
}

fn blocklet_db(did: &str) -> String {
    format!("blocklet_db_{did}")
}

fn blocklet_db_file(data_dir: &Path, did: &str) -> PathBuf {
    data_dir.join("data").join(did).join("blocklet.db")
}

/// Byte offset of `needle` in stdout, with a readable panic.
#[track_caller]
fn pos(out: &Output, needle: &str) -> usize {
    match out.stdout.find(needle) {
        Some(p) => p,
        None => panic!("stdout lacks {needle:?}: {out:?}"),
    }
}

/// The `✔ … database successfully written: …` line the contract promises for one file.
fn written_line(kind: &str, file: &Path, data_dir: &Path) -> String {
    match kind {
        "server" => format!("✔ Server database successfully written: {}", file.display()),
        "service" => format!("✔ Service database successfully written: {}", file.display()),
        "certificate-manager" => format!("✔ certificate-manager database successfully written: {}", file.display()),
        "blocklet" => {
            let did = file.parent().and_then(Path::file_name).expect("app dir").to_string_lossy();
            assert!(file.starts_with(data_dir.join("data")), "{} is not an app database", file.display());
            format!("✔ Blocklet database successfully written: {did}: {}", file.display())
        }
        other => panic!("unknown kind {other}"),
    }
}

/// For every AUTOINCREMENT table of a SQLite file: `sqlite_sequence` is at least the largest id, so
/// the server's next insert can't reuse an id. Returns the sequence for reporting.
#[track_caller]
fn assert_sqlite_sequence_covers_ids(file: &Path) -> BTreeMap<String, i64> {
    let snap = SqliteSnapshot::new(file);
    let seq = snap.sqlite_sequence();
    let auto: Vec<String> = snap
        .query_json("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'")
        .into_iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect();
    for table in auto {
        let max = snap.query_json(&format!("SELECT coalesce(max(rowid), 0) AS m FROM {}", quote_ident(&table)))[0]["m"]
            .as_i64()
            .expect("max rowid");
        let s = seq.get(&table).copied().unwrap_or(0);
        assert!(s >= max, "{}: sqlite_sequence for {table} is {s}, below max id {max}", file.display());
    }
    seq
}

/// sha256 of `<file>` and `<file>-wal`, and whether `<file>-shm` exists, for every database file.
type InPlace = Vec<(PathBuf, BTreeMap<&'static str, Option<String>>)>;

fn in_place_state(data_dir: &Path) -> InPlace {
    sqlite_targets(data_dir)
        .into_iter()
        .map(|(file, _, _)| {
            let mut m = BTreeMap::new();
            for suffix in ["", "-wal", "-shm"] {
                let p = with_suffix(&file, suffix);
                let v = if !p.is_file() {
                    None
                } else if suffix == "-shm" {
                    Some("exists".to_string())
                } else {
                    Some(sha256_file(&p))
                };
                m.insert(suffix, v);
            }
            (file, m)
        })
        .collect()
}

/// `<file><suffix>.bak-*` beside `file`.
/// Backups of `file` (`suffix` ""), or of its `-wal`/`-shm`: `<file>.bak-<stamp>[-<n>]<suffix>`,
/// named so that SQLite opens a backup with its own WAL.
fn backups_of(file: &Path, suffix: &str) -> Vec<PathBuf> {
    let prefix = format!("{}{BAK_MARK}", file.file_name().expect("name").to_string_lossy());
    let sidecar = |n: &str| n.ends_with("-wal") || n.ends_with("-shm");
    let mut v: Vec<PathBuf> = fs::read_dir(file.parent().expect("parent"))
        .expect("read_dir")
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix) && if suffix.is_empty() { !sidecar(&n) } else { n.ends_with(suffix) }
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

#[test]
fn demo_round_trip_sqlite_pg_sqlite() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    to_postgres(&pg, &data_dir);
    assert!(data_dir.join(LOCK_REL).is_file(), "the PostgreSQL migration wrote no lock file");
    let targets = sqlite_targets(&data_dir);
    assert_eq!(targets.len(), 3 + APP_DIDS.len(), "database files of the fixture: {targets:?}");
    let before = in_place_state(&data_dir);

    let out = to_sqlite(&pg, &data_dir);
    assert_sqlite_success(&out);

    // Messages: one line per file, each before the completion line.
    let p_done = pos(&out, SQLITE_COMPLETED);
    for (file, kind, _) in &targets {
        let p = pos(&out, &written_line(kind, file, &data_dir));
        assert!(p < p_done, "{} written after the completion line: {out:?}", file.display());
    }

    // Every replaced file (and its -wal/-shm) was kept as a backup with one stamp, byte for byte.
    let mut stamps = Vec::new();
    for (file, was) in &before {
        assert!(was[""].is_some(), "precondition: {} exists before the run", file.display());
        let main = backups_of(file, "");
        assert_eq!(main.len(), 1, "expected exactly one backup of {}: {main:?}: {out:?}", file.display());
        let name = main[0].file_name().expect("name").to_string_lossy().into_owned();
        let stamp = name.rsplit(BAK_MARK).next().expect("stamp").to_string();
        assert!(!stamp.is_empty(), "backup {name} has no stamp");
        stamps.push(stamp.clone());
        let mut listed = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let backup = with_suffix(&with_suffix(file, &format!("{BAK_MARK}{stamp}")), suffix);
            match &was[suffix] {
                None => assert!(!backup.exists(), "{} backed up but did not exist: {out:?}", backup.display()),
                Some(hash) => {
                    assert!(backup.is_file(), "missing backup {}: {out:?}", backup.display());
                    if suffix != "-shm" {
                        assert_eq!(&sha256_file(&backup), hash, "backup {} is not the old file", backup.display());
                    }
                    listed.push(backup.display().to_string());
                }
            }
        }
        let line = format!("ℹ Previous {} kept as {}", file.display(), listed.join(", "));
        let p = pos(&out, &line);
        assert!(p < p_done, "backup line after the completion line: {out:?}");
    }
    stamps.dedup();
    assert_eq!(stamps.len(), 1, "one run, one backup stamp: {stamps:?}");

    assert!(!data_dir.join(LOCK_REL).exists(), "{LOCK_REL} must be removed: {out:?}");
    let leftovers = paths_containing(&data_dir, TMP_MARK);
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}: {out:?}");

    // Every table of every file: the same rows, value for value, as the ORIGINAL fixture.
    let mut total = 0;
    for (file, kind, _) in &targets {
        let pristine = pristine_fixture_file(&data_dir, file);
        let summary = compare_sqlite_files(&pristine, file, kind);
        total += summary.iter().map(|(_, n)| n).sum::<usize>();
        if *kind == "blocklet" {
            assert!(summary.contains(&("users".to_string(), 6)), "expected 6 users in {}: {summary:?}", file.display());
        }
        let snap = SqliteSnapshot::new(file);
        assert_eq!(snap.sequelize_meta(), expected_sequelize_meta(kind), "SequelizeMeta of {}", file.display());
        assert_eq!(snap.integrity_check(), "ok", "integrity_check of {}", file.display());
        // And in the representation the server writes (0/1, `… +00:00` timestamps, minified JSON text, …).
        let problems = value_form_problems(file, kind);
        assert!(problems.is_empty(), "{}:\n  {}", file.display(), problems.join("\n  "));
        // The original had no sequence past its ids, so the new one must only cover the ids.
        let old_seq = SqliteSnapshot::new(&pristine).sqlite_sequence();
        let new_seq = assert_sqlite_sequence_covers_ids(file);
        for (table, s) in old_seq {
            let n = new_seq.get(&table).copied().unwrap_or(0);
            assert!(n >= s, "{}: sqlite_sequence {table} went back from {s} to {n}", file.display());
        }
    }
    assert!(total > 0, "compared no rows at all");
}

#[test]
fn written_schema_matches_the_server() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    to_postgres(&pg, &data_dir);
    let out = to_sqlite(&pg, &data_dir);
    assert_sqlite_success(&out);

    let mut kinds_seen = Vec::new();
    let mut problems = Vec::new();
    for (file, kind, _) in sqlite_targets(&data_dir) {
        let snap = SqliteSnapshot::new(&file);
        let what = file.display().to_string();
        problems.extend(sqlite_schema_diff(&snap.schema(), &reference_sqlite_schema(kind), &what));
        let mode = snap.journal_mode();
        if mode != "wal" || !sqlite_header_is_wal(&file) {
            problems.push(format!("{what}: journal_mode {mode}, header WAL {}", sqlite_header_is_wal(&file)));
        }
        kinds_seen.push(kind);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    kinds_seen.sort();
    kinds_seen.dedup();
    assert_eq!(kinds_seen.len(), KINDS.len(), "every kind of database checked: {kinds_seen:?}");
}

#[test]
fn pg_sqlite_pg_is_identical() {
    let a = PgCluster::start();
    let b = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    to_postgres(&a, &data_dir);
    // The fixture's autoincrement tables are empty; give two sequences something to carry.
    a.psql(
        SERVER,
        "INSERT INTO tags (id, title, color) VALUES (5, 't5', '#555'); SELECT setval('tags_id_seq', 40); \
         INSERT INTO blacklists (id, scope, \"key\", \"expiresAt\") VALUES (3, 's', 'k', 1767225600000); \
         SELECT setval('blacklists_id_seq', 3)",
    );

    let back = to_sqlite(&a, &data_dir);
    assert_sqlite_success(&back);
    let again = migrate(&b, &data_dir, "postgres", &[]);
    assert_success(&again);

    let dbs = a.databases();
    assert_eq!(dbs, expected_databases(), "databases of cluster A");
    assert_eq!(b.databases(), dbs, "cluster B must hold the same databases: {again:?}");

    // Every table of every database, nothing excluded (SequelizeMeta and empty tables included).
    let mut problems = Vec::new();
    let mut rows = 0;
    let mut seq_a_all = BTreeMap::new();
    for db in &dbs {
        let (da, dbb) = (a.table_dump(db), b.table_dump(db));
        let (ta, tb): (Vec<&String>, Vec<&String>) = (da.keys().collect(), dbb.keys().collect());
        if ta != tb {
            problems.push(format!("{db}: tables differ: {ta:?} vs {tb:?}"));
        }
        for (table, ra) in &da {
            let rb = dbb.get(table).cloned().unwrap_or_default();
            rows += ra.len();
            if *ra != rb {
                let only_a: Vec<&String> = ra.iter().filter(|r| !rb.contains(r)).take(3).collect();
                let only_b: Vec<&String> = rb.iter().filter(|r| !ra.contains(r)).take(3).collect();
                problems.push(format!(
                    "{db}.{table}: {} vs {} rows\n    only in A: {only_a:?}\n    only in B: {only_b:?}",
                    ra.len(),
                    rb.len()
                ));
            }
        }
        // Sequences: the same next value on both sides (what the server would get from nextval).
        let (sa, sb) = (a.sequences(db), b.sequences(db));
        if sa.keys().ne(sb.keys()) {
            problems.push(format!("{db}: sequences differ: {:?} vs {:?}", sa.keys(), sb.keys()));
        }
        for (seq, state_a) in &sa {
            let next_a = next_sequence_value(*state_a);
            let next_b = sb.get(seq).map(|s| next_sequence_value(*s));
            if next_b != Some(next_a) {
                problems.push(format!(
                    "{db}: {seq} next value A = {next_a}, B = {next_b:?} ({state_a:?} vs {:?})",
                    sb.get(seq)
                ));
            }
        }
        seq_a_all.insert(db.clone(), sa);
    }
    assert!(
        problems.is_empty(),
        "PostgreSQL → SQLite → PostgreSQL changed data:\n{}\n{back:?}{again:?}",
        problems.join("\n")
    );
    assert!(rows > 0, "compared no rows at all");
    assert_eq!(next_sequence_value(seq_a_all[SERVER]["tags_id_seq"]), 41, "tags_id_seq in A");

    // Both are usable by the server: every sequence is past its column's largest id.
    a.assert_sequences_past_max_ids();
    b.assert_sequences_past_max_ids();
}

#[test]
fn sequences_survive_the_round_trip() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    to_postgres(&pg, &data_dir);
    pg.psql(
        SERVER,
        "INSERT INTO tags (id, title, color) VALUES (5, 't5', '#555'), (9, 't9', '#999'); \
         DELETE FROM tags WHERE id = 9; SELECT setval('tags_id_seq', 40)",
    );
    assert_eq!(pg.psql_i64(SERVER, "SELECT last_value FROM tags_id_seq"), 40);

    let out = to_sqlite(&pg, &data_dir);
    assert_sqlite_success(&out);

    let server_db = data_dir.join("core").join("server.db");
    let snap = SqliteSnapshot::new(&server_db);
    let seq = snap.sqlite_sequence();
    let tags_seq = seq.get("tags").copied();
    assert!(
        tags_seq.is_some_and(|s| s >= 40),
        "sqlite_sequence for tags = {tags_seq:?}, must be ≥ 40: {seq:?}: {out:?}"
    );
    let tags: Vec<String> = snap
        .query_json("SELECT id, title, color FROM tags ORDER BY id")
        .into_iter()
        .map(|r| format!("{}|{}|{}", r["id"], r["title"].as_str().unwrap_or(""), r["color"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(tags, vec!["5|t5|#555".to_string()], "tags rows: {out:?}");
    assert_sqlite_sequence_covers_ids(&server_db);

    // What the server's next insert gets (done on the private copy): past 40, not 6 or 10.
    let next =
        snap.query_json("INSERT INTO tags (title, color) VALUES ('next', '#000'); SELECT last_insert_rowid() AS id");
    let id = next[0]["id"].as_i64().expect("id");
    assert!(id > 40, "the next tag would get id {id}, reusing an id PostgreSQL already handed out: {out:?}");
}

#[test]
fn unconvertible_value_leaves_old_files() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    to_postgres(&pg, &data_dir);
    let app = APP_DIDS[1];
    let db = blocklet_db(app);
    let user = pg.psql(&db, "SELECT did FROM users ORDER BY did LIMIT 1");
    assert!(!user.is_empty(), "no users in {db}");
    pg.psql(&db, &format!("UPDATE users SET \"createdAt\" = '2026-01-01 00:00:00.123456+00' WHERE did = '{user}'"));

    let before = hash_tree(&data_dir);
    let out = to_sqlite(&pg, &data_dir);

    // Nothing replaced, nothing added (no temporary files, no backups), the lock file still there.
    assert_same_tree(&before, &hash_tree(&data_dir), &format!("data dir after a rejected run: {out:?}"));
    assert!(paths_containing(&data_dir, TMP_MARK).is_empty() && paths_containing(&data_dir, BAK_MARK).is_empty());
    assert!(data_dir.join(LOCK_REL).is_file(), "a failed run must not remove {LOCK_REL}: {out:?}");

    // The row is reported, and the run says "rows rejected" (exit 3), nothing else.
    let needles = ["users", user.as_str(), "createdAt", "microseconds"];
    assert!(
        out.error_lines().iter().any(|l| needles.iter().all(|n| l.contains(n))),
        "expected one ✖ line naming {needles:?}: {out:?}"
    );
    assert!(out.stderr.contains(app), "stderr should name the database ({db}): {out:?}");
    assert_sqlite_failure(&out, 3);
}

#[test]
fn killed_mid_write_leaves_old_files_usable() {
    const BULK_ROWS: i64 = 200_000;
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    to_postgres(&pg, &data_dir);
    let app = APP_DIDS[0];
    let db = blocklet_db(app);
    let audit_before = pg.count(&db, "audit_logs");
    // Millisecond timestamps: anything finer would (rightly) be rejected.
    pg.psql(
        &db,
        &format!(
            "INSERT INTO audit_logs (id, scope, action, category, content, actor, extra, env, ip, ua, \"createdAt\", \"updatedAt\") \
             SELECT 'bulk-' || g, 'scope-' || (g % 7), 'login', 'security', repeat('audit log entry ', 4) || g, \
                    jsonb_build_object('did', 'z' || g, 'role', 'owner', 'fullName', 'User ' || g), \
                    jsonb_build_object('n', g, 'ok', g % 2 = 0), '{{\"browser\":{{\"name\":\"Firefox\"}},\"os\":{{\"name\":\"Linux\"}}}}'::jsonb, \
                    '10.0.0.' || (g % 250), 'Mozilla/5.0', \
                    timestamptz '2026-01-01 00:00:00+00' + g * interval '1 millisecond', \
                    timestamptz '2026-01-01 00:00:00+00' + g * interval '1 millisecond' \
             FROM generate_series(1, {BULK_ROWS}) g"
        ),
    );
    assert_eq!(pg.count(&db, "audit_logs"), audit_before + BULK_ROWS);

    // How long a complete run takes, measured on a second copy of the data dir (the run only reads
    // PostgreSQL), so the kills below can be spread over the whole job.
    let tmp2 = fixture_copy();
    let data_dir2 = blocklet_migrate_test_support::data_dir(tmp2.path());
    let t0 = Instant::now();
    let full = to_sqlite(&pg, &data_dir2);
    let full_time = t0.elapsed();
    assert_sqlite_success(&full);
    let written = SqliteSnapshot::new(&blocklet_db_file(&data_dir2, app)).count("audit_logs");
    assert_eq!(written, audit_before + BULK_ROWS, "audit_logs written by the complete run: {full:?}");
    eprintln!("a complete --dialect sqlite run took {full_time:?}");

    let targets = sqlite_targets(&data_dir);
    let before = hash_tree(&data_dir);
    let counts_before: Vec<BTreeMap<String, i64>> =
        targets.iter().map(|(f, _, _)| SqliteSnapshot::new(f).row_counts()).collect();
    let in_place = in_place_state(&data_dir);

    let mut kill_points = vec![Duration::from_millis(200), Duration::from_millis(600), Duration::from_millis(1200)];
    for frac in [0.35, 0.5, 0.65, 0.8, 0.9] {
        let t = full_time.mul_f64(frac);
        if t > Duration::from_millis(1300) {
            kill_points.push(t);
        }
    }
    let env = url_env(&pg);
    let run_args = args("sqlite", &data_dir, &[]);
    let mut killed_before_swap = 0;
    let mut completed_runs = 0;
    let mut swap_interrupted = false;
    for after in kill_points {
        let (out, killed) = run_migrate_killed_after(&run_args, data_dir.parent().unwrap(), &env_refs(&env), after);
        if !killed {
            // It finished on its own before the kill: a complete run, which is fine, but ends the experiment.
            assert_sqlite_success(&out);
            eprintln!("run finished before the kill at {after:?}");
            completed_runs += 1;
            break;
        }
        let tmps = paths_containing(&data_dir, TMP_MARK);
        let backups = paths_containing(&data_dir, BAK_MARK);
        let names: Vec<String> =
            tmps.iter().map(|p| p.strip_prefix(&data_dir).unwrap_or(p).display().to_string()).collect();
        eprintln!("killed after {after:?}: {} backup(s), temporary files left: {names:?}", backups.len());
        if out.stdout.contains(SQLITE_COMPLETED) {
            // The swap is over before this line is printed: the new files are in place.
            eprintln!("killed after the completion line: {out:?}");
            completed_runs += 1;
            break;
        }
        if backups.is_empty() {
            // The swap had not begun: every file in place is byte for byte what it was (only
            // temporary files may have been added), and opens with the same rows.
            let mut after_tree = hash_tree(&data_dir);
            after_tree.retain(|p, _| !p.to_string_lossy().contains(TMP_MARK));
            assert_same_tree(&before, &after_tree, &format!("data dir after a kill at {after:?}"));
            for ((file, _, _), counts) in targets.iter().zip(&counts_before) {
                let snap = SqliteSnapshot::new(file);
                assert_eq!(snap.integrity_check(), "ok", "{} after a kill at {after:?}", file.display());
                assert_eq!(&snap.row_counts(), counts, "{} after a kill at {after:?}", file.display());
            }
            killed_before_swap += 1;
        } else {
            // Killed between the renames of the swap. What is guaranteed then: no old byte is lost;
            // each old file (and -wal) is either still in place or kept as a backup.
            for (file, was) in &in_place {
                for suffix in ["", "-wal"] {
                    let Some(hash) = &was[suffix] else { continue };
                    let here = with_suffix(file, suffix);
                    let kept = (here.is_file() && sha256_file(&here) == *hash)
                        || backups_of(file, suffix).iter().any(|b| sha256_file(b) == *hash);
                    assert!(kept, "old {} lost by a kill inside the swap: {out:?}", here.display());
                }
            }
            eprintln!("the kill at {after:?} landed inside the swap: {out:?}");
            swap_interrupted = true;
            break;
        }
    }
    assert!(
        killed_before_swap >= 3,
        "only {killed_before_swap} run(s) were killed before the swap (a complete run takes {full_time:?}); \
         the job must take longer for this test to mean anything"
    );

    // A run that is left alone succeeds and cleans up what the killed ones left.
    let out = to_sqlite(&pg, &data_dir);
    assert_sqlite_success(&out);
    let leftovers = paths_containing(&data_dir, TMP_MARK);
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}: {out:?}");
    // One backup per completed run (and per file an interrupted swap had moved); the oldest (stamps
    // sort by time) is the file that was there first, and no other backup holds it.
    for (file, was) in &in_place {
        let backups = backups_of(file, "");
        if !swap_interrupted {
            assert_eq!(backups.len(), 1 + completed_runs, "backups of {}: {backups:?}: {out:?}", file.display());
        }
        if let Some(hash) = &was[""] {
            assert!(!backups.is_empty(), "no backup of {}: {out:?}", file.display());
            assert_eq!(&sha256_file(&backups[0]), hash, "{} is not the old file", backups[0].display());
            let copies = backups.iter().filter(|b| sha256_file(b) == *hash).count();
            assert_eq!(copies, 1, "the old {} is kept {copies} times: {backups:?}", file.display());
        }
    }
    let snap = SqliteSnapshot::new(&blocklet_db_file(&data_dir, app));
    assert_eq!(snap.count("audit_logs"), audit_before + BULK_ROWS, "audit_logs after the final run: {out:?}");
    assert_eq!(snap.integrity_check(), "ok");
}

#[test]
fn live_server_file_is_refused() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    to_postgres(&pg, &data_dir);
    let server_db = data_dir.join("core").join("server.db");

    let holder = SqliteHolder::begin_exclusive(&server_db);
    // Hashes are taken while the lock is held: the holder may checkpoint the WAL when it quits.
    let before = hash_tree(&data_dir);
    let out = to_sqlite(&pg, &data_dir);
    let after = hash_tree(&data_dir);
    holder.release();

    assert_sqlite_failure(&out, 2);
    assert!(out.has_error_line("is in use"), "expected an `is in use` error: {out:?}");
    assert!(
        out.stderr.contains(&server_db.display().to_string()),
        "the error should name {}: {out:?}",
        server_db.display()
    );
    assert_same_tree(&before, &after, "data dir after a refused run");
}

#[test]
fn no_server_db_is_a_clear_error() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let before = hash_tree(&data_dir);

    let out = to_sqlite(&pg, &data_dir);
    assert_sqlite_failure(&out, 2);
    assert!(out.has_error_line("server_db"), "the error should mention server_db: {out:?}");
    assert_same_tree(&before, &hash_tree(&data_dir), "data dir after a refused run");
    assert!(pg.databases().is_empty(), "databases created by a PostgreSQL → SQLite run: {:?}", pg.databases());
}

/// Backups are named `<file>.bak-<UTC second>`. A name that is already taken (an earlier run that
/// finished within the same second, or any file a user keeps there) must never be overwritten: the
/// earlier backup may be the only copy of the original SQLite data.
#[test]
fn existing_backup_names_are_never_overwritten() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    to_postgres(&pg, &data_dir);
    let server_db = data_dir.join("core").join("server.db");
    let old_hash = sha256_file(&server_db);

    // Earlier backups for every second of the next five minutes, as back-to-back runs leave them.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("time after epoch").as_secs() as i64;
    let mut decoys = Vec::new();
    for second in now - 2..now + 300 {
        for suffix in ["", "-wal", "-shm"] {
            let stamp = utc_compact_stamp(second);
            let path = with_suffix(&with_suffix(&server_db, suffix), &format!("{BAK_MARK}{stamp}"));
            let content = format!("an earlier backup: {}", path.display());
            fs::write(&path, &content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            decoys.push((path, content));
        }
    }

    let out = to_sqlite(&pg, &data_dir);
    let clobbered: Vec<String> = decoys
        .iter()
        .filter(|(p, c)| fs::read_to_string(p).ok().as_deref() != Some(c.as_str()))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(clobbered.is_empty(), "earlier backups overwritten: {clobbered:?}: {out:?}");
    // The run itself goes ahead (a taken name is no reason to fail) and keeps the old server.db once.
    assert_sqlite_success(&out);
    let kept = backups_of(&server_db, "").into_iter().filter(|p| sha256_file(p) == old_hash).count();
    assert_eq!(kept, 1, "the replaced server.db must be kept as a backup: {out:?}");
}

/// A live server does not hold a write lock all the time: between requests its connection is idle
/// (in WAL mode it still holds its shared lock on the `-shm`). Replacing the file then would leave
/// the server writing into what became the backup, so the file must be refused as in use as well.
#[test]
fn idle_server_connection_is_refused() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    to_postgres(&pg, &data_dir);
    let server_db = data_dir.join("core").join("server.db");

    let holder = SqliteHolder::idle(&server_db);
    let before = hash_tree(&data_dir);
    let out = to_sqlite(&pg, &data_dir);
    let after = hash_tree(&data_dir);
    holder.release();

    assert_same_tree(&before, &after, &format!("data dir while a server had core/server.db open: {out:?}"));
    assert_sqlite_failure(&out, 2);
    assert!(out.has_error_line("is in use"), "expected an `is in use` error: {out:?}");
}
