// Packs the npm packages: `blocklet-migrate` (the launcher, man page and completions) and one
// `@blocklet-migrate/linux-<cpu>` per binary given, the way esbuild and biome ship native CLIs:
// the main package lists every platform package as an optional dependency, and npm installs
// the one whose os/cpu match. The manifests are written here, from the version given, so the
// packages and the binary they carry always agree.
//
// node npm/pack.mjs --version V --docs DIR --out DIR CPU=BINARY...
//   DIR of --docs holds man/ and completions/ (dist/generate-docs.sh); CPU is x64 or arm64.
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const CPUS = ["x64", "arm64"];
const here = dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const args = { binaries: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (["--version", "--docs", "--out"].includes(arg)) {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      args[arg.slice(2)] = argv[++i];
    } else if (arg.includes("=") && CPUS.includes(arg.split("=")[0])) {
      const [cpu, binary] = arg.split(/=(.*)/s);
      args.binaries[cpu] = resolve(binary);
    } else {
      throw new Error(`unexpected argument ${arg}; usage: --version V --docs DIR --out DIR CPU=BINARY... (CPU: ${CPUS.join(", ")})`);
    }
  }
  for (const key of ["version", "docs", "out"]) {
    if (!args[key]) throw new Error(`--${key} is required`);
  }
  if (Object.keys(args.binaries).length === 0) throw new Error("no CPU=BINARY given");
  return args;
}

const common = (version) => ({
  version,
  license: "Apache-2.0",
  engines: { node: ">=18" },
});

function platformManifest(version, cpu) {
  return {
    name: `@blocklet-migrate/linux-${cpu}`,
    description: `The blocklet-migrate binary for Linux ${cpu} (static, any libc); installed by the blocklet-migrate package`,
    ...common(version),
    os: ["linux"],
    cpu: [cpu],
    files: ["bin/blocklet-migrate"],
    preferUnplugged: true,
  };
}

function mainManifest(version) {
  return {
    name: "blocklet-migrate",
    description: "Moves a Blocklet Server's databases between SQLite and PostgreSQL",
    ...common(version),
    os: ["linux"],
    cpu: CPUS,
    bin: { "blocklet-migrate": "bin/blocklet-migrate.js" },
    man: ["./man/blocklet-migrate.1"],
    files: ["bin/", "man/", "completions/", "README.md"],
    optionalDependencies: Object.fromEntries(CPUS.map((cpu) => [`@blocklet-migrate/linux-${cpu}`, version])),
  };
}

/// `npm pack` of a staged directory into `out`; returns the tarball's path.
function pack(stage, out) {
  const printed = execFileSync("npm", ["pack", "--silent", "--pack-destination", out], { cwd: stage, encoding: "utf8" });
  const lines = printed.trim().split("\n");
  return join(out, lines[lines.length - 1]);
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const out = resolve(args.out);
  mkdirSync(out, { recursive: true });
  const staging = mkdtempSync(join(tmpdir(), "blocklet-migrate-npm-"));
  try {
    for (const [cpu, binary] of Object.entries(args.binaries)) {
      const stage = join(staging, cpu);
      mkdirSync(join(stage, "bin"), { recursive: true });
      copyFileSync(binary, join(stage, "bin", "blocklet-migrate"));
      chmodSync(join(stage, "bin", "blocklet-migrate"), 0o755);
      writeFileSync(join(stage, "package.json"), JSON.stringify(platformManifest(args.version, cpu), null, 2) + "\n");
      console.log(pack(stage, out));
    }
    const stage = join(staging, "main");
    mkdirSync(join(stage, "bin"), { recursive: true });
    copyFileSync(join(here, "launcher.js"), join(stage, "bin", "blocklet-migrate.js"));
    chmodSync(join(stage, "bin", "blocklet-migrate.js"), 0o755);
    copyFileSync(join(here, "README.md"), join(stage, "README.md"));
    cpSync(join(args.docs, "man"), join(stage, "man"), { recursive: true });
    cpSync(join(args.docs, "completions"), join(stage, "completions"), { recursive: true });
    writeFileSync(join(stage, "package.json"), JSON.stringify(mainManifest(args.version), null, 2) + "\n");
    console.log(pack(stage, out));
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

try {
  main();
} catch (e) {
  console.error(`npm/pack.mjs: ${e.message}`);
  process.exit(1);
}
