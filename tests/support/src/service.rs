//! The hosting service under test: a throwaway NATS server with JetStream, `blocklet-migrate
//! serve` processes, and a small HTTP/1.1 client (requests and server-sent events) to talk to
//! them, all over real sockets.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A `nats-server -js` of its own, on a free port, storing in a temporary directory.
pub struct NatsServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        NatsServer::try_start().unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn try_start() -> Result<NatsServer> {
        let bin = which("nats-server")
            .context("nats-server is not installed (Debian: apt-get install nats-server); the service tests need it")?;
        let dir = tempfile::Builder::new().prefix("bm-nats-").tempdir()?;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut child = Command::new(&bin)
                .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("start nats-server")?;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(NatsServer { child, port, _dir: dir });
                }
                if child.try_wait()?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        bail!("nats-server did not start")
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One `blocklet-migrate serve` process; its stdout and stderr go to `log`.
pub struct ServiceProcess {
    child: Option<Child>,
    pub address: String,
    pub log: PathBuf,
    pub name: String,
}

impl ServiceProcess {
    /// Start `serve --config CONFIG --worker-name NAME EXTRA…` on a free port (no API with
    /// `--no-api` in `extra`) and wait until it listens or takes jobs.
    pub fn start(config: &Path, name: &str, extra: &[&str], log_dir: &Path) -> ServiceProcess {
        ServiceProcess::start_binary(&crate::bin_path(), config, name, extra, log_dir)
    }

