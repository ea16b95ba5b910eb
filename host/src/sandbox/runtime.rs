//! A compiled component, linked and ready to instantiate: one per component file, shared by
//! every job (and every database of a job) that runs it.

use super::component_cache;
use super::conventions::Conventions;
use super::engine;
use super::instance::Instance;
use super::limits::{CpuMeter, Limits, MemoryCap};
use super::state::HostState;
use super::version::{HOST_WIT_VERSION, check_wit_version};
use super::watch::JobClock;
use crate::capability::{self, EventSink};
use crate::wit::exports::blocklet::migrate::{accounting, conventions, migrator};
use anyhow::{Context, anyhow};
use std::sync::{Arc, OnceLock};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

/// The component built from `guest/` and embedded at build time.
pub static BUNDLED_COMPONENT: &[u8] = include_bytes!(env!("BLOCKLET_MIGRATE_GUEST_WASM"));

/// A compiled component ready to instantiate, shareable across jobs.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    component: Component,
    sha256: String,
    /// The component's conventions, asked once, by the first instance.
    conventions: OnceLock<Arc<Conventions>>,
}

impl Runtime {
    /// Compile `component` (a wasm component binary) with a fresh engine and link the
    /// host's imports. Compiled code is cached on disk (see [`component_cache`]).
    pub fn new(component: &[u8]) -> anyhow::Result<Runtime> {
        Self::with_engine(&engine::engine()?, component)
    }

    /// Like [`Runtime::new`], sharing an existing engine (one per process when hosting many jobs).
    pub fn with_engine(engine: &Engine, component: &[u8]) -> anyhow::Result<Runtime> {
        let cache = component_cache::default_cache_dir();
        let (compiled, _outcome) = component_cache::load_component(engine, component, cache.as_deref())
            .context("the migration component is not a valid wasm component")?;
        let exports: Vec<String> =
            compiled.component_type().exports(engine).map(|(name, _)| name.to_string()).collect();
        check_wit_version(&exports)?;
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("{e}"))?;
        capability::database::add_to_linker(&mut linker).map_err(|e| anyhow!("{e}"))?;
        capability::events::add_to_linker(&mut linker).map_err(|e| anyhow!("{e}"))?;
        Ok(Runtime {
            engine: engine.clone(),
            linker,
            component: compiled,
            sha256: component_cache::component_sha256(component),
            conventions: OnceLock::new(),
        })
    }

    /// The sha256 of the component's bytes, as `component info` and the report show it.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// A fresh sandboxed instance for one job (or one database of a job), its limits in force,
    /// every call raced against the job's `clock`, and its conventions known.
    pub async fn instantiate(
        &self,
        events: Box<dyn EventSink>,
        limits: Limits,
        clock: JobClock,
    ) -> anyhow::Result<Instance> {
        let state = HostState::new(events, MemoryCap::new(limits.memory_bytes), CpuMeter::new(limits.cpu_seconds));
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            if s.cpu.tick(s.database.calls()) {
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yield so that other jobs on the same threads make progress too.
            Ok(UpdateDeadline::Yield(1))
        });
        let (migrator, conventions, accounting) = async {
            let pre = self.linker.instantiate_pre(&self.component)?;
            let migrator = migrator::GuestIndices::new(&pre)?;
            // Components built before 1.3 export neither the conventions nor the accounting.
            let conventions_export = format!("blocklet:migrate/conventions@{HOST_WIT_VERSION}");
            let conventions = match pre.component().get_export_index(None, &conventions_export) {
                Some(_) => Some(conventions::GuestIndices::new(&pre)?),
                None => None,
            };
            let accounting_export = format!("blocklet:migrate/accounting@{HOST_WIT_VERSION}");
            let accounting = match pre.component().get_export_index(None, &accounting_export) {
                Some(_) => Some(accounting::GuestIndices::new(&pre)?),
                None => None,
            };
            let instance = pre.instantiate_async(&mut store).await?;
            let migrator = migrator.load(&mut store, &instance)?;
            let conventions = conventions.map(|c| c.load(&mut store, &instance)).transpose()?;
            let accounting = accounting.map(|a| a.load(&mut store, &instance)).transpose()?;
            Ok::<_, wasmtime::Error>((migrator, conventions, accounting))
        }
        .await
        .map_err(|e| anyhow!("{e}"))
        .context("cannot instantiate the migration component (was it built for this WIT version?)")?;
        let mut instance = Instance::new(store, migrator, limits, clock);
        instance.set_accounting(accounting);
        let conventions = match self.conventions.get() {
            Some(known) => known.clone(),
            None => {
                let asked = match conventions {
                    Some(export) => {
                        Conventions::from_component(instance.conventions_of(&export).await?).map_err(|e| anyhow!(e))?
                    }
                    None => Conventions::blocklet_server_1_17(),
                };
                self.conventions.get_or_init(|| Arc::new(asked)).clone()
            }
        };
        instance.set_conventions(conventions);
        Ok(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component update must run on hosts already installed: the bundled component may use
    /// no wasm feature beyond what wasmtime enables by default (wide arithmetic, for one, would
    /// make it fail to load on every host released without it).
    #[test]
    fn the_bundled_component_needs_only_default_wasm_features() {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        Component::new(&engine, BUNDLED_COMPONENT)
            .expect("the bundled component validates with wasmtime's default features");
    }
}
