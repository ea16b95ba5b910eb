//! `cargo demo [--port N] [--binary FILE]`: build the workspace (as `cargo build --release`),
//! then run the demo (see the library) with the `blocklet-migrate` binary built beside this one.

use blocklet_migrate_demo::{Target, fixture_dir, run};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo demo [--port N] [--binary FILE]
  --port N       where to look for a running PostgreSQL on 127.0.0.1 (default 5432) when
                 ABT_NODE_POSTGRES_URL is not set; nothing listening: a throwaway cluster
  --binary FILE  run this blocklet-migrate instead of building the workspace's";

struct Flags {
    port: u16,
    binary: Option<PathBuf>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Flags, String> {
    let mut flags = Flags { port: 5432, binary: None };
    while let Some(arg) = args.next() {
        // The alias already ends in `--`; a second one (`cargo demo -- --port N`) means the same.
        if arg == "--" {
            continue;
        }
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--port" => flags.port = value()?.parse().map_err(|_| format!("--port: not a port number\n{USAGE}"))?,
            "--binary" => flags.binary = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unexpected argument {arg}\n{USAGE}")),
        }
    }
    Ok(flags)
}

/// `cargo build --release` of the whole workspace, so the demo shares every artifact with the
/// justfile's recipes; the binary lands beside this one.
fn build() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(cargo)
        .args(["build", "--release"])
        .current_dir(&workspace)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release failed ({status})"));
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    Ok(me.with_file_name("blocklet-migrate"))
}

fn main() -> ExitCode {
    let result = parse(std::env::args().skip(1)).and_then(|flags| {
        let binary = match flags.binary {
            Some(binary) => binary,
            None => build()?,
        };
        let target = Target::choose(std::env::var("ABT_NODE_POSTGRES_URL").ok(), flags.port);
        run(&binary, &fixture_dir(), &target)
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
