#!/usr/bin/env bash
# The whole test suite, against real parts: a real dockerd (Debian's docker.io, started here
# when none runs), real nftables in the kernel, and an "outside" network namespace.
#
# Usage (fresh Debian 12, as root):   sudo scripts/test.sh
# Extra arguments go to `cargo test` (e.g. `sudo scripts/test.sh --test system`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

if [[ $EUID -ne 0 ]]; then
    echo "scripts/test.sh: run as root (sudo scripts/test.sh): the tests change nftables and network namespaces" >&2
    exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo not found: install Rust >= 1.85 with rustup (https://rustup.rs)" >&2
    exit 1
fi

v6g_install_packages
v6g_ensure_dockerd
v6g_ensure_image

echo "== cargo fmt --check / clippy"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test (unit, CLI and real-system tests)"
cargo test --locked "$@"
