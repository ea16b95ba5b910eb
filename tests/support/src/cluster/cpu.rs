//! CPU placement and accounting for a cluster under measurement: pinning (the postmaster on CPU 0,
//! the caller elsewhere) and the CPU time the whole server has spent, which on a machine with few
//! cores decides a client's wall time as much as the client does.

use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::PgCluster;

/// Restrict the calling thread (and every thread or process it starts afterwards) to `cpus`.
pub fn pin_current_thread(cpus: std::ops::Range<usize>) -> Result<()> {
    set_affinity(cpus).context("sched_setaffinity")
}

/// Makes `cmd`'s process, and so everything it starts, run on CPU 0 only.
pub(super) fn pin_children_to_cpu0(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only sched_setaffinity, which is async-signal-safe, runs in the child.
    unsafe {
        cmd.pre_exec(|| set_affinity(0..1));
    }
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

impl PgCluster {
    /// CPU time the whole server has used so far: the postmaster, its live children (backends,
    /// parallel workers, checkpointer, …) and the children it has reaped (backends that exited).
    /// The difference across a measurement is what PostgreSQL spent on that contender.
    pub fn cpu_time(&self) -> Result<Duration> {
        let pid_file = fs::read_to_string(self.data.join("postmaster.pid")).context("read postmaster.pid")?;
        let postmaster: u32 = pid_file.lines().next().context("empty postmaster.pid")?.trim().parse()?;
        let mut ticks = proc_ticks(postmaster, true)?;
        let children = fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            // A child that exits meanwhile is counted in the postmaster's reaped time next time.
            ticks += proc_ticks(child, false).unwrap_or(0);
        }
        Ok(from_ticks(ticks))
    }
}

/// CPU time process `pid` has used so far (itself, not its reaped children).
pub fn process_cpu_time(pid: u32) -> Result<Duration> {
    Ok(from_ticks(proc_ticks(pid, false)?))
}

/// Clock ticks as time.
fn from_ticks(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_counted_cpu_ticks() {
        let pid = std::process::id();
        let own = proc_ticks(pid, false).expect("read /proc/self/stat");
        assert!(proc_ticks(pid, true).expect("read /proc/self/stat") >= own);
    }
}
