//! Running the `blocklet-migrate` binary under test: one child process with a time limit, its
//! output captured whole.
//!
//! Every run goes through [`run_migrate_raw_killed_after`]: `ABT_NODE_POSTGRES_URL` is removed from
//! the inherited environment (only the caller's `env` sets it), `NO_COLOR=1` is set, stdin is
//! empty, and the process is SIGKILLed once its limit has passed. The other runners are views of
//! that one: ANSI escapes stripped ([`Output`]), a panic when the limit was hit, the time taken.

use std::fmt;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for one run of the CLI. A hung tool fails the test instead of blocking the suite forever.
pub const MIGRATE_TIMEOUT: Duration = Duration::from_secs(600);

/// Result of one CLI run. `Debug` prints the exit code and both streams in full, so pass `{:?}` of
/// it to assertion messages.
pub struct Output {
    /// Exit code; `128 + signal` if the process was killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n===== blocklet-migrate exit code: {} =====", self.code)?;
        writeln!(f, "----- stdout -----")?;
        writeln!(f, "{}", self.stdout)?;
        writeln!(f, "----- stderr -----")?;
        writeln!(f, "{}", self.stderr)?;
        write!(f, "------------------")
    }
}

impl Output {
    /// The stderr lines that start with `✖` (the error lines of the CLI contract).
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.trim_start().starts_with('✖')).collect()
    }

    /// Whether some `✖` line in stderr contains `needle`.
    pub fn has_error_line(&self, needle: &str) -> bool {
        self.error_lines().iter().any(|l| l.contains(needle))
    }
}

/// A CLI run's exit code and output exactly as written (ANSI escapes and all).
pub struct RawOutput {
    /// Exit code; `128 + signal` if the process was killed by a signal.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl RawOutput {
    /// The [`Output`] [`run_migrate`] would have returned: lossy UTF-8, ANSI escapes removed.
    pub fn output(&self) -> Output {
        Output {
            code: self.code,
            stdout: strip_ansi(&String::from_utf8_lossy(&self.stdout)),
            stderr: strip_ansi(&String::from_utf8_lossy(&self.stderr)),
        }
    }
}

/// Path of the binary under test: `blocklet-migrate` beside the `deps/` directory that holds the
/// running test binary (where cargo puts a package's binaries, and builds them before its
/// integration tests).
pub fn bin_path() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of the running test binary");
        let profile_dir =
            exe.parent().and_then(Path::parent).expect("the test binary lives in <target>/<profile>/deps");
        let bin = profile_dir.join("blocklet-migrate");
        assert!(bin.is_file(), "{} not found: run the tests through cargo, which builds it", bin.display());
        bin
    })
    .clone()
}

/// Runs `blocklet-migrate <args>` in `cwd`. `ABT_NODE_POSTGRES_URL` is removed from the inherited
/// environment, so only `env` can set it. Other `env` pairs are added as given.
/// `NO_COLOR=1` is set, and ANSI escape sequences are removed from what is captured, so assertions
/// can match the plain `ℹ`/`✔`/`✖` lines. If the run takes longer than [`MIGRATE_TIMEOUT`], the
/// process is killed and the function panics with its partial output.
pub fn run_migrate(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let (out, killed) = run_migrate_killed_after(args, cwd, env, MIGRATE_TIMEOUT);
    if killed {
        panic!("blocklet-migrate {args:?} did not finish within {MIGRATE_TIMEOUT:?} and was killed: {out:?}");
    }
    out
}

/// Like [`run_migrate`], but sends SIGKILL (`Child::kill`) once `after` has passed, as a crash or
/// `kill -9` would. Returns the output captured until then (the exit code is then `128 + 9`) and
/// whether the process was killed (`false`: it exited by itself before `after`).
pub fn run_migrate_killed_after(args: &[&str], cwd: &Path, env: &[(&str, &str)], after: Duration) -> (Output, bool) {
    let (raw, killed, _) = run_migrate_raw_killed_after(args, cwd, env, after);
    (raw.output(), killed)
}

/// Runs `blocklet-migrate <args>` like [`run_migrate_killed_after`], and also reports how long it
/// took. Panics with the partial output when it had to be killed after `limit`: a sandboxed
/// failure must end the process by itself.
#[track_caller]
pub fn run_migrate_within(args: &[&str], cwd: &Path, env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    let (raw, took) = run_migrate_raw(args, cwd, env, limit);
    (raw.output(), took)
}

/// Like [`run_migrate_within`] (same environment handling), but keeps the output as written.
/// Panics with the partial output when the process had to be killed after `limit`.
#[track_caller]
pub fn run_migrate_raw(args: &[&str], cwd: &Path, env: &[(&str, &str)], limit: Duration) -> (RawOutput, Duration) {
    let (raw, killed, took) = run_migrate_raw_killed_after(args, cwd, env, limit);
    assert!(
        !killed,
        "blocklet-migrate {args:?} did not exit by itself within {limit:?} and was killed: {:?}",
        raw.output()
    );
    (raw, took)
}

/// The one runner: spawns the binary, reads both pipes on their own threads, SIGKILLs the process
/// once `after` has passed. Returns the output as written, whether the process was killed (it may
/// have exited by itself just before the signal: then it was not), and how long it ran.
pub fn run_migrate_raw_killed_after(
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &str)],
    after: Duration,
) -> (RawOutput, bool, Duration) {
    run_child(args, cwd, env, None, after)
}

/// Runs `blocklet-migrate <args>`, sends it SIGINT (as Ctrl-C does) once `interrupt` has passed,
/// and waits for it to exit by itself, at most until `limit` (then it panics, as
/// [`run_migrate_raw`] does). Returns the output and how long it ran.
#[track_caller]
pub fn run_migrate_interrupted_after(
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &str)],
    interrupt: Duration,
    limit: Duration,
) -> (RawOutput, Duration) {
    let (raw, killed, took) = run_child(args, cwd, env, Some(interrupt), limit);
    assert!(
        !killed,
        "blocklet-migrate {args:?} did not exit by itself within {limit:?} of starting (interrupted after \
         {interrupt:?}) and was killed: {:?}",
        raw.output()
    );
    (raw, took)
}

fn run_child(
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &str)],
    mut interrupt: Option<Duration>,
    after: Duration,
) -> (RawOutput, bool, Duration) {
    let mut cmd = Command::new(bin_path());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("ABT_NODE_POSTGRES_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin_path().display()));
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let (status, killed) = loop {
        if let Some(st) = child.try_wait().expect("wait for blocklet-migrate") {
            break (st, false);
        }
        let elapsed = start.elapsed();
        if interrupt.is_some_and(|at| elapsed >= at) {
            interrupt = None;
            // SAFETY: kill(2) on our own child's pid, which it keeps until we wait for it.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        }
        if elapsed >= after {
            let _ = child.kill();
            let st = child.wait().expect("wait after kill");
            break (st, st.signal() == Some(9));
        }
        let next = interrupt.map_or(after, |at| at.min(after));
        thread::sleep(next.saturating_sub(elapsed).clamp(Duration::from_millis(1), Duration::from_millis(5)));
    };
    let took = start.elapsed();
    let raw = RawOutput {
        code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    };
    (raw, killed, took)
}

/// Removes ANSI CSI escape sequences (`ESC [ ... final-byte`) and OSC sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                for c2 in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c2) {
                        break;
                    }
                }
            }
            Some(']') => {
                chars.next();
                while let Some(c2) = chars.next() {
                    if c2 == '\u{7}' {
                        break;
                    }
                    if c2 == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}
