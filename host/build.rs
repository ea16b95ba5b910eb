//! Builds the guest component for `wasm32-wasip2` and hands its path to the host crate, so a
//! plain `cargo build` produces a host binary with the component embedded.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for path in ["guest/src", "guest/schema", "guest/Cargo.toml", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    // A separate target dir: the outer cargo holds the lock on the workspace's.
    let target_dir = root.join("target").join("guest-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--package", "blocklet-migrate-guest", "--target", "wasm32-wasip2", "--profile", "guest"])
        .arg("--target-dir")
        .arg(&target_dir);
    // Settings meant for the host build must not leak into the guest's.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build the guest component");
    if !status.success() {
        panic!(
            "building the guest component failed; is the wasm32-wasip2 target installed? (rustup target add wasm32-wasip2)"
        );
    }
    let wasm = target_dir.join("wasm32-wasip2/guest/blocklet_migrate_guest.wasm");
    println!("cargo:rustc-env=BLOCKLET_MIGRATE_GUEST_WASM={}", wasm.display());
}
