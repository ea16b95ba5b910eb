#!/usr/bin/env bash
# Release artifacts (`just dist`): for Linux x86_64 and aarch64, a statically linked (musl)
# binary from the stripped `dist` profile, packed with its completions, man page and README as
# blocklet-migrate-VERSION-TARGET.tar.gz plus a .sha256 file (`sha256sum -c` checks it); then
# the npm packages carrying the same binaries (npm/pack.mjs).
#
# Cross-compiling the C code (bundled SQLite, ring) uses cargo-zigbuild with zig as the C
# compiler and linker for both targets: one toolchain, musl headers included, no sysroot.
# Usage: dist/dist.sh [OUT_DIR]   (default target/packages)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-target/packages}")
targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

command -v cargo-zigbuild >/dev/null || {
    echo "dist: cargo-zigbuild is missing: cargo install --locked cargo-zigbuild" >&2
    exit 1
}
command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1 || {
    echo "dist: zig is missing: pip install ziglang (or a zig on PATH)" >&2
    exit 1
}
command -v npm >/dev/null || {
    echo "dist: npm is missing (Debian: apt-get install npm)" >&2
    exit 1
}
installed=$(rustup target list --installed)
for target in "${targets[@]}"; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
done

# One cargo run for both targets: build scripts and proc macros are compiled once.
cargo zigbuild --locked --profile dist "${targets[@]/#/--target=}" -p blocklet-migrate --bin blocklet-migrate

# Completions and the man page come from the binary this machine runs.
native="target/$(uname -m)-unknown-linux-musl/dist/blocklet-migrate"
version=$("$native" -V | awk '{print $2}')
rm -rf "$out"
mkdir -p "$out/npm"
docs=$(mktemp -d)
trap 'rm -rf "$docs"' EXIT
dist/generate-docs.sh "$native" "$docs"

npm_binaries=()
for target in "${targets[@]}"; do
    name="blocklet-migrate-$version-$target"
    stage="$docs/$name"
    mkdir -p "$stage"
    cp "target/$target/dist/blocklet-migrate" "$stage/"
    cp -r "$docs/completions" "$docs/man" "$stage/"
    cp README.md "$stage/"
    tar -C "$docs" --owner=0 --group=0 --numeric-owner -czf "$out/$name.tar.gz" "$name"
    (cd "$out" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
    case "$target" in
        x86_64-*) npm_binaries+=("x64=target/$target/dist/blocklet-migrate") ;;
        aarch64-*) npm_binaries+=("arm64=target/$target/dist/blocklet-migrate") ;;
    esac
done
node npm/pack.mjs --version "$version" --docs "$docs" --out "$out/npm" "${npm_binaries[@]}" >/dev/null

ls -l "$out" "$out/npm"
