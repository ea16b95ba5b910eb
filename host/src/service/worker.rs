//! The worker: takes jobs off the shared queue and runs each through the job API, up to the
//! process's `jobs_at_once`, every job in its own store with its tenant's limits on the
//! process's one pooled engine.
//!
//! A job is run only while its worker holds the lease (renewed every third of it) and one of
//! its tenant's running slots. The record's attempt number is the fencing token: before a job
//! commits, before a failed attempt drops what it created, and when it records the job's end,
//! the worker checks that the record still names its attempt; a worker that lost its lease to
//! another finds a newer attempt there and leaves all of that to it. Each attempt's sessions
//! carry its own name, and the next attempt ends the earlier ones' first. The attempt after one
//! that may have committed runs with `force`, which replaces the plan's tables instead of
//! refusing them (a target the first attempt admitted holds nothing but those), so a job run
//! twice never doubles a row and never leaves a target half-filled: an attempt that died before
//! its commit left only rolled-back transactions behind.
//!
//! On SIGTERM the worker stops taking jobs, lets running ones finish for `drain_seconds`, then
//! cancels the rest (each removes what it created) and hands them back to the queue.

use super::Service;
use super::config::Tenant;
use super::record::{JobDirection, JobRecord, JobState};
use crate::job::progress::ProgressSink;
use crate::job::report::RunReport;
use crate::job::{ComponentChoice, Irreversible, JobOptions, JobSpec, OutputOptions, console, outcome};
use crate::sandbox::{Cancel, Direction};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Take and run jobs until `draining` is set, then drain.
pub async fn run(service: Arc<Service>, jobs_at_once: usize, draining: Cancel) {
    let permits = Arc::new(Semaphore::new(jobs_at_once.max(1)));
    let handback = Cancel::default();
    let mut running = tokio::task::JoinSet::new();
    loop {
        if draining.is_cancelled() {
            break;
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("never closed"),
            _ = draining.cancelled() => break,
        };
        let next = tokio::select! {
            m = service.queue.next(Duration::from_secs(1)) => m,
            _ = draining.cancelled() => break,
        };
        match next {
            Ok(Some(message)) => {
                let (service, handback) = (service.clone(), handback.clone());
                running.spawn(async move {
                    take(&service, message, &handback).await;
                    drop(permit);
                });
            }
            Ok(None) => {}
            Err(e) => {
                console::warn(&format!("the queue: {e:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        while running.try_join_next().is_some() {}
    }
    if running.is_empty() {
        return;
    }
    let grace = Duration::from_secs(service.config.drain_seconds);
    console::info(&format!(
        "draining: {} running job(s) may finish within {} s; no new jobs are taken",
        running.len(),
        grace.as_secs()
    ));
    let finished = tokio::time::timeout(grace, async { while running.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        console::info(&format!("handing {} unfinished job(s) back to the queue", running.len()));
        handback.cancel();
        while running.join_next().await.is_some() {}
    }
}

/// One message from the queue: run its job, or hand it back, or settle it.
async fn take(service: &Service, message: jetstream::Message, handback: &Cancel) {
    let key = String::from_utf8_lossy(&message.payload).to_string();
    match attempt(service, &key, &message, handback).await {
        Ok(Taken::Settled) => {
            let _ = message.double_ack().await;
        }
        Ok(Taken::Later(delay)) => {
            let _ = message.ack_with(AckKind::Nak(delay)).await;
        }
        Ok(Taken::Superseded) => {
            console::warn(&format!("job {key}: a later attempt took this job over; this attempt's outcome is dropped"));
        }
        Err(e) => {
            // The queue itself failed (NATS unreachable): the lease runs out and the job is
            // taken again.
            console::error(&format!("job {key}: {e:#}"));
        }
    }
}

enum Taken {
    /// The job reached a final state (or had one already): the message is done.
    Settled,
    /// Not now (the tenant's slots are taken, or this worker is draining): again after the delay.
    Later(Option<Duration>),
    /// Another attempt has taken the job over since this delivery: its worker owns the message
    /// now, so this one is left alone.
    Superseded,
}

fn settled(done: bool) -> anyhow::Result<Taken> {
    Ok(if done { Taken::Settled } else { Taken::Superseded })
}

async fn attempt(
    service: &Service,
    key: &str,
    message: &jetstream::Message,
    handback: &Cancel,
) -> anyhow::Result<Taken> {
    let queue = &service.queue;
    let Some((record, _)) = queue.record(key).await? else { return Ok(Taken::Settled) };
    if record.state.is_final() {
        return Ok(Taken::Settled);
    }
    let Some(tenant) = service.config.tenant(&record.tenant) else {
        let why = "the job's tenant is no longer configured";
        return settled(settle(service, key, &record, JobState::Failed, None, Some(why)).await?);
    };
    if record.cancel_requested {
        let why = "cancelled before it started";
        return settled(settle(service, key, &record, JobState::Cancelled, None, Some(why)).await?);
    }
    if record.attempts >= service.config.max_attempts {
        let why = format!("its worker was lost {} time(s); no attempts are left", record.attempts);
        return settled(settle(service, key, &record, JobState::Failed, None, Some(&why)).await?);
    }
    let Some(slot) = queue.take_slot(&tenant.name, tenant.jobs_at_once, key).await? else {
        return Ok(Taken::Later(Some(Duration::from_millis(500))));
    };
    let started = queue
        .update(key, |r| {
            if r.state.is_final() || r.cancel_requested {
                return Err("ended or cancelled meanwhile".to_string());
            }
            r.state = JobState::Running;
            r.attempts += 1;
            r.worker = Some(service.worker_name.clone());
            r.started_at = Some(crate::job::report::now());
            Ok(r.attempts)
        })
        .await?;
    let (record, my_attempt) = match started {
        Some(Ok(started)) => started,
        _ => {
            queue.release_slot(&slot, key).await?;
            return Ok(Taken::Later(None));
        }
    };
    if record.attempts > 1 {
        console::info(&format!("job {}: attempt {} (an earlier worker was lost)", record.id, record.attempts));
    }
    service.metrics.running.fetch_add(1, Ordering::Relaxed);
    let ran = run_attempt(service, key, &record, tenant, my_attempt, message, &slot, handback).await;
    service.metrics.running.fetch_sub(1, Ordering::Relaxed);
    queue.release_slot(&slot, key).await?;
    match ran {
        Attempt::HandedBack(delay) => {
            let handed_back = queue
                .update(key, |r| {
                    if r.attempts != my_attempt || r.worker != record.worker {
                        return Err("superseded".to_string());
                    }
                    r.state = JobState::Queued;
                    r.attempts = r.attempts.saturating_sub(1);
                    r.worker = None;
                    Ok(())
                })
                .await?;
            if !matches!(handed_back, Some(Ok(_))) {
                return Ok(Taken::Superseded);
            }
            publish_state(service, &record.id, "job-handed-back", JobState::Queued).await;
            Ok(Taken::Later(delay))
        }
        Attempt::Ended { state, report, error } => {
            let error = report.as_ref().map_or(error, |r| r.error.clone());
            settled(settle(service, key, &record, state, report.as_deref(), error.as_deref()).await?)
        }
    }
}

enum Attempt {
    /// Back to the queue without spending an attempt, to be taken again after the delay.
    HandedBack(Option<Duration>),
    Ended {
        state: JobState,
        /// The job's report, when the job ran; else why it could not.
        report: Option<Box<RunReport>>,
        error: Option<String>,
    },
}

#[allow(clippy::too_many_arguments)]
async fn run_attempt(
    service: &Service,
    key: &str,
    record: &JobRecord,
    tenant: &Tenant,
    my_attempt: u32,
    message: &jetstream::Message,
    slot: &str,
    handback: &Cancel,
) -> Attempt {
    let refused = |e: String| Attempt::Ended { state: JobState::Failed, report: None, error: Some(e) };
    // Resolved at submission; the job checks it (and every file it opens) against the
    // tenant's root again, as the file system is now (`confine_to`).
    let data_dir = std::path::PathBuf::from(&record.data_dir);
    let Some(server) = service.config.server(&record.request.server) else {
        return refused(format!("no server is named {:?} any more", record.request.server));
    };
    let Some(runtime) = service.components.get(&record.component_sha256) else {
        return refused("this worker does not have the job's component".into());
    };
    let queue = &service.queue;
    let cancel = Cancel::default();
    let mut cancel_requests = match queue.client.subscribe(queue.cancel_subject(&record.id)).await {
        Ok(s) => s,
        Err(e) => return refused(format!("cannot listen for cancel requests: {e}")),
    };
    // A cancel sent before the subscription is in the record.
    if let Ok(Some((latest, _))) = queue.record(key).await
        && latest.cancel_requested
    {
        cancel.cancel();
    }
    let (events, mut outbox) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let forward = {
        let (client, subject) = (queue.client.clone(), queue.progress_subject(&record.id));
        tokio::spawn(async move {
            while let Some(event) = outbox.recv().await {
                let _ = client.publish(subject.clone(), event.into()).await;
            }
            let _ = client.flush().await;
        })
    };
    let sink = ProgressSink(Arc::new(move |event| {
        if let Ok(json) = serde_json::to_vec(event) {
            // A slow network drops events rather than slowing the job.
            let _ = events.try_send(json);
        }
    }));
    let gate = {
        let (queue_key, worker, shared_queue) = (key.to_string(), service.worker_name.clone(), service.queue.clone());
        let gate: crate::job::StepGate = Box::new(move |step| {
            let (key, worker, queue) = (queue_key.clone(), worker.clone(), shared_queue.clone());
            Box::pin(async move {
                let marked = queue
                    .update(&key, |r| {
                        if r.attempts != my_attempt || r.worker.as_deref() != Some(worker.as_str()) {
                            return Err("a later attempt has taken this job over".to_string());
                        }
                        if step == Irreversible::Commit {
                            if r.cancel_requested {
                                return Err("the job was cancelled".to_string());
                            }
                            r.may_have_committed = true;
                        }
                        Ok(())
                    })
                    .await
                    .map_err(|e| format!("cannot reach the queue: {e:#}"))?;
                match marked {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(refused)) => Err(refused),
                    None => Err("the job's record is gone".into()),
                }
            })
        });
        gate
    };
    let direction = match record.request.direction {
        JobDirection::ToPostgres => Direction::ToPostgres,
        JobDirection::ToSqlite => Direction::ToSqlite,
    };
    let options = JobOptions {
        force: record.request.force || record.may_have_committed,
        skip_rejects: record.request.skip_rejects,
        // One database at a time: the jobs are the parallelism.
        parallel: 1,
        databases: tenant.databases.clone(),
        confine_to: Some(tenant.data_root.clone()),
        session_tag: Some(session_tag(&record.id, my_attempt)),
        end_sessions_of: (1..my_attempt).map(|earlier| session_tag(&record.id, earlier)).collect(),
        ..JobOptions::default()
    };
    let (runtime, url, limits, job_cancel) = (runtime.clone(), server.url.clone(), tenant.limits(), cancel.clone());
    let source = format!("service component {}", record.component_sha256);
    let label = format!("{}/{}", record.tenant, &record.id[..8]);
    // A job drives its databases from threads it blocks on (`job::schedule`), so it gets a
    // thread of its own: the process's runtime workers stay free for the API, the queue, and
    // this task's lease renewals.
    let on_runtime = tokio::runtime::Handle::current();
    let job = tokio::task::spawn_blocking(move || {
        let spec = JobSpec {
            direction: Ok(direction),
            data_dir: Some(data_dir),
            postgres_url: url,
            options,
            component: ComponentChoice::Compiled {
                runtime: &runtime,
                source,
                signature: "pinned by sha256 in the service configuration".into(),
            },
            limits,
            output: OutputOptions {
                quiet: true,
                shares_terminal: true,
                progress_sink: Some(sink),
                ..Default::default()
            },
            cancel: job_cancel,
            gate: Some(gate),
        };
        on_runtime.block_on(console::JOB_NAME.scope(label, crate::job::run(spec)))
    });
    tokio::pin!(job);
    let mut renew = tokio::time::interval(Duration::from_secs(service.config.lease_seconds).div_f64(3.0));
    renew.tick().await;
    let mut handed_back = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut job => break outcome,
            _ = renew.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
                let _ = queue.renew_slot(slot, key).await;
            }
            Some(_) = cancel_requests.next() => cancel.cancel(),
            _ = handback.cancelled(), if !handed_back && !cancel.is_cancelled() => {
                handed_back = true;
                cancel.cancel();
            }
        }
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return refused(format!("the job's thread failed: {e}")),
    };
    let _ = cancel_requests.unsubscribe().await;
    let _ = forward.await;
    if handed_back && outcome.exit_code == outcome::EXIT_CANCELLED {
        return Attempt::HandedBack(None);
    }
    if outcome.source_in_use && my_attempt > 1 {
        // Most likely the earlier attempt's worker, stalled rather than dead, still has the
        // files open: try again after a lease, without spending an attempt.
        console::info(&format!("job {}: a source file is still open elsewhere; trying again later", record.id));
        return Attempt::HandedBack(Some(Duration::from_secs(service.config.lease_seconds)));
    }
    let state = match outcome.exit_code {
        outcome::EXIT_SUCCESS | outcome::EXIT_SKIPPED_ROWS => JobState::Succeeded,
        outcome::EXIT_CANCELLED => JobState::Cancelled,
        _ => JobState::Failed,
    };
    let mut report = outcome.report;
    // The report names the server as the tenant knows it: its URL is the provider's secret.
    report.postgres = Some(server.name.clone());
    Attempt::Ended { state, report: Some(Box::new(report)), error: None }
}

/// The `application_name` of attempt `attempt` of job `id`'s PostgreSQL sessions.
fn session_tag(id: &str, attempt: u32) -> String {
    format!("blocklet-migrate job {id}/{attempt}")
}

/// Give a job its final state, release its reservations, and tell whoever streams it; false
/// (and nothing changed) when the record moved on since `record` was read: another attempt
/// has taken the job over, or it already ended.
async fn settle(
    service: &Service,
    key: &str,
    record: &JobRecord,
    state: JobState,
    report: Option<&RunReport>,
    error: Option<&str>,
) -> anyhow::Result<bool> {
    let json = report.and_then(|r| serde_json::to_value(r).ok());
    let settled = service
        .queue
        .update(key, |r| {
            if r.attempts != record.attempts || r.worker != record.worker || r.state.is_final() {
                return Err("superseded".to_string());
            }
            r.state = state;
            r.finished_at = Some(crate::job::report::now());
            r.error = error.map(String::from);
            r.report = json.clone();
            r.rows_migrated = match report {
                Some(report) if state == JobState::Succeeded => report.target_rows(),
                _ => 0,
            };
            r.outcome = Some(report.map_or(state.label(), |r| r.outcome.as_str()).to_string());
            r.exit_code = report.map(|r| r.exit_code);
            Ok(())
        })
        .await?;
    if !matches!(settled, Some(Ok(_))) {
        return Ok(false);
    }
    match report {
        Some(report) => service.metrics.job_ended(state, report),
        None => service.metrics.job_settled(state),
    }
    service.queue.release(&record.reservations, key).await?;
    publish_state(service, &record.id, "job-finished", state).await;
    Ok(true)
}

/// A state change as an event on the job's progress subject.
pub async fn publish_state(service: &Service, id: &str, event: &str, state: JobState) {
    let body = serde_json::json!({ "event": event, "state": state.label() });
    let _ = service.queue.client.publish(service.queue.progress_subject(id), body.to_string().into()).await;
    let _ = service.queue.client.flush().await;
}
