//! Running a contender's process and measuring it: wall time and peak RSS (`wait4`'s rusage).
//!
//! Linux carries the *spawning* process's RSS high-water mark into the child's `ru_maxrss`
//! across `exec` (the old address space is accounted at exec time; with `posix_spawn`/vfork
//! it is the parent's). The bench holds the ceiling's pre-encoded data (hundreds of MB), so
//! spawning the tool directly would report the bench's own size. Measured processes are
//! therefore started by a small launcher — this binary's hidden `__measure` subcommand, which
//! holds almost nothing — and it reports the child's rusage.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static LAUNCHER: OnceLock<PathBuf> = OnceLock::new();

/// Copy this binary to `dir` and launch measured processes from the copy: a rebuild of the
/// workspace during a run replaces (deletes) the original.
pub fn install_launcher(dir: &Path) -> Result<()> {
    let me = std::env::current_exe().context("current_exe")?;
    let copy = dir.join("blocklet-migrate-bench.launcher");
    let _ = fs::remove_file(&copy);
    fs::copy(&me, &copy).with_context(|| format!("copy {}", me.display()))?;
    let _ = LAUNCHER.set(copy);
    Ok(())
}

pub struct ProcessRun {
    pub wall: Duration,
    /// Peak resident set size in bytes (`ru_maxrss`).
    pub max_rss: u64,
    /// Exit code, or 128 + signal.
    pub code: i32,
    pub user: Duration,
    pub sys: Duration,
}

/// Run `cmd` (its program, arguments, environment and working directory) through the
/// launcher, stdout/stderr to `log_prefix.out`/`.err`.
pub fn run(cmd: Command, log_prefix: &Path) -> Result<ProcessRun> {
    let result = log_prefix.with_extension("rusage");
    let _ = fs::remove_file(&result);
    let launcher = match LAUNCHER.get() {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("current_exe")?,
    };
    let mut l = Command::new(launcher);
    l.arg("__measure").arg("--result").arg(&result).arg("--").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => l.env(k, v),
            None => l.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        l.current_dir(dir);
    }
    l.stdin(Stdio::null())
        .stdout(File::create(log_prefix.with_extension("out"))?)
        .stderr(File::create(log_prefix.with_extension("err"))?);
    let status = l.status().context("run the measuring launcher")?;
    let text = fs::read_to_string(&result)
        .with_context(|| format!("launcher left no result ({status}); see {}", log_prefix.display()))?;
    let v: Vec<u64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    if v.len() != 5 {
        bail!("bad launcher result {text:?}");
    }
    Ok(ProcessRun {
        wall: Duration::from_nanos(v[0]),
        max_rss: v[1],
        code: v[2] as i32,
        user: Duration::from_nanos(v[3]),
        sys: Duration::from_nanos(v[4]),
    })
}

/// The launcher: spawn `program args`, wait for it with `wait4`, write
/// `wall_ns max_rss_bytes exit_code user_ns sys_ns` to `result`.
pub fn launch(result: &Path, program: &OsStr, args: &[OsString]) -> Result<()> {
    let start = Instant::now();
    let child = Command::new(program).args(args).spawn().with_context(|| format!("spawn {program:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child; the pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    let wall = start.elapsed();
    // Reaped by wait4; std's handle does not wait again on drop.
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    fs::write(
        result,
        format!(
            "{} {} {} {} {}\n",
            wall.as_nanos(),
            usage.ru_maxrss as u64 * 1024,
            code,
            ns(usage.ru_utime),
            ns(usage.ru_stime)
        ),
    )?;
    Ok(())
}
