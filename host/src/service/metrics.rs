//! `/metrics`: the process's counters in the Prometheus text format (version 0.0.4), plus the
//! queue's depth as NATS reports it for every process sharing the queue.
//!
//! Counters are this process's since it started (Prometheus sums them across processes); the
//! queue gauges are the same for every process.

use super::record::JobState;
use crate::job::report::RunReport;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    /// Jobs this process runs now.
    pub running: AtomicU64,
    pub submitted: AtomicU64,
    rows: AtomicU64,
    ended: Mutex<BTreeMap<&'static str, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
    limits: Mutex<BTreeMap<&'static str, u64>>,
    refused: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    /// A job this process ran ended in `state` with `report`.
    pub fn job_ended(&self, state: JobState, report: &RunReport) {
        self.job_settled(state);
        if state == JobState::Succeeded {
            self.rows.fetch_add(report.target_rows(), Ordering::Relaxed);
        }
        if state == JobState::Failed {
            *self.failures.lock().unwrap().entry(report.outcome.clone()).or_default() += 1;
            if let Some(limit) = report.error.as_deref().and_then(limit_hit) {
                *self.limits.lock().unwrap().entry(limit).or_default() += 1;
            }
        }
    }

    /// A job reached `state` in this process.
    pub fn job_settled(&self, state: JobState) {
        *self.ended.lock().unwrap().entry(state.label()).or_default() += 1;
    }

    /// A request was refused with `status`.
    pub fn refused(&self, status: u16) {
        *self.refused.lock().unwrap().entry(status).or_default() += 1;
    }

    /// The text `/metrics` serves; `depth` is (waiting, handed to a worker) from the queue.
    pub fn render(&self, depth: Option<(u64, u64)>) -> String {
        let mut out = String::new();
        family(&mut out, "jobs_running", "gauge", "Jobs this process is running.");
        let _ = writeln!(out, "blocklet_migrate_jobs_running {}", self.running.load(Ordering::Relaxed));
        family(&mut out, "jobs_submitted_total", "counter", "Jobs accepted by this process's API.");
        let _ = writeln!(out, "blocklet_migrate_jobs_submitted_total {}", self.submitted.load(Ordering::Relaxed));
        family(&mut out, "jobs_ended_total", "counter", "Jobs this process settled, by final state.");
        for state in [JobState::Succeeded, JobState::Failed, JobState::Cancelled] {
            let n = self.ended.lock().unwrap().get(state.label()).copied().unwrap_or(0);
            let _ = writeln!(out, "blocklet_migrate_jobs_ended_total{{state=\"{}\"}} {n}", state.label());
        }
        family(&mut out, "rows_migrated_total", "counter", "Rows in the targets of jobs this process completed.");
        let _ = writeln!(out, "blocklet_migrate_rows_migrated_total {}", self.rows.load(Ordering::Relaxed));
        family(&mut out, "job_failures_total", "counter", "Failed jobs, by the report's outcome.");
        for (kind, n) in self.failures.lock().unwrap().iter() {
            let _ = writeln!(out, "blocklet_migrate_job_failures_total{{kind=\"{}\"}} {n}", label_value(kind));
        }
        family(&mut out, "sandbox_limits_hit_total", "counter", "Jobs ended by a sandbox limit, by limit.");
        for limit in ["cpu", "memory", "time", "stall"] {
            let n = self.limits.lock().unwrap().get(limit).copied().unwrap_or(0);
            let _ = writeln!(out, "blocklet_migrate_sandbox_limits_hit_total{{limit=\"{limit}\"}} {n}");
        }
        family(&mut out, "requests_refused_total", "counter", "API requests refused, by HTTP status.");
        for (status, n) in self.refused.lock().unwrap().iter() {
            let _ = writeln!(out, "blocklet_migrate_requests_refused_total{{status=\"{status}\"}} {n}");
        }
        if let Some((waiting, taken)) = depth {
            family(
                &mut out,
                "queue_depth",
                "gauge",
                "Jobs in the shared queue: waiting for a worker, or taken by one.",
            );
            let _ = writeln!(out, "blocklet_migrate_queue_depth{{state=\"waiting\"}} {waiting}");
            let _ = writeln!(out, "blocklet_migrate_queue_depth{{state=\"taken\"}} {taken}");
        }
        out
    }
}

/// A family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP blocklet_migrate_{name} {help}\n# TYPE blocklet_migrate_{name} {kind}");
}

/// Which sandbox limit a job's error names, if any.
fn limit_hit(error: &str) -> Option<&'static str> {
    [("--cpu-limit", "cpu"), ("--memory-limit", "memory"), ("--timeout", "time"), ("--stall-limit", "stall")]
        .into_iter()
        .find(|(flag, _)| error.contains(flag))
        .map(|(_, limit)| limit)
}

/// A label value with `\`, `"` and newlines escaped.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_lists_every_family_with_its_type() {
        let m = Metrics::default();
        let mut report = RunReport::new();
        report.outcome = "failed".into();
        report.error = Some("the migration component exceeded its CPU limit: 2 s … (--cpu-limit)".into());
        m.job_ended(JobState::Failed, &report);
        m.refused(403);
        let text = m.render(Some((3, 1)));
        for line in [
            "# TYPE blocklet_migrate_jobs_ended_total counter",
            "blocklet_migrate_jobs_ended_total{state=\"failed\"} 1",
            "blocklet_migrate_job_failures_total{kind=\"failed\"} 1",
            "blocklet_migrate_sandbox_limits_hit_total{limit=\"cpu\"} 1",
            "blocklet_migrate_sandbox_limits_hit_total{limit=\"memory\"} 0",
            "blocklet_migrate_requests_refused_total{status=\"403\"} 1",
            "blocklet_migrate_queue_depth{state=\"waiting\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
