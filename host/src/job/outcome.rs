//! How a job ends: the errors it can fail with, each mapped to a documented exit code and to
//! the outcome the JSON report records. The exit codes live here, not in the CLI, because the
//! report and the batch summary record them too.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure (connection lost, component error…) |
//! | 2 | usage or configuration error |
//! | 3 | rows rejected, nothing committed (a dry run: rows would be rejected) |
//! | 4 | verification mismatch, nothing committed |
//! | 5 | success, but rejected rows were skipped (`--skip-rejects`) |
//! | 130 | cancelled (Ctrl-C, SIGTERM, a service's cancel request): nothing committed |

use crate::capability::events::{MAX_REJECTS_PER_JOB, TooManyRejects};
use crate::sandbox::Ended;
use crate::text::printable_message;
use crate::wit::{Failure, FailureKind};

pub const EXIT_SUCCESS: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REJECTED: u8 = 3;
pub const EXIT_VERIFICATION: u8 = 4;
pub const EXIT_SKIPPED_ROWS: u8 = 5;
pub const EXIT_CANCELLED: u8 = 130;

/// How a job ended badly.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Config(String),
    /// Another process has a database file open (a running server): a usage error to the user,
    /// and to a caller that reruns jobs a reason to try again later.
    #[error("{0}")]
    InUse(String),
    #[error("{message}")]
    Rejected { message: String, rejected_rows: u64 },
    #[error("{0}")]
    Verification(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Cancelled(String),
}

impl JobError {
    /// A component's failure, its message made safe to print.
    pub fn from_failure(mut f: Failure) -> JobError {
        f.message = printable_message(&f.message);
        match f.kind {
            FailureKind::RejectedRows => JobError::Rejected { message: f.message, rejected_rows: f.rejected_rows },
            FailureKind::VerificationMismatch => JobError::Verification(f.message),
            FailureKind::Refused => JobError::Config(f.message),
            FailureKind::Other => JobError::Failed(f.message),
        }
    }

    /// A component call that did not return: trapped, stopped by a limit, or cancelled. Too
    /// many rejected rows fail the job as rejected rows do.
    pub fn from_trap(e: anyhow::Error) -> JobError {
        if e.downcast_ref::<TooManyRejects>().is_some() {
            return JobError::Rejected { message: e.to_string(), rejected_rows: MAX_REJECTS_PER_JOB + 1 };
        }
        match e.downcast_ref::<Ended>() {
            Some(Ended::Cancelled) => JobError::Cancelled(e.to_string()),
            _ => JobError::Failed(format!("{e:#}")),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            JobError::Config(_) | JobError::InUse(_) => EXIT_USAGE,
            JobError::Rejected { .. } => EXIT_REJECTED,
            JobError::Verification(_) => EXIT_VERIFICATION,
            JobError::Failed(_) => EXIT_FAILED,
            JobError::Cancelled(_) => EXIT_CANCELLED,
        }
    }

    /// The report's `outcome` for a job that failed this way.
    pub fn outcome(&self) -> &'static str {
        match self {
            JobError::Config(_) | JobError::InUse(_) => "usage-error",
            JobError::Rejected { .. } => "rejected",
            JobError::Verification(_) => "verification-failed",
            JobError::Failed(_) => "failed",
            JobError::Cancelled(_) => "cancelled",
        }
    }
}

/// The report's `outcome` for a job that ran to its end with exit code `code`.
pub fn completed_outcome(code: u8, dry_run: bool) -> &'static str {
    match code {
        EXIT_SKIPPED_ROWS => "success-with-skipped-rows",
        EXIT_REJECTED => "dry-run-with-rejected-rows",
        _ if dry_run => "dry-run",
        _ => "success",
    }
}

/// The outcome of a job whose databases each succeeded or failed: every success, or else the
/// first failure that is not rejected rows, or else one error counting every rejected row of
/// every database (so one run reports them all). `label` names a database in the line printed
/// for each one with rejected rows.
pub fn gather<T>(outcomes: impl IntoIterator<Item = (String, Result<T, JobError>)>) -> Result<Vec<T>, JobError> {
    let mut done = Vec::new();
    let mut rejected: Option<JobError> = None;
    let mut failed: Option<JobError> = None;
    for (label, outcome) in outcomes {
        match outcome {
            Ok(t) => done.push(t),
            Err(JobError::Rejected { message, rejected_rows }) => {
                super::console::error(&format!("{label}: {rejected_rows} row(s) rejected"));
                rejected = Some(match rejected {
                    Some(JobError::Rejected { rejected_rows: before, .. }) => JobError::Rejected {
                        message: format!(
                            "{} row(s) cannot be migrated faithfully; nothing was committed",
                            before + rejected_rows
                        ),
                        rejected_rows: before + rejected_rows,
                    },
                    _ => JobError::Rejected { message, rejected_rows },
                });
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    match (failed, rejected) {
        (Some(e), _) | (None, Some(e)) => Err(e),
        (None, None) => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(n: u64) -> Result<(), JobError> {
        Err(JobError::Rejected { message: format!("{n} rejected"), rejected_rows: n })
    }

    #[test]
    fn rejected_rows_of_every_database_add_up_and_other_failures_come_first() {
        let all = gather([("a".into(), Ok(())), ("b".into(), rejected(2)), ("c".into(), rejected(3))]);
        match all.unwrap_err() {
            JobError::Rejected { message, rejected_rows } => {
                assert_eq!(rejected_rows, 5);
                assert_eq!(message, "5 row(s) cannot be migrated faithfully; nothing was committed");
            }
            other => panic!("{other:?}"),
        }
        let one = gather([("b".into(), rejected(2))]).unwrap_err();
        assert_eq!(one.to_string(), "2 rejected", "a single database keeps the component's message");
        let failed = gather([("a".into(), rejected(1)), ("b".into(), Err(JobError::Failed("lost".into())))]);
        assert_eq!(failed.unwrap_err().exit_code(), EXIT_FAILED);
        assert_eq!(gather([("a".into(), Ok(1)), ("b".into(), Ok(2))]).unwrap(), [1, 2]);
    }
}
