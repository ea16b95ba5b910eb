//! The component lifecycle: updating the migration logic without a new host release.
//!
//! * `component info` names the component, its version, the WIT version it targets (and the
//!   host's), the migrations it knows per database kind, and the file's sha256.
//! * A second component — the guest built with `--features test-extra-migration`, which also
//!   knows migration `20991231000000-test-extra.js` and its table `test_extras` — migrates a
//!   source the bundled component refuses, on the *same* host binary.
//! * A component whose server names another lock file and another meta table (the guest built
//!   with `--features test-other-conventions`): the host uses the component's names in both
//!   directions.
//! * A component built against `blocklet:migrate@2.0.0` (`tests/components/wit-v2`: a generated
//!   copy of the WIT with the package moved to the next major version) is refused, naming both
//!   versions.
//! * Compiled components are cached on disk; a truncated or scrambled entry is recompiled and
//!   rewritten, never trusted.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use blocklet_migrate_test_support::*;
use tempfile::TempDir;

/// The migration only the extra component knows.
const EXTRA_MIGRATION: &str = "20991231000000-test-extra.js";

/// The guest built with `--features test-extra-migration`, once per test run, into
/// `<workspace>/target/guest-extra`.
fn extra_component() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_with_feature("test-extra-migration", "guest-extra"))
}

/// The guest built with `--features test-other-conventions` (another lock file, another meta
/// table), once per test run, into `<workspace>/target/guest-other-conventions`.
fn other_conventions_component() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_with_feature("test-other-conventions", "guest-other-conventions"))
}

/// The guest built for `wasm32-wasip2` with `feature`, into `<workspace>/target/<dir>`.
fn guest_with_feature(feature: &str, dir: &str) -> PathBuf {
    let target = workspace_root().join("target").join(dir);
    let args = [
        "build",
        "--release",
        "-p",
        "blocklet-migrate-guest",
        "--target",
        "wasm32-wasip2",
        "--features",
        feature,
        "--target-dir",
        target.to_str().expect("utf-8 path"),
    ];
    // No debug info: smaller and faster to build; the code is the same.
    let took = cargo_build(&args, &[("CARGO_PROFILE_RELEASE_DEBUG", "false")]);
    eprintln!("guest with {feature} built in {:.1}s", took.as_secs_f64());
    target.join("wasm32-wasip2").join("release").join("blocklet_migrate_guest.wasm")
}

/// The WIT package version of `wit/blocklet-migrate.wit` (`package blocklet:migrate@X;`).
fn wit_version() -> String {
    let wit = fs::read_to_string(workspace_root().join("wit").join("blocklet-migrate.wit")).expect("read the WIT");
    wit.lines()
        .find_map(|l| l.trim().strip_prefix("package blocklet:migrate@"))
        .map(|v| v.trim_end_matches(';').trim().to_string())
        .expect("a package line in the WIT")
}

/// `blocklet-migrate component info [file]` with its own compile cache.
fn component_info(file: Option<&Path>, cache: &Path) -> (Output, Duration) {
    let mut args = vec!["component", "info", "--allow-unsigned"];
    if let Some(f) = file {
        args.push(f.to_str().expect("utf-8 path"));
    }
    let env = [("BLOCKLET_MIGRATE_CACHE_DIR", cache.to_str().expect("utf-8 path"))];
    run_migrate_within(&args, &workspace_root(), &env, Duration::from_secs(120))
}

/// The value of a `key: value` line of `component info`.
fn field<'a>(out: &'a Output, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim_start_matches(':').trim()))
        .unwrap_or_else(|| panic!("no {key:?} line: {out:?}"))
}

/// The `kind: N schema migrations` lines of `component info`.
fn migrations(out: &Output) -> Vec<(String, u32)> {
    out.stdout
        .lines()
        .filter_map(|l| {
            let (kind, rest) = l.trim().split_once(": ")?;
            let n = rest.strip_suffix(" schema migrations")?;
            Some((kind.to_string(), n.parse().ok()?))
        })
        .collect()
}

