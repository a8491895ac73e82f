#!/usr/bin/env bash
# The whole test suite, against real parts: a real dockerd (Debian's docker.io, started here
# when none runs), real nftables in the kernel, and an "outside" network namespace.
#
# Usage (fresh Debian 12, as root):   sudo scripts/test.sh
# Extra arguments go to `cargo test` (e.g. `sudo scripts/test.sh --test system`).
#
# Engines: V6G_ENGINE=20.10 (Debian 12's docker.io), V6G_ENGINE=26 (Debian 13's docker.io
# 26.1.5, in a chroot built once by debootstrap), or unset: both, one after the other (never
# two dockerds at once). Unit tests run once, with the first engine; the second engine runs
# the integration tests (CLI and real-system) only.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
    echo "scripts/test.sh: run as root (sudo scripts/test.sh): the tests change nftables and network namespaces" >&2
    exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo not found: install Rust >= 1.85 with rustup (https://rustup.rs)" >&2
    exit 1
fi

case "${V6G_ENGINE:-both}" in
    20.10) engines=(20.10) ;;
    26) engines=(26) ;;
    both) engines=(20.10 26) ;;
    *) echo "scripts/test.sh: V6G_ENGINE=$V6G_ENGINE: expected 20.10, 26 or unset (both)" >&2; exit 1 ;;
esac
unset V6G_ENGINE

(
    # shellcheck source=scripts/lib.sh
    . scripts/lib.sh
    v6g_install_packages
)

echo "== cargo fmt --check / clippy"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

first=1
for engine in "${engines[@]}"; do
    if ((first)); then
        targets=()
    else
        targets=(--test '*')  # unit tests already ran
    fi
    first=0
    echo "== cargo test against Docker $engine (${targets[*]:-unit, CLI and real-system tests})"
    if [[ "$engine" == 20.10 ]]; then
        bash -c '. scripts/lib.sh && v6g_ensure_dockerd && v6g_ensure_image'
        cargo test --locked "${targets[@]}" "$@"
    else
        # The 20.10 dockerd is down while 26 runs: hold the test lock for the whole window
        # (the tests know, V6G_TESTS_LOCK_HELD) and bring 20.10 back before letting go.
        flock -o /run/v6guard-tests.lock bash scripts/with-engine-26.sh \
            cargo test --locked "${targets[@]}" "$@"
    fi
done
