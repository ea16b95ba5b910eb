#!/usr/bin/env node
// The `blocklet-migrate` command of the npm package: runs the native binary from the platform
// package npm installed beside this one (an optional dependency chosen by os/cpu), with the
// same arguments, terminal and exit status. BLOCKLET_MIGRATE_BINARY overrides the binary.
"use strict";

const { spawnSync } = require("node:child_process");
const path = require("node:path");

const PLATFORM_PACKAGES = {
  "linux x64": "@blocklet-migrate/linux-x64",
  "linux arm64": "@blocklet-migrate/linux-arm64",
};

function binaryPath() {
  if (process.env.BLOCKLET_MIGRATE_BINARY) {
    return process.env.BLOCKLET_MIGRATE_BINARY;
  }
  const platform = `${process.platform} ${process.arch}`;
  const pkg = PLATFORM_PACKAGES[platform];
  if (!pkg) {
    fail(
      `blocklet-migrate has no prebuilt binary for ${platform} (there are: ${Object.keys(PLATFORM_PACKAGES).join(", ")}). ` +
        "Build it from source: cargo install --locked --path host (see the README).",
    );
  }
  try {
    return require.resolve(`${pkg}/bin/blocklet-migrate`);
  } catch {
    fail(
      `the package ${pkg} holding the blocklet-migrate binary for ${platform} is not installed ` +
        "(npm skips optional dependencies with --omit=optional or --no-optional): " +
        `reinstall with optional dependencies, or install ${pkg} next to blocklet-migrate.`,
    );
  }
}

function fail(message) {
  console.error(`blocklet-migrate: ${message}`);
  process.exit(1);
}

const binary = binaryPath();
const result = spawnSync(binary, process.argv.slice(2), { stdio: "inherit", shell: false });
if (result.error) {
  fail(`cannot run ${path.resolve(binary)}: ${result.error.message}`);
}
if (result.signal) {
  // Die the way the binary did (Ctrl-C, SIGTERM), so callers see the same status.
  process.kill(process.pid, result.signal);
}
process.exitCode = result.status;