#[track_caller]
fn assert_info(out: &Output, name_version: &str, sha256: Option<&str>, server_migrations: u32) {
    assert_eq!(out.code, 0, "component info failed: {out:?}");
    let wit = wit_version();
    assert_eq!(field(out, "component"), name_version, "{out:?}");
    assert_eq!(field(out, "WIT package"), format!("blocklet:migrate@{wit} (host implements {wit})"), "{out:?}");
    assert_eq!(field(out, "server versions"), "1.17.12", "{out:?}");
    let sha = field(out, "sha256");
    assert!(sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()), "bad sha256 {sha:?}: {out:?}");
    if let Some(expected) = sha256 {
        assert_eq!(sha, expected, "component info's sha256 is not the file's: {out:?}");
    }
    let expected: Vec<(String, u32)> = [("server", server_migrations), ("service", 4), ("blocklet", 79)]
        .into_iter()
        .chain([("certificate-manager", 5)])
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    assert_eq!(migrations(out), expected, "{out:?}");
}

#[test]
fn component_info_names_the_component_its_wit_version_what_it_knows_and_its_hash() {
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    // The guest is versioned with the workspace, so with this host.
    let guest = format!("blocklet-migrate-guest {}", env!("CARGO_PKG_VERSION"));
    let (bundled, _) = component_info(None, cache.path());
    assert_info(&bundled, &guest, None, 74);
    assert_eq!(field(&bundled, "source"), "bundled");

    let extra = extra_component();
    let (out, _) = component_info(Some(extra), cache.path());
    assert_info(&out, &guest, Some(&sha256_file(extra)), 75);
    assert_eq!(field(&out, "source"), extra.display().to_string());
    assert_ne!(field(&out, "sha256"), field(&bundled, "sha256"), "the extra component is another file");

    // A component that is not the guest at all: its own name, version and hash.
    let hostile = test_component("infinite-loop");
    let (out, _) = component_info(Some(&hostile), cache.path());
    assert_info(&out, "hostile-infinite-loop 0.1.0", Some(&sha256_file(&hostile)), 74);
}

/// The data dir of a fixture copy written by a (pretend) newer server: `server.db` lists
/// [`EXTRA_MIGRATION`] in `SequelizeMeta` and has its `test_extras` table with 3 rows.
fn newer_fixture() -> (TempDir, PathBuf) {
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    sqlite_exec(
        &data_dir.join("core").join("server.db"),
        &format!(
            "CREATE TABLE `test_extras` (`id` VARCHAR(80) PRIMARY KEY, `note` TEXT); \
             INSERT INTO test_extras (id, note) VALUES ('extra-1', 'first'), ('extra-2', NULL), ('extra-3', 'dritte – ü'); \
             INSERT INTO SequelizeMeta (name) VALUES ('{EXTRA_MIGRATION}');"
        ),
    );
    (tmp, data_dir)
}

#[test]
fn a_newer_component_runs_on_the_same_host_and_migrates_what_the_bundled_one_refuses() {
    let extra = extra_component();
    let pg = PgCluster::start();
    let (_tmp, data_dir) = newer_fixture();
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str()), ("BLOCKLET_MIGRATE_CACHE_DIR", cache.path().to_str().unwrap())];
    let dd = data_dir.to_str().expect("utf-8 path");
    let before = target_state(&pg);

    // The bundled component does not know the migration: refused, pointing at a newer component.
    let (out, _) =
        run_migrate_within(&["--dialect", "postgres", "--data-dir", dd], &data_dir, &env, Duration::from_secs(300));
    assert_failure(&out);
    assert_eq!(out.code, 2, "the bundled component must refuse a newer source with exit 2: {out:?}");
    assert!(out.has_error_line(EXTRA_MIGRATION), "the refusal does not name {EXTRA_MIGRATION}: {out:?}");
    assert!(out.has_error_line("use a newer migration component"), "the refusal does not say what to do: {out:?}");
    assert_eq!(target_state(&pg), before, "the refused run changed the target");
    assert_no_lock_file(&data_dir);

    // The same host binary with the extra component: migrated and verified.
    let component = extra.to_str().expect("utf-8 path");
    let (out, took) = run_migrate_within(
        &["--dialect", "postgres", "--data-dir", dd, "--component", component, "--allow-unsigned"],
        &data_dir,
        &env,
        Duration::from_secs(300),
    );
    eprintln!("migration with the extra component: {:.1}s", took.as_secs_f64());
    assert_success(&out);
    assert!(out.stdout.contains("Table \"test_extras\": SQLite=3, Postgres=3"), "{out:?}");
    assert_eq!(
        pg.psql("server_db", "SELECT id || '|' || coalesce(note, 'NULL') FROM public.test_extras ORDER BY id"),
        "extra-1|first\nextra-2|NULL\nextra-3|dritte – ü"
    );
    assert_eq!(
        pg.psql_i64(
            "server_db",
            "SELECT count(*) FROM pg_constraint WHERE conname = 'test_extras_pkey' AND contype = 'p'"
        ),
        1,
        "test_extras has no primary key"
    );
    let meta: Vec<String> =
        pg.psql("server_db", "SELECT name FROM \"SequelizeMeta\" ORDER BY name").lines().map(String::from).collect();
    assert_eq!(meta.len(), 75, "SequelizeMeta of server_db: {meta:?}");
    let mut expected = expected_sequelize_meta("server");
    expected.push(EXTRA_MIGRATION.into());
    expected.sort();
    assert_eq!(meta, expected);
    // Everything else arrived as the bundled component would have migrated it.
    let summary = compare_all(&data_dir, &pg);
    assert!(summary.len() > 80, "compared only {} tables", summary.len());
}

