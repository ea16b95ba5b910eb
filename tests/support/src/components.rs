//! Building the wasm test components of `tests/components` (the hostile corpus, `wit-v1-1` and
//! `wit-v2`) with the cargo that runs the tests, once per test binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::paths::{tests_dir, workspace_root};

/// Runs `cargo <args>` (the `CARGO` that runs the tests, else `cargo`) in the workspace root,
/// without the settings meant for the host build (`RUSTFLAGS`, `CARGO_ENCODED_RUSTFLAGS`,
/// `RUSTC_WORKSPACE_WRAPPER`, `CARGO_TARGET_DIR`), plus `env`. Panics with cargo's output on
/// failure; returns how long it took.
#[track_caller]
pub fn cargo_build(args: &[&str], env: &[(&str, &str)]) -> Duration {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(workspace_root()).stdin(Stdio::null());
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("run cargo {args:?}: {e}"));
    assert!(
        out.status.success(),
        "cargo {args:?} failed (is the wasm32-wasip2 target installed?):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// Builds the test components of `tests/components` (the hostile corpus and `wit-v2`) once per
/// test binary, into `<workspace>/target/hostile-components`, and returns the directory that
/// holds `hostile_<name>.wasm`.
pub fn test_components_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace_root().join("target").join("hostile-components");
        let manifest = tests_dir().join("components").join("Cargo.toml");
        let took = cargo_build(
            &[
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
                manifest.to_str().expect("utf-8 path"),
                "--target-dir",
                target.to_str().expect("utf-8 path"),
            ],
            &[],
        );
        eprintln!("test components built in {:.1}s", took.as_secs_f64());
        target.join("wasm32-wasip2").join("release")
    })
}

/// The built test component of crate directory `name` (`infinite-loop` →
/// `hostile_infinite_loop.wasm`).
pub fn test_component(name: &str) -> PathBuf {
    let path = test_components_dir().join(format!("hostile_{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}
