//! The durable queue, on NATS JetStream: every `serve` process, on one machine or many, connects
//! to the same server and shares one queue.
//!
//! - A work-queue stream holds one message per job to run; one durable pull consumer, shared by
//!   every worker, hands each message to one worker at a time. Its ack wait is the lease: a
//!   worker renews it while the job runs (`+WPI`), and a message whose worker died goes to
//!   another worker when it runs out.
//! - Key-value buckets hold the job records (`jobs`, key `tenant.id`; every change is a
//!   compare-and-set on the revision it read, so two processes never both win a transition),
//!   which job holds which data dir (`targets`), submissions per tenant and hour (`quota`), and
//!   each tenant's running slots (`slots`, renewed with the lease and expiring with it).
//! - Plain subjects carry what needs no storage: progress events (`…progress.ID`) and cancel
//!   requests (`…cancel.ID`) for whichever process streams or runs the job.

use super::record::JobRecord;
use anyhow::{Context, Result, anyhow};
use async_nats::jetstream::{self, consumer::PullConsumer, kv, stream};
use bytes::Bytes;
use std::time::Duration;

pub struct Queue {
    pub client: async_nats::Client,
    prefix: String,
    js: jetstream::Context,
    consumer: PullConsumer,
    jobs: kv::Store,
    targets: kv::Store,
    quota: kv::Store,
    slots: kv::Store,
}

/// A job record with the revision it was read at.
pub type Versioned = (JobRecord, u64);

