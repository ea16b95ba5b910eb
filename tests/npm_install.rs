//! The npm package, installed the way a Blocklet Server operator would: `npm/pack.mjs` packs the
//! launcher package and this platform's binary package around the release binary the other
//! tests use, `npm install -g` puts them into a temporary prefix with the network cut off (an
//! empty cache, `--offline`, a registry nobody answers), and the installed command runs
//! `--version`, `component info` and a migration of the demo fixture into a throwaway cluster
//! (the `cargo demo` code, through the installed command). Needs `node` and `npm` on PATH.

use blocklet_migrate_demo::{Target, fixture_dir, run};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_blocklet-migrate");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn npm_cpu() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => panic!("no npm platform package for {other}: the packages cover x86_64 and aarch64"),
    }
}

#[track_caller]
fn succeeded(what: &str, cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e} (the npm test needs node and npm: apt-get install nodejs npm)")
    });
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout.into_owned()
}

#[test]
fn packed_tarballs_install_offline_and_migrate_the_demo() {
    let work = tempfile::Builder::new().prefix("bm-npm-").tempdir().unwrap();
    let (docs, packs, prefix, cache) =
        (work.path().join("docs"), work.path().join("packs"), work.path().join("prefix"), work.path().join("cache"));

    succeeded("dist/generate-docs.sh", Command::new(repo().join("dist/generate-docs.sh")).arg(BINARY).arg(&docs));
    let printed = succeeded(
        "node npm/pack.mjs",
        Command::new("node")
            .arg(repo().join("npm/pack.mjs"))
            .args(["--version", env!("CARGO_PKG_VERSION"), "--docs"])
            .arg(&docs)
            .arg("--out")
            .arg(&packs)
            .arg(format!("{}={BINARY}", npm_cpu())),
    );
    let tarballs: Vec<&str> = printed.lines().collect();
    assert_eq!(tarballs.len(), 2, "one platform package and the main package:\n{printed}");

    succeeded(
        "npm install -g (offline)",
        Command::new("npm")
            .args(["install", "--global", "--offline", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .args(&tarballs)
            .env("npm_config_cache", &cache)
            .env("npm_config_registry", "http://127.0.0.1:9/")
            .env("npm_config_update_notifier", "false"),
    );
    let installed = prefix.join("bin/blocklet-migrate");
    assert!(installed.exists(), "npm linked no command at {}", installed.display());
    let man = prefix.join("share/man/man1/blocklet-migrate.1");
    assert!(man.exists(), "npm linked no man page at {}", man.display());

    let version = succeeded("blocklet-migrate --version", Command::new(&installed).arg("--version"));
    assert!(version.starts_with(&format!("blocklet-migrate {}\n", env!("CARGO_PKG_VERSION"))), "{version}");
    assert!(version.contains("bundled component: blocklet-migrate-guest"), "{version}");
    assert!(version.contains("WIT package: blocklet:migrate@"), "{version}");

    let info = succeeded("blocklet-migrate component info", Command::new(&installed).args(["component", "info"]));
    assert!(
        info.contains("component:       blocklet-migrate-guest") && info.contains("source:          bundled"),
        "{info}"
    );

    let arrived =
        run(&installed, &fixture_dir(), &Target::Throwaway).expect("the demo migration through the npm install");
    let mut names: Vec<&str> = arrived.iter().map(|db| db.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "blocklet_db_zNKqXjErsgbHZH5rW1nusSm7raAyFE94jM64",
            "blocklet_db_zNKrYWaSmXbK1xanN7G2rSU9ak7JUVXrHD9G",
            "module_db",
            "server_db",
            "service_db"
        ]
    );
    assert!(arrived.iter().all(|db| db.rows() > 0), "every demo database holds rows: {arrived:?}");
}
