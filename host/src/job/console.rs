//! What the user sees, line by line: the original command's `ℹ`/`✔` lines on stdout, `⚠`/`✖`
//! on stderr, each prefixed with the job's name inside a batch. One process-wide console:
//! `--quiet` hides the informational lines, and progress bars, when shown, are suspended
//! while a line is printed so that neither tears the other.

use indicatif::MultiProgress;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// `--quiet`: only warnings, errors and the final result.
static QUIET: AtomicBool = AtomicBool::new(false);
/// The bars lines must not tear (the CLI's own job's).
static CONSOLE: RwLock<Option<MultiProgress>> = RwLock::new(None);

/// Set up the console for the CLI's own job: `quiet` hides info lines, and lines are printed
/// around `bars` when it is drawn.
pub fn set_console(quiet: bool, bars: Option<MultiProgress>) {
    QUIET.store(quiet, Ordering::Relaxed);
    *CONSOLE.write().unwrap() = bars;
}

fn print_out(line: String) {
    match &*CONSOLE.read().unwrap() {
        Some(p) => p.suspend(|| println!("{line}")),
        None => println!("{line}"),
    }
}

fn print_err(line: String) {
    match &*CONSOLE.read().unwrap() {
        Some(p) => p.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

tokio::task_local! {
    /// The job a line belongs to when several run in one process (`batch`).
    pub static JOB_NAME: String;
}

/// `[job] ` inside a batch job, nothing otherwise.
pub fn prefix() -> String {
    JOB_NAME.try_with(|n| format!("[{n}] ")).unwrap_or_default()
}

pub fn info(msg: &str) {
    if !quiet() {
        print_out(format!("{}ℹ {msg}", prefix()));
    }
}

pub fn success(msg: &str) {
    if !quiet() {
        print_out(format!("{}✔ {msg}", prefix()));
    }
}

/// The run's final line: shown even with `--quiet`.
pub fn result(msg: &str) {
    print_out(format!("{}✔ {msg}", prefix()));
}

pub fn warn(msg: &str) {
    print_err(format!("{}⚠ {msg}", prefix()));
}

pub fn error(msg: &str) {
    print_err(format!("{}✖ {msg}", prefix()));
}

/// A plain detail line (table counts, progress lines).
pub fn detail(msg: &str) {
    if !quiet() {
        print_out(format!("{}   {msg}", prefix()));
    }
}
