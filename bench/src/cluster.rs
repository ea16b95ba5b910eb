//! A throwaway PostgreSQL cluster for one benchmark run (like the tests' `PgCluster`): `initdb`
//! in a temp dir, `pg_ctl start` on a free port of 127.0.0.1, under `runuser -u postgres` when
//! we are root. Dropping it stops the server (also on panic) and removes the directory.
//!
//! The system cluster on 5432 is never touched: the product's database names are fixed.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// Server settings every contender runs with.
pub const SETTINGS: [(&str, &str); 3] = [("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")];

pub struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    pub port: u16,
    as_postgres: bool,
    running: bool,
    _dir: TempDir,
}

pub fn pg_bin_dir() -> Result<PathBuf> {
    let p = Path::new("/usr/lib/postgresql/15/bin");
    if p.join("initdb").is_file() {
        return Ok(p.to_path_buf());
    }
    bail!("PostgreSQL 15 server binaries not found in /usr/lib/postgresql/15/bin")
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Restrict the calling thread (and every thread or process it starts afterwards) to `cpus`.
pub fn pin_current_thread(cpus: std::ops::Range<usize>) -> Result<()> {
    set_affinity(cpus).context("sched_setaffinity")
}

/// `sched_setaffinity` for the calling thread; allocates nothing, so it may run between fork
/// and exec.
fn set_affinity(cpus: std::ops::Range<usize>) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and CPU_SET is only given CPUs below
    // CPU_SETSIZE.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus.filter(|&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// Where the cluster goes unless told: `/dev/shm` when it is a tmpfs with room for a run of
/// `rows` rows, else the temp dir. Every setting already keeps the disk out of the measure
/// (`fsync=off`, …), but on ext4 the first `CREATE DATABASE` after dropping the previous
/// contender's databases spent 0.1–1.3 s in the inode allocator (`recently_deleted`,
/// `find_inode_bit`), a cost that grew from round to round and landed on whoever came next.
pub fn default_parent(rows: u64) -> PathBuf {
    let shm = Path::new("/dev/shm");
    // The data, indexes and WAL of one contender at a time, with room to spare.
    let needed = (2u64 << 30) + rows * 8 * 1024;
    match filesystem_of(shm) {
        Some((true, available)) if available >= needed => shm.to_path_buf(),
        _ => std::env::temp_dir(),
    }
}

/// `on tmpfs /dev/shm` or `on disk /tmp`: for the report's header.
pub fn describe_storage(dir: &Path) -> String {
    match filesystem_of(dir) {
        Some((true, _)) => format!("on tmpfs {}", dir.display()),
        Some((false, _)) => format!("on disk {}", dir.display()),
        None => format!("in {}", dir.display()),
    }
}

/// Whether `dir` is on a tmpfs, and the bytes available there.
fn filesystem_of(dir: &Path) -> Option<(bool, u64)> {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let st = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(path.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libc targets.
    let tmpfs = st.f_type as i64 == TMPFS_MAGIC;
    Some((tmpfs, st.f_bavail as u64 * st.f_bsize as u64))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Start a throwaway cluster in a new directory under `parent`; with `pin_to_cpu0`, the
    /// postmaster and every backend it forks run on CPU 0 only.
    pub fn start(parent: &Path, pin_to_cpu0: bool) -> Result<Cluster> {
        let bin = pg_bin_dir()?;
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("bm-bench-pg-")
            .tempdir_in(parent)
            .with_context(|| format!("creating the cluster's directory in {}", parent.display()))?;
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        fs::create_dir(root.join("sock"))?;
        if as_postgres {
            let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root).status()?;
            if !st.success() {
                bail!("chown -R postgres {} failed", root.display());
            }
        }
        let mut c = Cluster { bin, root, data, port: 0, as_postgres, running: false, _dir: dir };
        let out = c
            .server_cmd("initdb")
            .arg("-D")
            .arg(&c.data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        let mut last = String::new();
        for attempt in 1..=5 {
            let port = free_port()?;
            let log = c.root.join(format!("postgres-{attempt}.log"));
            let mut opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", c.root.join("sock").display());
            for (k, v) in SETTINGS {
                opts.push_str(&format!(" -c {k}={v}"));
            }
            let mut pg_ctl = c.server_cmd("pg_ctl");
            if pin_to_cpu0 {
                use std::os::unix::process::CommandExt;
                // SAFETY: only sched_setaffinity, which is async-signal-safe, runs in the child.
                unsafe {
                    pg_ctl.pre_exec(|| set_affinity(0..1));
                }
            }
            let out = pg_ctl
                .args(["-w", "-t", "60", "-D"])
                .arg(&c.data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(&opts)
                .arg("start")
                .output()?;
            if out.status.success() {
                c.port = port;
                c.running = true;
                return Ok(c);
            }
            last = fs::read_to_string(&log).unwrap_or_default();
            if !last.contains("already in use") && !last.contains("could not bind") {
                break;
            }
        }
        bail!("could not start PostgreSQL in {}:\n{last}", c.root.display())
    }

    fn server_cmd(&self, name: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        };
        cmd.current_dir(&self.root).stdin(Stdio::null());
        for v in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"] {
            cmd.env_remove(v);
        }
        cmd
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `psql -X -A -t -q -v ON_ERROR_STOP=1 -c sql` in `db`; stdout.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .context("run psql")?;
        if !out.status.success() {
            bail!("psql on {db} failed: {}\nSQL: {sql}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// The server's version string.
    pub fn version(&self) -> Result<String> {
        self.psql("postgres", "SHOW server_version")
    }

    /// Non-template databases other than `postgres`.
    pub fn databases(&self) -> Result<Vec<String>> {
        Ok(self
            .psql(
                "postgres",
                "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY 1",
            )?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Drop every database a previous measurement made (they are all ours: this cluster is
    /// private) and checkpoint, so the next contender starts from the same state.
    pub fn reset(&self) -> Result<()> {
        for db in self.databases()? {
            self.psql("postgres", &format!("DROP DATABASE \"{}\" WITH (FORCE)", db.replace('"', "\"\"")))?;
        }
        self.psql("postgres", "CHECKPOINT")?;
        Ok(())
    }

    /// CPU time the whole server has used so far: the postmaster, its live children (backends,
    /// parallel workers, checkpointer, …) and the children it has reaped (backends that exited).
    /// The difference across a measurement is what PostgreSQL spent on that contender, which
    /// on a machine with few cores decides the wall time as much as the client does.
    pub fn cpu_time(&self) -> Result<Duration> {
        let pid_file = fs::read_to_string(self.data.join("postmaster.pid")).context("read postmaster.pid")?;
        let postmaster: u32 = pid_file.lines().next().context("empty postmaster.pid")?.trim().parse()?;
        let mut ticks = proc_ticks(postmaster, true)?;
        let children = fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            // A child that exits meanwhile is counted in the postmaster's reaped time next time.
            ticks += proc_ticks(child, false).unwrap_or(0);
        }
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_micros(ticks * 1_000_000 / hz))
    }

    /// `(table, rows)` of every base table in `public` of `db`.
    pub fn row_counts(&self, db: &str) -> Result<Vec<(String, u64)>> {
        let sql = "SELECT string_agg(format('%s|%s', t, (xpath('/row/c/text()', \
                   query_to_xml(format('SELECT count(*) AS c FROM public.%I', t), false, true, '')))[1]::text), E'\\n') \
                   FROM (SELECT table_name::text AS t FROM information_schema.tables \
                   WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1) x";
        let out = self.psql(db, sql)?;
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (t, n) = l.split_once('|').context("row count line")?;
                Ok((t.to_string(), n.trim().parse()?))
            })
            .collect()
    }
}

/// utime + stime of `pid` from `/proc/PID/stat`, plus its reaped children's with `reaped`.
fn proc_ticks(pid: u32, reaped: bool) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let field = |n: usize| -> Result<u64> {
        // `rest` starts at field 3 (state); utime is field 14.
        rest.split_whitespace().nth(n - 3).context("short /proc/PID/stat")?.parse().context("/proc/PID/stat field")
    };
    let own = field(14)? + field(15)?;
    Ok(if reaped { own + field(16)? + field(17)? } else { own })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .server_cmd("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_too_big_for_shared_memory_goes_to_the_temp_dir() {
        assert_eq!(default_parent(u64::MAX / (16 * 1024)), std::env::temp_dir());
    }

    #[test]
    fn storage_is_described_by_what_the_directory_is_on() {
        let tmpfs = filesystem_of(Path::new("/dev/shm")).is_some_and(|(t, _)| t);
        let shm = describe_storage(Path::new("/dev/shm"));
        assert_eq!(shm.starts_with("on tmpfs"), tmpfs, "{shm}");
        assert!(describe_storage(Path::new("/no/such/dir")).starts_with("in "));
    }
}
