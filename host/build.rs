//! Builds the guest component for `wasm32-wasip2` and hands its path to the host crate, so a
//! plain `cargo build` produces a host binary with the component embedded; adds the target when
//! rustup did not, and composes the `--version` text naming the bundled component and its WIT.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for path in ["guest/src", "guest/schema", "guest/Cargo.toml", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    // A separate target dir: the outer cargo holds the lock on the workspace's.
    ensure_wasm_target();
    emit_version_parts(&root);
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

/// rustup installs the targets of `rust-toolchain.toml` only when auto-install is on; with
/// `RUSTUP_AUTO_INSTALL=0` (CI images) a fresh clone would stop here, so add the target ourselves.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc).args(["--print", "target-libdir", "--target", "wasm32-wasip2"]).output();
    let installed = libdir
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).is_dir())
        .unwrap_or(false);
    if installed {
        return;
    }
    let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") else {
        return; // Not under rustup: the guest build below fails with the remedy in its message.
    };
    println!(
        "cargo:warning=installing the wasm32-wasip2 target: rustup target add --toolchain {toolchain} wasm32-wasip2"
    );
    let added = Command::new("rustup").args(["target", "add", "--toolchain", &toolchain, "wasm32-wasip2"]).status();
    if !matches!(added, Ok(s) if s.success()) {
        println!("cargo:warning=rustup target add wasm32-wasip2 failed; the guest build will say what is missing");
    }
}

/// What `--version` names besides the host: the bundled component (the guest crate of this
/// workspace) and the WIT package both sides are built against, read from their sources.
fn emit_version_parts(root: &std::path::Path) {
    let wit_path = root.join("wit/blocklet-migrate.wit");
    let wit = std::fs::read_to_string(&wit_path).unwrap_or_else(|e| panic!("reading {}: {e}", wit_path.display()));
    let package = wit
        .lines()
        .find_map(|line| line.trim().strip_prefix("package ")?.strip_suffix(';'))
        .unwrap_or_else(|| panic!("{}: no `package name@version;` line", wit_path.display()));
    let guest_path = root.join("guest/Cargo.toml");
    let manifest =
        std::fs::read_to_string(&guest_path).unwrap_or_else(|e| panic!("reading {}: {e}", guest_path.display()));
    let field = |key: &str| {
        manifest.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
    };
    let name = field("name").unwrap_or_else(|| panic!("{}: no package name", guest_path.display()));
    // `version.workspace = true`: the workspace version, which is also this crate's.
    let version = field("version").unwrap_or_else(|| std::env::var("CARGO_PKG_VERSION").unwrap());
    println!("cargo:rustc-env=BLOCKLET_MIGRATE_BUNDLED_COMPONENT={name} {version}");
    println!("cargo:rustc-env=BLOCKLET_MIGRATE_WIT_PACKAGE={package}");
}
