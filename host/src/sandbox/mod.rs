//! The wasm sandbox a migration component runs in: one engine, one store per instance, and
//! the limits, checks and caches around them. The component gets no filesystem, network,
//! environment or stdio; it reaches only the handles the job puts into its store, through the
//! capabilities of [`crate::capability`].
//!
//! | file | concern |
//! |---|---|
//! | `engine.rs` | the engine: pooling allocator, epoch ticker |
//! | `limits.rs` | memory, CPU, wall-clock and stall limits |
//! | `watch.rs` | the job's deadline, stall limit and cancellation, raced against every call |
//! | `version.rs` | which WIT versions this host runs |
//! | `component_cache.rs` | compiled components cached on disk, verified before use |
//! | `conventions.rs` | the server facts a component states, checked, with pre-1.3 defaults |
//! | `signature/` | signed component files: the format, keys, and which files may run |
//! | `runtime.rs` | a compiled, linked component; instantiation |
//! | `state.rs` | what a store holds |
//! | `instance.rs` | the calls into one instance's exports |

pub mod component_cache;
pub mod conventions;
pub mod engine;
mod instance;
pub mod limits;
mod runtime;
pub mod signature;
mod state;
pub mod version;
pub mod watch;

pub use conventions::Conventions;
pub use engine::{engine, pooled_engine};
pub use instance::{Direction, Instance};
pub use limits::{DEFAULT_CPU_SECONDS, DEFAULT_MEMORY_LIMIT, DEFAULT_STALL_SECONDS, DEFAULT_TIMEOUT_SECONDS, Limits};
pub use runtime::{BUNDLED_COMPONENT, Runtime};
pub use version::HOST_WIT_VERSION;
pub use watch::{Cancel, Ended, JobClock};
