//! Signed components, end to end through the binary: a `--component` file runs only when a
//! trusted key signed exactly its bytes.
//!
//! Keys are made and components signed with the binary's own `component keygen` / `component
//! sign`, from the bundled component's bytes. A refused component must be refused before it is
//! compiled or run: exit 2, an error naming the file and why, no compile-cache entry (compiling
//! writes one), no component in the `--report`, and no attempt to reach PostgreSQL (the URL
//! points at a closed port, so reaching it would be a different error). A trusted one runs a
//! dry run against a throwaway PostgreSQL cluster. Self-contained: no `tests/common`.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

const NOWHERE: &str = "postgres://postgres@127.0.0.1:1/postgres";

/// A scratch directory with an empty trusted-keys dir, an empty compile cache and a fixture copy.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new().prefix("bm-signing-").tempdir().expect("temp dir");
        for sub in ["trusted-keys", "cache", "keys", "fixture"] {
            fs::create_dir(dir.path().join(sub)).expect("create a scratch dir");
        }
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/blocklet-1.17.12-demo/.");
        let out = Command::new("cp").arg("-a").arg(&fixture).arg(dir.path().join("fixture")).output().expect("run cp");
        assert!(out.status.success(), "copying the fixture failed: {}", String::from_utf8_lossy(&out.stderr));
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn data_dir(&self) -> PathBuf {
        self.path("fixture").join(".blocklet-server")
    }

    fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    /// The binary, with this scratch's (empty) key directory and compile cache.
    fn run(&self, args: &[&str], url: &str) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_blocklet-migrate"))
            .args(args)
            .current_dir(self.dir.path())
            .env("BLOCKLET_MIGRATE_TRUSTED_KEYS", self.path("trusted-keys"))
            .env("BLOCKLET_MIGRATE_CACHE_DIR", self.cache())
            .env("ABT_NODE_POSTGRES_URL", url)
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .output()
            .expect("run blocklet-migrate");
        Run::from(out)
    }

    /// `component keygen keys/NAME`: the secret and public key files, and the key id it printed.
    fn keygen(&self, name: &str) -> (PathBuf, PathBuf, String) {
        let prefix = self.path("keys").join(name);
        let run = self.run(&["component", "keygen", s(&prefix)], NOWHERE);
        assert_eq!(run.code, 0, "keygen failed: {run:?}");
        let key_id = run
            .stdout
            .lines()
            .find_map(|l| l.split_once("key id ")?.1.split_once(':').map(|(id, _)| id.to_string()))
            .unwrap_or_else(|| panic!("keygen printed no key id: {run:?}"));
        (prefix.with_extension("key"), prefix.with_extension("pub"), key_id)
    }

    /// The bundled component's bytes as a file.
    fn unsigned_component(&self) -> PathBuf {
        let file = self.path("guest.wasm");
        fs::write(&file, blocklet_migrate::sandbox::BUNDLED_COMPONENT).expect("write the component");
        file
    }

    /// `component sign FILE --key KEY -o OUT`.
    fn sign(&self, file: &Path, key: &Path, out: &str) -> PathBuf {
        let out = self.path(out);
        let run = self.run(&["component", "sign", s(file), "--key", s(key), "-o", s(&out)], NOWHERE);
        assert_eq!(run.code, 0, "signing failed: {run:?}");
        out
    }

    fn cache_entries(&self) -> usize {
        fs::read_dir(self.cache()).expect("read the cache dir").count()
    }

    /// A migration of the fixture copy with `component`, writing `report.json`.
    fn migrate(&self, component: &Path, extra: &[&str], url: &str) -> Run {
        let data_dir = self.data_dir();
        let report = self.path("report.json");
        let _ = fs::remove_file(&report);
        let mut args = vec!["--dialect", "postgres", "--data-dir", s(&data_dir), "--component", s(component)];
        args.extend(["--report", s(&report), "--quiet"]);
        args.extend(extra);
        self.run(&args, url)
    }

    fn report(&self) -> serde_json::Value {
        let text = fs::read_to_string(self.path("report.json")).expect("read the report");
        serde_json::from_str(&text).expect("the report is JSON")
    }

    /// The run was refused before the component was compiled or run.
    #[track_caller]
    fn assert_refused_before_running(&self, run: &Run, file: &Path, why: &str) {
        assert_eq!(run.code, 2, "expected the usage/config exit code: {run:?}");
        let line = format!("✖ component {} refused: {why}", file.display());
        assert!(run.stderr.lines().any(|l| l.starts_with(&line)), "no `{line}…` line: {run:?}");
        assert_eq!(self.cache_entries(), 0, "the refused component was compiled: {run:?}");
        assert!(!run.stderr.contains("127.0.0.1:1"), "PostgreSQL was tried: {run:?}");
        let report = self.report();
        assert!(report["component"].is_null(), "the component ran: {report}");
        assert_eq!(report["outcome"], "usage-error", "{report}");
    }
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The value of a `key: value` line of `component info`.
    fn field(&self, key: &str) -> Option<&str> {
        self.stdout.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
    }
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn an_unsigned_component_is_refused_before_it_runs() {
    let scratch = Scratch::new();
    let (_, public, _) = scratch.keygen("release");
    let unsigned = scratch.unsigned_component();
    let run = scratch.migrate(&unsigned, &["--trusted-key", s(&public)], NOWHERE);
    scratch.assert_refused_before_running(&run, &unsigned, "it is unsigned");
    assert!(run.stderr.contains("--allow-unsigned"), "the refusal does not say what to do: {run:?}");
    // With no trusted key at all, the same.
    let run = scratch.migrate(&unsigned, &[], NOWHERE);
    scratch.assert_refused_before_running(&run, &unsigned, "it is unsigned");
}

