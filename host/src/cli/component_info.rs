//! `blocklet-migrate component info [FILE]`: what a component says it is, and its digest.

use super::{EXIT_SUCCESS, console};
use crate::job::JobError;
use crate::job::events::{ConsoleEvents, default_rejects_path};
use crate::sandbox::{BUNDLED_COMPONENT, HOST_WIT_VERSION, Limits, Runtime};
use std::path::PathBuf;

/// Print a component's name, version, WIT version, known schema and sha256; the exit code.
pub async fn run(file: Option<PathBuf>) -> u8 {
    match show(file).await {
        Ok(()) => EXIT_SUCCESS,
        Err(e) => {
            console::error(&e.to_string());
            e.exit_code()
        }
    }
}

async fn show(file: Option<PathBuf>) -> Result<(), JobError> {
    let (wasm, source) = match &file {
        Some(path) => std::fs::read(path)
            .map(|bytes| (bytes, path.display().to_string()))
            .map_err(|e| JobError::Config(format!("cannot read component {}: {e}", path.display())))?,
        None => (BUNDLED_COMPONENT.to_vec(), "bundled".into()),
    };
    let runtime = Runtime::new(&wasm).map_err(|e| JobError::Config(format!("{e:#}")))?;
    let events = ConsoleEvents::new(default_rejects_path());
    let mut instance = runtime
        .instantiate(Box::new(events), Limits::default())
        .await
        .map_err(|e| JobError::Failed(format!("{e:#}")))?;
    let info = instance.info().await.map_err(|e| JobError::Failed(format!("{e:#}")))?;
    println!("component:       {} {}", info.name, info.version);
    println!("source:          {source}");
    println!("sha256:          {}", runtime.sha256());
    println!("WIT package:     blocklet:migrate@{} (host implements {HOST_WIT_VERSION})", info.wit_version);
    println!("server versions: {}", info.server_versions.join(", "));
    for (kind, n) in info.migrations {
        println!("  {kind}: {n} schema migrations");
    }
    Ok(())
}
