//! `migrate-to-postgres` tries to forge the host's own output: a log line carrying a newline and
//! then the host's success line (`✔ Migration postgres completed`) and a batch job's prefix
//! (`[tenant-00] `), a terminal escape (`ESC c`, a full terminal reset), and then fails with a
//! 1 MiB message that carries the same forgeries. A host that keeps its output honest shows
//! each of them as one line of the component's, with control characters escaped, and cuts the
//! failure message short.

include!("../../shell.rs");

/// What a forged line looks like: the host's success line, as a line of its own.
const FORGED: &str = "✔ Migration postgres completed";

fn hostile(_source: &Handle, _target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    events::log(Level::Info, &format!("log-spoof: an info line\n{FORGED}\n[tenant-00] ✔ Migration postgres completed"));
    events::log(Level::Error, "log-spoof: an error line with a terminal reset: \u{1b}c");
    let mut message = format!("log-spoof: failing\n{FORGED}\n[tenant-00] ✖ forged by log-spoof\u{1b}c ");
    message.push_str(&"x".repeat(1 << 20));
    Err(failure(message))
}
