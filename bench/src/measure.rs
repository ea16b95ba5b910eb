//! Running a contender's process and measuring it: wall time and peak RSS (from `wait4`'s
//! rusage, i.e. the kernel's high-water mark of the process itself).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub struct ProcessRun {
    pub wall: Duration,
    /// Peak resident set size in bytes (`ru_maxrss`).
    pub max_rss: u64,
    /// Exit code, or 128 + signal.
    pub code: i32,
    pub user: Duration,
    pub sys: Duration,
}

/// Spawn `cmd` with stdout/stderr to `log_prefix.out`/`.err`, wait for it with `wait4`.
pub fn run(mut cmd: Command, log_prefix: &Path) -> Result<ProcessRun> {
    let out = File::create(log_prefix.with_extension("out"))?;
    let err = File::create(log_prefix.with_extension("err"))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child; pointers are to live locals.
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
    // The child is reaped; std's handle must not wait again (it does not on drop).
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(ProcessRun {
        wall,
        max_rss: usage.ru_maxrss as u64 * 1024,
        code,
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
    })
}
