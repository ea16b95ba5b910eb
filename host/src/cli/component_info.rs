//! `blocklet-migrate component info [FILE]`: who signed a component and its digest, then, if
//! the trust policy lets it run, what it says it is.

use super::TrustArgs;
use super::{EXIT_SUCCESS, console};
use crate::job::events::{ConsoleEvents, default_rejects_path};
use crate::job::{JobError, admit};
use crate::sandbox::signature::{self, BUNDLED_SIGNATURE};
use crate::sandbox::{BUNDLED_COMPONENT, Cancel, HOST_WIT_VERSION, JobClock, Limits, Runtime};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Print a component's name, version, WIT version, known schema and sha256; the exit code.
pub async fn run(file: Option<PathBuf>, trust: TrustArgs) -> u8 {
    match show(file, trust).await {
        Ok(()) => EXIT_SUCCESS,
        Err(e) => {
            console::error(&e.to_string());
            e.exit_code()
        }
    }
}

async fn show(file: Option<PathBuf>, trust: TrustArgs) -> Result<(), JobError> {
    // Who signed it comes first: a file the policy refuses is neither compiled nor run.
    let wasm = match &file {
        Some(path) => {
            let wasm = std::fs::read(path)
                .map_err(|e| JobError::Config(format!("cannot read component {}: {e}", path.display())))?;
            let policy = trust.policy()?;
            println!("source:          {}", path.display());
            println!("sha256:          {:x}", Sha256::digest(&wasm));
            println!("signature:       {}", signature::describe(&signature::verify(&wasm, &policy.trusted)));
            admit(&policy, path, &wasm).map_err(|e| JobError::Config(format!("{e} (not compiled or run)")))?;
            wasm
        }
        None => {
            println!("source:          bundled");
            println!("sha256:          {:x}", Sha256::digest(BUNDLED_COMPONENT));
            println!("signature:       {BUNDLED_SIGNATURE}");
            BUNDLED_COMPONENT.to_vec()
        }
    };
    let runtime = Runtime::new(&wasm).map_err(|e| JobError::Config(format!("{e:#}")))?;
    let events = ConsoleEvents::new(default_rejects_path());
    let limits = Limits::default();
    let mut instance = runtime
        .instantiate(
            Box::new(events),
            limits,
            JobClock::start(limits.timeout_seconds, limits.stall_seconds, Cancel::default()),
        )
        .await
        .map_err(|e| JobError::Failed(format!("{e:#}")))?;
    let info = instance.info().await.map_err(|e| JobError::Failed(format!("{e:#}")))?;
    println!("component:       {} {}", info.name, info.version);
    println!("WIT package:     blocklet:migrate@{} (host implements {HOST_WIT_VERSION})", info.wit_version);
    println!("server versions: {}", info.server_versions.join(", "));
    for (kind, n) in info.migrations {
        println!("  {kind}: {n} schema migrations");
    }
    Ok(())
}
