//! A throwaway PostgreSQL cluster from the machine's server binaries (`initdb`, `pg_ctl`): data
//! dir, socket dir and log in a temp dir, listening only on 127.0.0.1, `trust` for user
//! `postgres`. `initdb` refuses to run as root, so as root the dir belongs to `postgres` and the
//! binaries run through `runuser -u postgres`. Dropping the value stops the server and removes
//! the dir; nothing else is ever stopped.

use crate::scratch::ScratchDir;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian/Ubuntu install the server binaries: `/usr/lib/postgresql/<major>/bin`.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

pub struct ThrowawayCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
    dir: ScratchDir,
}

/// The newest `/usr/lib/postgresql/<major>/bin` holding `initdb`, else the directory of an
/// `initdb` on `PATH`; the error names the package to install.
pub fn server_bin_dir() -> Result<PathBuf, String> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(DEBIAN_PG_ROOT).into_iter().flatten().flatten() {
        let Some(major) = entry.file_name().to_str().and_then(|n| n.split('.').next()?.parse::<u32>().ok()) else {
            continue;
        };
        let bin = entry.path().join("bin");
        if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(m, _)| major > *m) {
            best = Some((major, bin));
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .ok_or_else(|| {
            format!(
                "no PostgreSQL server binaries (initdb, pg_ctl) in {DEBIAN_PG_ROOT}/*/bin or on PATH: install them \
                 (Debian/Ubuntu: apt-get install postgresql), or point ABT_NODE_POSTGRES_URL at a running server"
            )
        })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| Some(l.strip_prefix("Uid:")?.split_whitespace().nth(1)? == "0")))
        .unwrap_or(false)
}

/// Runs `cmd`, returning its stdout, or an error with everything it printed.
fn output_of(what: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{what} failed ({}):\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

impl ThrowawayCluster {
    /// `initdb`, then `pg_ctl start` on a free port (a new port if another process took it first).
    pub fn start() -> Result<ThrowawayCluster, String> {
        let bin = server_bin_dir()?;
        let as_postgres = running_as_root();
        let dir = ScratchDir::new("blocklet-migrate-demo-pg")?;
        let socket_dir = dir.path().join("socket");
        std::fs::create_dir(&socket_dir).map_err(|e| format!("cannot create {}: {e}", socket_dir.display()))?;
        if as_postgres {
            output_of(
                "chown -R postgres (initdb refuses to run as root; is there a `postgres` user?)",
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()),
            )?;
        }
        let mut cluster =
            ThrowawayCluster { bin, data: dir.path().join("data"), port: 0, as_postgres, running: false, dir };
        output_of(
            "initdb",
            cluster.server_command("initdb").arg("-D").arg(&cluster.data).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
        )?;
        let mut last_error = String::new();
        for attempt in 1..=5 {
            let port = free_port()?;
            let log = cluster.dir.path().join(format!("postgres-{attempt}.log"));
            let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", socket_dir.display());
            let started = output_of(
                "pg_ctl start",
                cluster
                    .server_command("pg_ctl")
                    .args(["-w", "-t", "60", "-D"])
                    .arg(&cluster.data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-o", &options, "start"]),
            );
            match started {
                Ok(_) => {
                    cluster.port = port;
                    cluster.running = true;
                    return Ok(cluster);
                }
                Err(e) => {
                    last_error = format!("{e}{}", std::fs::read_to_string(&log).unwrap_or_default());
                    if !last_error.contains("could not bind") && !last_error.contains("already in use") {
                        break;
                    }
                }
            }
        }
        Err(format!("could not start a PostgreSQL cluster in {}:\n{last_error}", cluster.dir.path().display()))
    }

    /// A server binary, run as `postgres` when we are root, from a directory it may read.
    fn server_command(&self, name: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// The server binaries' directory, which also holds `psql`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`, the value for `ABT_NODE_POSTGRES_URL`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .server_command("pg_ctl")
                .args(["-w", "-t", "60", "-m", "fast", "-D"])
                .arg(&self.data)
                .arg("stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}
