//! What a job is to the service and its clients: the request a tenant submits, the states a job
//! goes through, and the record kept for it in the queue's job bucket (the API's response body).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which way a job migrates.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobDirection {
    /// The data dir's SQLite files into PostgreSQL databases.
    ToPostgres,
    /// PostgreSQL databases back into the data dir's SQLite files.
    ToSqlite,
}

/// A job as a tenant submits it.
#[derive(Serialize, Deserialize, Clone, Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub direction: JobDirection,
    /// The data dir (or the directory holding it), relative to the tenant's directory, or
    /// absolute inside it.
    pub data_dir: String,
    /// The name of a PostgreSQL server the tenant may use.
    pub server: String,
    /// `bundled` (the default) or the sha256 of a component the tenant may run.
    #[serde(default)]
    pub component: Option<String>,
    /// Replace the plan's tables in targets that already hold rows.
    #[serde(default)]
    pub force: bool,
    /// Commit without the rows that cannot be migrated faithfully.
    #[serde(default)]
    pub skip_rejects: bool,
}

/// Where a job is.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Waiting for a worker (also after a draining worker handed it back).
    Queued,
    /// A worker runs it (or ran it and died: then another takes it once the lease runs out).
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }

    pub fn label(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// Everything the service knows about a job.
#[derive(Serialize, Deserialize, Clone, Debug, ToSchema)]
pub struct JobRecord {
    pub id: String,
    pub tenant: String,
    pub state: JobState,
    pub request: JobRequest,
    /// The data dir as resolved at submission (symlinks followed).
    pub data_dir: String,
    /// The sha256 of the component that runs the job.
    pub component_sha256: String,
    pub submitted_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Attempts started so far; more than one when a worker died or drained.
    pub attempts: u32,
    /// The worker running (or that last ran) the job.
    pub worker: Option<String>,
    pub cancel_requested: bool,
    /// An attempt reached its commit: the next attempt replaces whatever it may have committed.
    pub may_have_committed: bool,
    /// The job's exit code, as the CLI would have returned it.
    pub exit_code: Option<u8>,
    /// The report's outcome (`success`, `failed`, `cancelled`, …).
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// Rows in the targets, counted by the host, when the job succeeded.
    pub rows_migrated: u64,
    /// The job's JSON report (as `--report` writes it), once it ended.
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    /// The reservations that keep a second job off the same data dir (its top directory under
    /// the tenant's root) and the same server while this one is unfinished.
    #[serde(default)]
    pub reservations: Vec<String>,
}

/// A new random job id: 128 bits in hex.
pub fn new_job_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A job id as the service makes them; anything else cannot name a job.
pub fn is_job_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
