//! The wasmtime engine every component runs on: the component model, epoch interruption with a
//! ticker thread that lives as long as the engine, and, for hosting many jobs in one process,
//! the pooling allocator.

use anyhow::anyhow;
use wasmtime::{Config, Engine};

/// Set (to anything) to write a perf map of the component's compiled functions, so that
/// `perf report` names them instead of showing `[JIT]` addresses.
pub const PERF_MAP_ENV: &str = "BLOCKLET_MIGRATE_PERF_MAP";

/// How often the engine's epoch advances: the resolution of the CPU limit.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// An engine for hosting many jobs at once: the pooling allocator with room for `slots`
/// instances of at most `max_memory` bytes each, and the epoch ticker.
pub fn pooled_engine(slots: u32, max_memory: usize) -> anyhow::Result<Engine> {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 4)
        .total_memories(slots * 4)
        .total_tables(slots * 4)
        .total_stacks(slots)
        .max_memory_size(max_memory);
    engine_with(Some(pool))
}

/// An engine set up for sandboxed migration components: epoch interruption on, with a
/// ticker thread that lives as long as the engine.
pub fn engine() -> anyhow::Result<Engine> {
    engine_with(None)
}

fn engine_with(pool: Option<wasmtime::PoolingAllocationConfig>) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // For profiling the component's compiled code: `perf` reads /tmp/perf-PID.map for names.
    if std::env::var_os(PERF_MAP_ENV).is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(pool) = pool {
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    let engine = Engine::new(&config).map_err(|e| anyhow!("{e}"))?;
    let weak = engine.weak();
    std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    })?;
    Ok(engine)
}