    /// [`ServiceProcess::start`] with another binary (the bench's).
    pub fn start_binary(bin: &Path, config: &Path, name: &str, extra: &[&str], log_dir: &Path) -> ServiceProcess {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("service log");
        let api = !extra.contains(&"--no-api");
        let child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .args(if api { &["--listen", "127.0.0.1:0"][..] } else { &[] })
            .args(["--worker-name", name])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start blocklet-migrate serve");
        // Owned before waiting, so that a failed start still stops it.
        let mut process = ServiceProcess { child: Some(child), address: String::new(), log, name: name.into() };
        let started = Instant::now();
        loop {
            let text = process.log_text();
            if let Some(line) = text.lines().find(|l| l.starts_with("listening on http://")) {
                process.address = line.trim_start_matches("listening on http://").to_string();
                return process;
            }
            if !api && text.contains(&format!("worker {name} takes")) {
                return process;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "serve {name} did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Send `signal` (SIGSTOP freezes it, SIGCONT resumes it).
    pub fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill has no memory preconditions; the pid is our own child's.
            unsafe { libc::kill(c.id() as i32, signal) };
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `limit` for it to exit; its exit code.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self, token: &str) -> Client {
        Client { address: self.address.clone(), token: token.to_string() }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP response: status and body (JSON when it parses).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A tenant's client of one service process.
#[derive(Clone)]
pub struct Client {
    pub address: String,
    pub token: String,
}

impl Client {
    /// One request on a connection of its own; `body` is sent as JSON.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.try_request(method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
    }

    pub fn try_request(&self, method: &str, path: &str, body: Option<&str>) -> Result<Response> {
        let mut stream = TcpStream::connect(&self.address)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.address);
        if !self.token.is_empty() {
            head += &format!("Authorization: Bearer {}\r\n", self.token);
        }
        let body = body.unwrap_or("");
        if !body.is_empty() {
            head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
        }
        head += "\r\n";
        stream.write_all(head.as_bytes())?;
        // A server may answer (413) before reading a large body, and close.
        let _ = stream.write_all(body.as_bytes());
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, rest) = text.split_once("\r\n\r\n").context("no HTTP head in the response")?;
        let status: u16 = head.split_whitespace().nth(1).context("no status")?.parse()?;
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        let body = if chunked { dechunk(rest) } else { rest.to_string() };
        Ok(Response { status, body })
    }

    pub fn submit(&self, request: &Value) -> Response {
        self.request("POST", "/v1/jobs", Some(&request.to_string()))
    }

    pub fn job(&self, id: &str) -> Value {
        let r = self.request("GET", &format!("/v1/jobs/{id}"), None);
        assert_eq!(r.status, 200, "GET job {id}: {r:?}");
        r.json()
    }

    /// Poll until the job reaches a final state (or `limit` passes); its record.
    pub fn wait_final(&self, id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let job = self.job(id);
            if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(started.elapsed() < limit, "job {id} did not end within {limit:?}: {job:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Follow the job's events until `until` returns true for one (then return every event so
    /// far, as (name, data)) or the stream ends.
    pub fn follow(
        &self,
        id: &str,
        limit: Duration,
        mut until: impl FnMut(&str, &Value) -> bool,
    ) -> Vec<(String, Value)> {
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        stream.set_read_timeout(Some(limit)).expect("timeout");
        let head = format!(
            "GET /v1/jobs/{id}/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
            self.address, self.token
        );
        stream.write_all(head.as_bytes()).expect("send");
        let mut reader = BufReader::new(stream);
        let mut events = Vec::new();
        let mut name = String::new();
        let started = Instant::now();
        let mut line = String::new();
        while started.elapsed() < limit {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if let Some(n) = l.strip_prefix("event: ").or_else(|| l.strip_prefix("event:")) {
                name = n.trim().to_string();
            } else if let Some(d) = l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")) {
                let data: Value = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                let stop = until(&name, &data);
                events.push((name.clone(), data));
                if stop {
                    break;
                }
            }
        }
        events
    }
}

/// The body of a chunked response.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One tenant of a service under test: its token, its own root, the server and components it
/// may use, and any further lines of its `[[tenant]]` entry.
pub struct TenantSetup {
    pub name: String,
    pub token: String,
    pub root: PathBuf,
    pub server: String,
    /// Further servers it may use.
    pub more_servers: Vec<String>,
    pub components: Vec<String>,
    pub extra: String,
}

impl TenantSetup {
    /// Tenant `name` with its own (empty) root under `roots`, allowed `server` and the bundled component.
    pub fn new(roots: &Path, name: &str, server: &str) -> TenantSetup {
        let root = roots.join(name);
        std::fs::create_dir_all(&root).expect("tenant root");
        let root = std::fs::canonicalize(&root).expect("tenant root");
        TenantSetup {
            name: name.into(),
            token: format!("bmt_test_{name}_{}", std::process::id()),
            root,
            server: server.into(),
            more_servers: Vec::new(),
            components: vec!["bundled".into()],
            extra: String::new(),
        }
    }

    /// A copy of the demo fixture at `<root>/site`; its data dir.
    pub fn with_demo_site(self) -> (TenantSetup, PathBuf) {
        crate::copy_tree(&crate::fixture_dir(), &self.root.join("site"));
        let dd = crate::data_dir(&self.root.join("site"));
        (self, dd)
    }

    /// The demo fixture plus `rows` generated rows at `<root>/site`; its data dir.
    pub fn with_big_site(self, rows: u64) -> (TenantSetup, PathBuf) {
        let g = crate::generate::generate(rows, 1, &self.root.join("site")).expect("generate the tenant's site");
        let dd = std::fs::canonicalize(&g.data_dir).expect("data dir");
        (self, dd)
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a TOML basic string")
}

/// sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Write the service's configuration into `dir`: `head` (top-level keys), the servers as
/// (name, URL), the component files (pinned by their digest) and the tenants.
pub fn write_service_config(
    dir: &Path,
    nats: &NatsServer,
    head: &str,
    servers: &[(&str, String)],
    components: &[&Path],
    tenants: &[&TenantSetup],
) -> PathBuf {
    use std::fmt::Write as _;
    let mut text = format!("nats_url = {}\n{head}\n", toml_str(&nats.url()));
    for path in components {
        let digest = sha256_hex(&std::fs::read(path).expect("component"));
        write!(text, "\n[[component]]\npath = {}\nsha256 = \"{digest}\"\n", toml_str(path.to_str().unwrap())).unwrap();
    }
    for (name, url) in servers {
        write!(text, "\n[[server]]\nname = {}\nurl = {}\n", toml_str(name), toml_str(url)).unwrap();
    }
    for t in tenants {
        let components: Vec<String> = t.components.iter().map(|c| toml_str(c)).collect();
        let servers: Vec<String> = [&t.server].into_iter().chain(&t.more_servers).map(|s| toml_str(s)).collect();
        write!(
            text,
            "\n[[tenant]]\nname = {}\ntoken_sha256 = \"{}\"\ndata_root = {}\nservers = [{}]\ncomponents = [{}]\n{}",
            toml_str(&t.name),
            sha256_hex(t.token.as_bytes()),
            toml_str(t.root.to_str().unwrap()),
            servers.join(", "),
            components.join(", "),
            t.extra
        )
        .unwrap();
    }
    let path = dir.join("service.toml");
    std::fs::write(&path, text).expect("write service.toml");
    path
}
