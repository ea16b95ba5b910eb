//! `migrate-to-postgres` calls `events.log` 10 million times with a 64 KiB message (640 GB of
//! log text). A host that bounds logging drops or truncates lines, or stops the component; if
//! the loop ever completes the component fails with
//! `log-flood: sent 10000000 log lines of 65536 bytes without being stopped`.

include!("../../shell.rs");

const LINES: u64 = 10_000_000;
const LINE_BYTES: usize = 64 << 10;

fn hostile(_source: &Handle, _target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    let mut message = String::with_capacity(LINE_BYTES);
    while message.len() < LINE_BYTES {
        message.push_str("log-flood ");
    }
    message.truncate(LINE_BYTES);
    for _ in 0..LINES {
        events::log(Level::Error, &message);
    }
    Err(failure(format!("log-flood: sent {LINES} log lines of {LINE_BYTES} bytes without being stopped")))
}