#[test]
fn a_tampered_component_is_refused_before_it_runs_even_with_allow_unsigned() {
    let scratch = Scratch::new();
    let (secret, public, key_id) = scratch.keygen("release");
    let signed = scratch.sign(&scratch.unsigned_component(), &secret, "signed.wasm");
    let mut bytes = fs::read(&signed).expect("read the signed component");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = scratch.path("tampered.wasm");
    fs::write(&tampered, &bytes).expect("write the tampered component");
    let why = format!("its signature by trusted key id {key_id} does not verify");
    for extra in [vec!["--trusted-key", s(&public)], vec!["--trusted-key", s(&public), "--allow-unsigned"]] {
        let run = scratch.migrate(&tampered, &extra, NOWHERE);
        scratch.assert_refused_before_running(&run, &tampered, &why);
    }
}

#[test]
fn a_component_signed_by_an_unknown_key_is_refused_naming_the_key() {
    let scratch = Scratch::new();
    let (_, trusted, _) = scratch.keygen("release");
    let (stranger, _, stranger_id) = scratch.keygen("stranger");
    let signed = scratch.sign(&scratch.unsigned_component(), &stranger, "foreign.wasm");
    let run = scratch.migrate(&signed, &["--trusted-key", s(&trusted)], NOWHERE);
    let why = format!("it is signed by key id {stranger_id}, which is not a trusted key");
    scratch.assert_refused_before_running(&run, &signed, &why);

    let info = scratch.run(&["component", "info", s(&signed), "--trusted-key", s(&trusted)], NOWHERE);
    assert_eq!(info.code, 2, "{info:?}");
    assert_eq!(info.field("signature"), Some(format!("signed by key id {stranger_id} (not trusted)").as_str()));
    assert_eq!(info.field("component"), None, "component info ran an untrusted component: {info:?}");
    assert_eq!(scratch.cache_entries(), 0, "component info compiled an untrusted component");
}

#[test]
fn component_info_says_who_signed_a_component() {
    let scratch = Scratch::new();
    let (secret, public, key_id) = scratch.keygen("release");
    let signed = scratch.sign(&scratch.unsigned_component(), &secret, "signed.wasm");
    let run = scratch.run(&["component", "info", s(&signed), "--trusted-key", s(&public)], NOWHERE);
    assert_eq!(run.code, 0, "{run:?}");
    let expected = format!("signed by key id {key_id} (trusted: {})", public.display());
    assert_eq!(run.field("signature"), Some(expected.as_str()), "{run:?}");
    assert!(run.field("component").is_some_and(|c| c.starts_with("blocklet-migrate-guest ")), "{run:?}");

    let unsigned = scratch.unsigned_component();
    let run = scratch.run(&["component", "info", s(&unsigned)], NOWHERE);
    assert_eq!((run.code, run.field("signature")), (2, Some("unsigned")), "{run:?}");
    let run = scratch.run(&["component", "info", s(&unsigned), "--allow-unsigned"], NOWHERE);
    assert_eq!((run.code, run.field("signature")), (0, Some("unsigned")), "{run:?}");
    assert!(run.stderr.contains("⚠ --allow-unsigned: running component"), "no warning: {run:?}");

    let run = scratch.run(&["component", "info"], NOWHERE);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.field("signature"), Some("none needed: bundled with this binary (trusted)"), "{run:?}");
}