/// A component whose server keeps its lock file and its meta table elsewhere: the host writes and
/// removes the lock file the component names, and lets it fill the meta table it names, in both
/// directions; the host itself names neither.
#[test]
fn the_lock_file_and_the_meta_table_are_the_components() {
    let component = other_conventions_component();
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    // The pretend server's meta table is `MigrationMeta` in every file.
    for (file, _, _) in sqlite_targets(&data_dir) {
        sqlite_exec(&file, "ALTER TABLE SequelizeMeta RENAME TO MigrationMeta;");
    }
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str()), ("BLOCKLET_MIGRATE_CACHE_DIR", cache.path().to_str().unwrap())];
    let (dd, c) = (data_dir.to_str().expect("utf-8 path"), component.to_str().expect("utf-8 path"));
    let to_postgres = ["--dialect", "postgres", "--data-dir", dd, "--component", c, "--allow-unsigned"];
    let (out, _) = run_migrate_within(&to_postgres, &data_dir, &env, Duration::from_secs(300));
    assert_success(&out);
    assert!(data_dir.join("core/other-conventions.lock").is_file(), "the component's lock file is missing: {out:?}");
    assert_no_lock_file(&data_dir);
    assert_eq!(pg.psql_i64("server_db", "SELECT count(*) FROM public.\"MigrationMeta\""), 74);
    assert_eq!(pg.psql_i64("server_db", "SELECT count(*) FROM pg_tables WHERE tablename = 'SequelizeMeta'"), 0);

    let to_sqlite = ["--dialect", "sqlite", "--data-dir", dd, "--component", c, "--allow-unsigned"];
    let (out, _) = run_migrate_within(&to_sqlite, &data_dir, &env, Duration::from_secs(300));
    assert_sqlite_success(&out);
    assert!(!data_dir.join("core/other-conventions.lock").exists(), "the component's lock file was kept: {out:?}");
    let server_db = data_dir.join("core/server.db");
    assert_eq!(sqlite_rows(&server_db, "MigrationMeta").len(), 74);
    assert!(!sqlite_tables(&server_db).contains(&"SequelizeMeta".to_string()), "{out:?}");
}

#[test]
fn a_component_for_another_major_wit_version_is_refused_naming_both_versions() {
    let v2 = test_component("wit-v2");
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let host = format!("blocklet:migrate@{}", wit_version());
    let (out, _) = component_info(Some(&v2), cache.path());
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.has_error_line("blocklet:migrate@2.0.0") && out.has_error_line(&host), "{out:?}");

    // A migration with it stops before touching any database (the URL points nowhere).
    let fixture = fixture_copy();
    let data_dir = data_dir(fixture.path());
    let source_before = hash_tree(&data_dir);
    let env = [
        ("ABT_NODE_POSTGRES_URL", "postgres://postgres@127.0.0.1:1/postgres"),
        ("BLOCKLET_MIGRATE_CACHE_DIR", cache.path().to_str().unwrap()),
    ];
    let args = [
        "--dialect",
        "postgres",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--component",
        v2.to_str().unwrap(),
        "--allow-unsigned",
    ];
    let (out, _) = run_migrate_within(&args, &data_dir, &env, Duration::from_secs(120));
    assert_failure(&out);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.has_error_line("blocklet:migrate@2.0.0") && out.has_error_line(&host), "{out:?}");
    assert!(!out.stderr.contains("wit-v2: a component built for"), "the host ran the 2.0 component: {out:?}");
    assert_same_source(&source_before, &data_dir, "wit-v2 run");
}

/// The `.cwasm` entries of a cache dir.
fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read cache dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    v.sort();
    v
}

