//! What one component instance may use: linear memory ([`MemoryCap`]), compute between host
//! calls ([`CpuMeter`], on the engine's epoch ticks), wall-clock time and time without progress
//! (the job's deadline and stall limit, enforced around every call into the component by
//! [`super::watch`]). Hitting a limit traps the component, and the error names the limit and
//! its flag.

use super::engine::EPOCH_TICK;

/// Default cap on the component's linear memory.
pub const DEFAULT_MEMORY_LIMIT: usize = 512 << 20;

/// Default cap on how long the component may compute without calling the host. It calls
/// the host at least once per batch, so anything near this is a hang.
pub const DEFAULT_CPU_SECONDS: u64 = 30;

/// Default wall-clock limit of a job: generous for the largest installs, finite for a hang.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 12 * 3600;

/// Default limit on time without progress (no rows moved, no long-running statement): the
/// bundled component's longest quiet step, setting up the schema, takes well under a second.
pub const DEFAULT_STALL_SECONDS: u64 = 60;

/// The component's resource limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Linear memory, in bytes.
    pub memory_bytes: usize,
    /// How long the component may compute without calling the host for database work.
    pub cpu_seconds: u64,
    /// Wall-clock limit of the whole job (0: none); covers a component stuck in a host call.
    pub timeout_seconds: u64,
    /// Limit on time without progress (0: none): ends a component that keeps calling the host
    /// without moving rows.
    pub stall_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_LIMIT,
            cpu_seconds: DEFAULT_CPU_SECONDS,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            stall_seconds: DEFAULT_STALL_SECONDS,
        }
    }
}

/// Caps the store's linear memory (all memories together) and the number of instances,
/// memories and tables, and remembers that it refused, so the error can name the limit.
pub struct MemoryCap {
    limit: usize,
    used: usize,
    pub hit: bool,
}

impl MemoryCap {
    pub fn new(limit: usize) -> MemoryCap {
        MemoryCap { limit, used: 0, hit: false }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }

    fn tables(&self) -> usize {
        64
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Compute without host calls, measured in epoch ticks: a tick with no new host call since the
/// last one counts as the component's own compute.
pub struct CpuMeter {
    calls_at_last_tick: u64,
    busy_ticks: u64,
    limit_ticks: u64,
    pub hit: bool,
}

impl CpuMeter {
    pub fn new(cpu_seconds: u64) -> CpuMeter {
        let limit_ticks = (cpu_seconds * 1000 / EPOCH_TICK.as_millis() as u64).max(1);
        CpuMeter { calls_at_last_tick: 0, busy_ticks: 0, limit_ticks, hit: false }
    }

    /// One epoch tick, with `calls` host calls so far: whether the component is over its limit.
    pub fn tick(&mut self, calls: u64) -> bool {
        if calls != self.calls_at_last_tick {
            self.calls_at_last_tick = calls;
            self.busy_ticks = 0;
        } else {
            self.busy_ticks += 1;
        }
        if self.busy_ticks >= self.limit_ticks {
            self.hit = true;
        }
        self.hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ticks_without_a_host_call_count_towards_the_cpu_limit() {
        let mut cpu = CpuMeter::new(0); // at least one tick
        assert!(!cpu.tick(1), "a new host call since the last tick");
        assert!(cpu.tick(1), "a whole tick without one");
        let mut cpu = CpuMeter::new(1);
        for calls in 1..100 {
            assert!(!cpu.tick(calls));
        }
    }
}