impl Queue {
    /// Connect and create the stream, consumer and buckets if this is the first process.
    pub async fn connect(url: &str, prefix: &str, lease: Duration) -> Result<Queue> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("blocklet-migrate {}", std::process::id()))
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to NATS at {url}"))?;
        let js = jetstream::new(client.clone());
        let stream = js
            .get_or_create_stream(stream::Config {
                name: format!("{prefix}_queue"),
                subjects: vec![format!("{prefix}.queue")],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("cannot create the queue stream on {url} (is JetStream enabled?): {e}"))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                "workers",
                jetstream::consumer::pull::Config {
                    durable_name: Some("workers".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: lease,
                    // Attempts are counted in the job record, not by redelivery: a job waiting
                    // for its tenant's slot is handed back without spending one.
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow!("cannot create the queue's consumer: {e}"))?;
        let mut stores = Vec::new();
        for (name, max_age) in [
            ("jobs", Duration::ZERO),
            ("targets", Duration::ZERO),
            ("quota", Duration::from_secs(2 * 3600)),
            ("slots", lease * 3),
        ] {
            let bucket = format!("{prefix}_{name}");
            // The bucket's stream as a key-value bucket is laid out (what `create_key_value`
            // makes), created directly: `create_key_value` first asks for the account's limits,
            // whose answer from a 2.9 server this client cannot read.
            js.get_or_create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age,
                storage: stream::StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("cannot create the {name} bucket: {e}"))?;
            let store = js.get_key_value(&bucket).await.map_err(|e| anyhow!("cannot open the {name} bucket: {e}"))?;
            stores.push(store);
        }
        let [jobs, targets, quota, slots]: [kv::Store; 4] = stores.try_into().map_err(|_| anyhow!("four buckets"))?;
        Ok(Queue { client, prefix: prefix.into(), js, consumer, jobs, targets, quota, slots })
    }

    pub fn progress_subject(&self, id: &str) -> String {
        format!("{}.progress.{id}", self.prefix)
    }

    pub fn cancel_subject(&self, id: &str) -> String {
        format!("{}.cancel.{id}", self.prefix)
    }

    /// Store a new record and queue it.
    pub async fn submit(&self, record: &JobRecord) -> Result<()> {
        let key = job_key(&record.tenant, &record.id);
        self.jobs.create(&key, Bytes::from(serde_json::to_vec(record)?)).await.context("cannot store the job")?;
        self.js
            .publish(format!("{}.queue", self.prefix), Bytes::from(key))
            .await
            .context("cannot queue the job")?
            .await
            .context("the queue did not confirm the job")?;
        Ok(())
    }

    pub async fn record(&self, key: &str) -> Result<Option<Versioned>> {
        let Some(entry) = self.jobs.entry(key).await.context("cannot read the job")? else {
            return Ok(None);
        };
        if entry.value.is_empty() {
            return Ok(None);
        }
        let record: JobRecord = serde_json::from_slice(&entry.value).context("a job record that does not parse")?;
        Ok(Some((record, entry.revision)))
    }

    /// Change a record with `change`, which sees the latest revision and may refuse; retried
    /// when another process changed it in between. `None`: no such job.
    pub async fn update<T>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut JobRecord) -> Result<T, String>,
    ) -> Result<Option<Result<(JobRecord, T), String>>> {
        for _ in 0..50 {
            let Some((mut record, revision)) = self.record(key).await? else { return Ok(None) };
            let out = match change(&mut record) {
                Ok(out) => out,
                Err(refused) => return Ok(Some(Err(refused))),
            };
            match self.jobs.update(key, Bytes::from(serde_json::to_vec(&record)?), revision).await {
                Ok(_) => return Ok(Some(Ok((record, out)))),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        Err(anyhow!("the job record kept changing under this process"))
    }

    /// Every record of `tenant`, newest first.
    pub async fn list(&self, tenant: &str) -> Result<Vec<JobRecord>> {
        use futures_util::TryStreamExt;
        let prefix = format!("{tenant}.");
        let keys: Vec<String> = self.jobs.keys().await?.try_collect().await?;
        let mut records = Vec::new();
        for key in keys.iter().filter(|k| k.starts_with(&prefix)) {
            if let Some((record, _)) = self.record(key).await? {
                records.push(record);
            }
        }
        records.sort_by(|a, b| b.submitted_at.cmp(&a.submitted_at));
        Ok(records)
    }

    /// Reserve `target` for job `key`. `Err(holder)`: the key of the unfinished job that holds it.
    pub async fn reserve(&self, target: &str, key: &str) -> Result<Result<(), String>> {
        for _ in 0..10 {
            match self.targets.create(target, Bytes::from(key.to_string())).await {
                Ok(_) => return Ok(Ok(())),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(anyhow!("cannot reserve the data dir: {e}")),
            }
            let Some(entry) = self.targets.entry(target).await? else { continue };
            let holder = String::from_utf8_lossy(&entry.value).to_string();
            // A holder that ended without letting go (its process died in between) holds nothing.
            match self.record(&holder).await? {
                Some((record, _)) if !record.state.is_final() => return Ok(Err(holder)),
                _ => {
                    if self.targets.update(target, Bytes::from(key.to_string()), entry.revision).await.is_ok() {
                        return Ok(Ok(()));
                    }
                }
            }
        }
        Err(anyhow!("the data dir's reservation kept changing"))
    }

    /// Let go of those of `reservations` that job `key` holds.
    pub async fn release(&self, reservations: &[String], key: &str) -> Result<()> {
        for target in reservations {
            if let Some(entry) = self.targets.entry(target).await?
                && entry.value == key.as_bytes()
            {
                let _ = self.targets.delete_expect_revision(target, Some(entry.revision)).await;
            }
        }
        Ok(())
    }

    /// Count one submission of `tenant` this hour; false when it already made `limit`.
    pub async fn count_submission(&self, tenant: &str, limit: u32) -> Result<bool> {
        let key = format!("{tenant}.{}", chrono::Utc::now().format("%Y%m%d%H"));
        for _ in 0..50 {
            match self.quota.entry(&key).await? {
                None => match self.quota.create(&key, Bytes::from_static(b"1")).await {
                    Ok(_) => return Ok(limit >= 1),
                    Err(_) => continue,
                },
                Some(entry) => {
                    let used: u32 = std::str::from_utf8(&entry.value).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                    if used >= limit {
                        return Ok(false);
                    }
                    let next = Bytes::from((used + 1).to_string());
                    if self.quota.update(&key, next, entry.revision).await.is_ok() {
                        return Ok(true);
                    }
                }
            }
        }
        Err(anyhow!("the quota counter kept changing"))
    }

    /// Take one of `tenant`'s `slots` running slots for job `key` (or renew the one it holds).
    pub async fn take_slot(&self, tenant: &str, slots: u32, key: &str) -> Result<Option<String>> {
        for i in 0..slots {
            let slot = format!("{tenant}.{i}");
            match self.slots.entry(&slot).await? {
                Some(entry) if entry.value == key.as_bytes() => {
                    self.slots.put(&slot, Bytes::from(key.to_string())).await?;
                    return Ok(Some(slot));
                }
                Some(entry) if !entry.value.is_empty() => continue,
                // Free (never taken, released or expired): `create` is a compare-and-set, so
                // of two workers racing for it one wins.
                _ => {
                    if self.slots.create(&slot, Bytes::from(key.to_string())).await.is_ok() {
                        return Ok(Some(slot));
                    }
                }
            }
        }
        Ok(None)
    }

    pub async fn renew_slot(&self, slot: &str, key: &str) -> Result<()> {
        self.slots.put(slot, Bytes::from(key.to_string())).await?;
        Ok(())
    }

    pub async fn release_slot(&self, slot: &str, key: &str) -> Result<()> {
        if let Some(entry) = self.slots.entry(slot).await?
            && entry.value == key.as_bytes()
        {
            let _ = self.slots.delete_expect_revision(slot, Some(entry.revision)).await;
        }
        Ok(())
    }

    /// The next queued job for a worker, waiting up to `wait`.
    pub async fn next(&self, wait: Duration) -> Result<Option<jetstream::Message>> {
        use futures_util::StreamExt;
        let mut batch =
            self.consumer.fetch().max_messages(1).expires(wait).messages().await.map_err(|e| anyhow!("{e}"))?;
        match batch.next().await {
            Some(Ok(message)) => Ok(Some(message)),
            Some(Err(e)) => Err(anyhow!("{e}")),
            None => Ok(None),
        }
    }

    /// Jobs waiting for a worker, and jobs handed to one and not yet done.
    pub async fn depth(&self) -> Result<(u64, u64)> {
        let mut consumer = self.consumer.clone();
        let info = consumer.info().await.map_err(|e| anyhow!("{e}"))?;
        Ok((info.num_pending, info.num_ack_pending as u64))
    }
}

/// A job's key in the jobs bucket: its tenant first, so a tenant's jobs list by prefix and a
/// tenant can name no other tenant's job.
pub fn job_key(tenant: &str, id: &str) -> String {
    format!("{tenant}.{id}")
}