#[test]
fn compiled_components_are_cached_and_a_corrupt_entry_is_recompiled() {
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let extra = extra_component();

    let started = Instant::now();
    let (cold, _) = component_info(Some(extra), cache.path());
    let cold_time = started.elapsed();
    assert_eq!(cold.code, 0, "{cold:?}");
    let entries = cache_entries(cache.path());
    assert_eq!(entries.len(), 1, "expected one .cwasm after the first run: {entries:?}");
    let entry = &entries[0];
    let original = fs::read(entry).expect("read the entry");
    assert!(original.len() > 100_000, "a {}-byte entry is not compiled code", original.len());

    let mut warm_times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let (warm, _) = component_info(Some(extra), cache.path());
        warm_times.push(started.elapsed());
        assert_eq!(warm.code, 0, "{warm:?}");
        assert_eq!(field(&warm, "sha256"), field(&cold, "sha256"));
    }
    let warm_time = *warm_times.iter().min().expect("warm runs");
    eprintln!(
        "component info (the {:.1} MB extra component): cold {:.0} ms, warm {:.0} ms (best of 3)",
        fs::metadata(extra).map(|m| m.len()).unwrap_or(0) as f64 / 1e6,
        cold_time.as_secs_f64() * 1e3,
        warm_time.as_secs_f64() * 1e3
    );
    assert!(warm_time < cold_time, "a warm run ({warm_time:?}) is not faster than a cold one ({cold_time:?})");
    assert_eq!(cache_entries(cache.path()), entries, "a warm run added entries");

    // Truncated: recompiled and rewritten, not a crash.
    fs::write(entry, &original[..original.len() / 2]).expect("truncate the entry");
    let (out, _) = component_info(Some(extra), cache.path());
    assert_eq!(out.code, 0, "a truncated cache entry broke the run: {out:?}");
    let rewritten = fs::read(entry).expect("read the entry");
    assert_eq!(rewritten.len(), original.len(), "the truncated entry was not rewritten");

    // Same length, scrambled code: the checksum catches it; recompiled and rewritten.
    scramble_after(entry, 200, 7);
    let scrambled = fs::read(entry).expect("read the entry");
    let (out, _) = component_info(Some(extra), cache.path());
    assert_eq!(out.code, 0, "a scrambled cache entry broke the run: {out:?}");
    let rewritten = fs::read(entry).expect("read the entry");
    assert_ne!(rewritten, scrambled, "the scrambled entry was not rewritten");
    assert_eq!(rewritten.len(), original.len());

    // Garbage of another length, and an empty file.
    for junk in [b"not a cwasm at all".to_vec(), Vec::new()] {
        fs::write(entry, &junk).expect("write junk");
        let (out, _) = component_info(Some(extra), cache.path());
        assert_eq!(out.code, 0, "a junk cache entry broke the run: {out:?}");
        assert_eq!(fs::read(entry).expect("read the entry").len(), original.len(), "junk entry not rewritten");
    }
}

/// A component built for the previous minor version (1.1.0, before `execute-script`) loads on
/// this host, imports the database interface it was built with, and runs.
#[test]
fn a_component_for_an_older_minor_wit_version_runs() {
    let v11 = test_component("wit-v1-1");
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let (out, _) = component_info(Some(&v11), cache.path());
    assert_eq!(out.code, 0, "a 1.1.0 component must load on a {} host: {out:?}", wit_version());
    assert_eq!(field(&out, "WIT package"), format!("blocklet:migrate@1.1.0 (host implements {})", wit_version()));

    // Planning calls `handle.list-tables` of the 1.1.0 database interface on the host.
    let pg = PgCluster::start();
    let fixture = fixture_copy();
    let data_dir = data_dir(fixture.path());
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str()), ("BLOCKLET_MIGRATE_CACHE_DIR", cache.path().to_str().unwrap())];
    let args = [
        "--dialect",
        "postgres",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--component",
        v11.to_str().unwrap(),
        "--allow-unsigned",
    ];
    let (out, _) = run_migrate_within(&args, &data_dir, &env, Duration::from_secs(120));
    assert_eq!(out.code, 2, "{out:?}");
    let ran = out.stderr.lines().find(|l| l.contains("a 1.1.0 component ran on this host and saw"));
    let tables: usize = ran
        .and_then(|l| l.split("saw ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("the 1.1.0 component did not report what it saw: {out:?}"));
    assert!(tables > 20, "the 1.1.0 component saw {tables} tables in server.db: {out:?}");
    assert!(pg.databases().is_empty(), "nothing may be created: {:?}", pg.databases());
}