#[test]
fn a_batch_refuses_an_unsigned_job_component_before_compiling_it() {
    let scratch = Scratch::new();
    let unsigned = scratch.unsigned_component();
    let jobs = scratch.path("jobs.toml");
    let data_dir = scratch.data_dir();
    fs::write(
        &jobs,
        format!(
            "[[job]]\nname = \"tenant\"\ndata_dir = {:?}\npostgres_url = {NOWHERE:?}\ncomponent = {:?}\n",
            s(&data_dir),
            s(&unsigned)
        ),
    )
    .expect("write jobs.toml");
    let run = scratch.run(&["batch", s(&jobs)], NOWHERE);
    assert_ne!(run.code, 0, "{run:?}");
    let line = format!("component {} refused: it is unsigned", unsigned.display());
    assert!(run.stderr.contains(&line), "no `{line}`: {run:?}");
    assert!(run.stdout.contains("✖ tenant") && run.stdout.contains("exit 2"), "{run:?}");
    assert_eq!(scratch.cache_entries(), 0, "the refused component was compiled: {run:?}");
}

/// A private PostgreSQL cluster for the one test that runs a migration.
struct Cluster {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"]
            .iter()
            .map(PathBuf::from)
            .find(|b| b.join("initdb").is_file())
            .expect("PostgreSQL server binaries in /usr/lib/postgresql/*/bin");
        let dir = tempfile::Builder::new().prefix("bm-signing-pg-").tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("sock")).expect("socket dir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let cluster = Cluster { bin, dir, port };
        if is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(cluster.dir.path()).status();
            assert!(ok.is_ok_and(|s| s.success()), "chown to the postgres user failed");
        }
        let data = cluster.dir.path().join("data");
        let initdb = cluster
            .server_cmd("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            cluster.dir.path().join("sock").display()
        );
        let started = cluster
            .server_cmd("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.path().join("log"))
            .args(["-o", &opts, "start"])
            .output()
            .expect("run pg_ctl start");
        assert!(started.status.success(), "pg_ctl start failed: {}", String::from_utf8_lossy(&started.stderr));
        cluster
    }

    fn server_cmd(&self, name: &str) -> Command {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        };
        cmd.current_dir(self.dir.path()).stdin(Stdio::null()).env_remove("PGDATA").env_remove("PGPORT");
        cmd
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .server_cmd("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines().find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().nth(1) == Some("0")))
        })
        .unwrap_or(false)
}

#[test]
fn a_component_signed_by_a_trusted_key_runs() {
    let pg = Cluster::start();
    let scratch = Scratch::new();
    let (secret, public, _) = scratch.keygen("release");
    let signed = scratch.sign(&scratch.unsigned_component(), &secret, "signed.wasm");

    // Trusted with --trusted-key: a dry run reads, converts and checks everything.
    let run = scratch.migrate(&signed, &["--trusted-key", s(&public), "--dry-run"], &pg.url());
    assert_eq!(run.code, 0, "the signed component did not run to the end: {run:?}");
    assert!(!run.stderr.contains('⚠'), "a warning for a signed component: {run:?}");
    let report = scratch.report();
    assert_eq!(report["outcome"], "dry-run", "{report}");
    assert_eq!(report["component"]["source"], s(&signed), "{report}");
    assert!(report["databases"].as_array().is_some_and(|d| !d.is_empty()), "nothing migrated: {report}");
    assert!(scratch.cache_entries() > 0, "the component was not compiled");

    // Trusted through the key directory.
    fs::copy(&public, scratch.path("trusted-keys").join("release.pub")).expect("install the key");
    let run = scratch.migrate(&signed, &["--dry-run"], &pg.url());
    assert_eq!(run.code, 0, "a key in the key directory is not trusted: {run:?}");

    // An unsigned one with --allow-unsigned runs too, saying so.
    let unsigned = scratch.unsigned_component();
    let run = scratch.migrate(&unsigned, &["--dry-run", "--allow-unsigned"], &pg.url());
    assert_eq!(run.code, 0, "{run:?}");
    let warning = format!("⚠ --allow-unsigned: running component {} although it is unsigned", unsigned.display());
    assert!(run.stderr.contains(&warning), "no `{warning}` line: {run:?}");
}
