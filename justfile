# blocklet-migrate — everyday commands. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

default:
    @just --list

# Build the host with the bundled component (release: wasmtime is compiled once for everything).
build:
    cargo build --release

# Migrate a copy of the demo fixture into $ABT_NODE_POSTGRES_URL, else a PostgreSQL on 127.0.0.1:5432, else a throwaway cluster; show what arrived.
demo *ARGS:
    cargo demo {{ARGS}}

# Every test: guest unit tests, host unit tests, end-to-end tests against real PostgreSQL.
test:
    cargo test --release --workspace

# Release archives (static Linux x86_64 and aarch64, with .sha256) and npm packages, in target/packages/.
dist:
    dist/dist.sh

# Make an Ed25519 key pair for signing components: PREFIX.key (secret: keep it safe) and PREFIX.pub (for
# operators: `--trusted-key PREFIX.pub`, or a copy in ~/.config/blocklet-migrate/trusted-keys/). OpenSSL makes
# the same files: openssl genpkey -algorithm ed25519 -out PREFIX.key && openssl pkey -in PREFIX.key -pubout -out PREFIX.pub
component-keygen PREFIX: build
    target/release/blocklet-migrate component keygen "{{PREFIX}}"

# Sign a component build in place with a secret key (`component info FILE --trusted-key KEY.pub` shows who signed it).
sign-component FILE KEY: build
    target/release/blocklet-migrate component sign "{{FILE}}" --key "{{KEY}}"

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings

# (Both bench recipes build the whole workspace, as `just test` does: building one package alone
# unifies features differently and rebuilds shared crates.)
# Generate a benchmark data dir: the demo fixture plus ROWS realistic rows (seed 1), in target/bench-data/.
bench-data ROWS="200000": build
    target/release/blocklet-migrate-bench generate --rows {{ROWS}} --seed 1 --out target/bench-data/rows-{{ROWS}}-seed-1

# Benchmark this build against revision REV's, in the same run (both directions; the report gives the ratios).
bench-against REV ROWS="200000" *ARGS: build
    rm -rf target/baseline-src && git worktree prune
    git worktree add --detach target/baseline-src {{REV}}
    cargo build --release --manifest-path target/baseline-src/Cargo.toml --target-dir target/baseline -p blocklet-migrate
    git worktree remove --force target/baseline-src
    target/release/blocklet-migrate-bench run --rows {{ROWS}} --seed 1 --baseline-bin target/baseline/release/blocklet-migrate {{ARGS}}

# Benchmark the hosting service against the CLI spawned per tenant: TENANTS demo-size tenants, tenants/s, peak RSS, first row (flags: `service --help`).
bench-service TENANTS="16" *ARGS: build
    target/release/blocklet-migrate-bench service --tenants {{TENANTS}} {{ARGS}}

# Benchmark both directions on ROWS generated rows (ceiling, pgloader, rusqlite loop, warm start); exits 1 if a goal is missed (flags: `run --help`).
bench ROWS="200000" *ARGS: build
    target/release/blocklet-migrate-bench run --rows {{ROWS}} --seed 1 {{ARGS}}
