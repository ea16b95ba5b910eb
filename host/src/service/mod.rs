//! `blocklet-migrate serve`: many tenants' migrations as a service — an HTTP API in front of a
//! durable queue that several processes, on one machine or several, share.
//!
//! Every process can take HTTP requests, run jobs, or both. Jobs, their records and the
//! per-tenant bookkeeping live in NATS JetStream ([`queue`]), not in any process, so a process
//! can die, drain or restart and the queue goes on. Each process compiles the components it may
//! run once, on one pooled engine, and runs each job in its own store with its tenant's limits
//! through the same job API as the CLI ([`crate::job::run`]).
//!
//! | file | concern |
//! |---|---|
//! | this one | the process: config, engine and components, queue, API, worker, signals |
//! | `config.rs` | the configuration file: servers, components, tenants; tokens; data dir confinement |
//! | `record.rs` | a job's request, states and record |
//! | `queue.rs` | the queue, records, reservations, quotas and slots on JetStream |
//! | `api.rs` | the HTTP API, its errors and its OpenAPI document |
//! | `worker.rs` | taking jobs, leases, fencing, cancel, drain |
//! | `metrics.rs` | `/metrics` |

pub mod api;
pub mod config;
pub mod metrics;
pub mod queue;
pub mod record;
pub mod worker;

use crate::job::console;
use crate::sandbox::{BUNDLED_COMPONENT, Cancel, Runtime, pooled_engine};
use config::ServiceConfig;
use metrics::Metrics;
use queue::Queue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What every request handler and job of one process shares.
pub struct Service {
    pub config: ServiceConfig,
    pub queue: Arc<Queue>,
    /// Compiled components by sha256: the bundled one and every `[[component]]`.
    pub components: BTreeMap<String, Arc<Runtime>>,
    pub bundled_sha256: String,
    /// Names this process in job records and `/health`.
    pub worker_name: String,
    pub metrics: Metrics,
}

/// How this process takes part.
pub struct Role {
    /// Where the API listens; `None`: no API (a worker only).
    pub listen: Option<String>,
    /// Jobs this process runs at once; 0: no worker (an API only).
    pub jobs_at_once: usize,
    pub worker_name: String,
}

/// Run the service until SIGTERM or Ctrl-C, then drain; an error when it cannot start.
pub async fn serve(config: ServiceConfig, role: Role) -> Result<(), String> {
    let max_memory =
        config.tenants.iter().map(|t| t.limits().memory_bytes).max().unwrap_or(crate::sandbox::DEFAULT_MEMORY_LIMIT);
    // Each running job holds its planning instance plus the one migrating its database.
    let engine = pooled_engine((role.jobs_at_once.max(1) * 3 + 2) as u32, max_memory)
        .map_err(|e| format!("cannot start the wasm engine: {e:#}"))?;
    let mut components = BTreeMap::new();
    let bundled =
        Runtime::with_engine(&engine, BUNDLED_COMPONENT).map_err(|e| format!("the bundled component: {e:#}"))?;
    let bundled_sha256 = bundled.sha256().to_string();
    components.insert(bundled_sha256.clone(), Arc::new(bundled));
    for c in &config.components {
        let wasm = std::fs::read(&c.path).map_err(|e| format!("cannot read component {}: {e}", c.path.display()))?;
        let digest = config::sha256_hex(&wasm);
        if digest != c.sha256 {
            return Err(format!(
                "component {} has sha256 {digest}, not the {} the configuration pins",
                c.path.display(),
                c.sha256
            ));
        }
        let runtime =
            Runtime::with_engine(&engine, &wasm).map_err(|e| format!("component {}: {e:#}", c.path.display()))?;
        components.insert(digest, Arc::new(runtime));
    }
    let queue = Queue::connect(&config.nats_url, &config.queue, Duration::from_secs(config.lease_seconds))
        .await
        .map_err(|e| format!("{e:#}"))?;
    let service = Arc::new(Service {
        config,
        queue: Arc::new(queue),
        components,
        bundled_sha256,
        worker_name: role.worker_name.clone(),
        metrics: Metrics::default(),
    });
    let draining = Cancel::default();
    crate::job::signals::cancel_on_signals(draining.clone(), "draining: no new jobs are taken (again to stop at once)");
    let (stop_api, api_stopped) = tokio::sync::watch::channel(false);
    let api = match &role.listen {
        Some(listen) => {
            let listener =
                tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let address = listener.local_addr().map_err(|e| e.to_string())?;
            // The line a supervisor (or a test) waits for.
            println!("listening on http://{address}");
            let app = api::router(service.clone());
            let mut stopped = api_stopped.clone();
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
            }))
        }
        None => None,
    };
    console::info(&format!(
        "worker {} takes {} job(s) at once from queue {:?} on {}",
        role.worker_name, role.jobs_at_once, service.config.queue, service.config.nats_url
    ));
    if role.jobs_at_once > 0 {
        worker::run(service.clone(), role.jobs_at_once, draining.clone()).await;
    } else {
        draining.cancelled().await;
    }
    // The API stays up while jobs drain, so clients see them finish or go back to the queue.
    let _ = stop_api.send(true);
    if let Some(api) = api {
        let _ = tokio::time::timeout(Duration::from_secs(2), api).await;
    }
    let _ = service.queue.client.flush().await;
    console::info("stopped");
    Ok(())
}

/// A default worker name: host name and process id.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{}-{}", if host.is_empty() { "worker" } else { &host }, std::process::id())
}
