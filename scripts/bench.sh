#!/usr/bin/env bash
# v6guard performance: plan + render + apply at 1,000 containers x 10 published ports.
#
#   scripts/bench.sh [criterion args...]      e.g. scripts/bench.sh apply_scale
#
# 1. `cargo bench --bench plan_render_apply` (criterion; the apply benchmarks run in a
#    throwaway network namespace). Also writes the 1000x10 snapshot as JSON.
# 2. The release CLI end to end on that snapshot, RUNS times each (median reported):
#      v6guard render --snapshot FILE                    (no privileges)
#      ip netns exec NS v6guard apply --snapshot FILE    (throwaway namespace)
#      ip netns exec NS2 nft -f RENDERED                 (nft loading the same text, another one)
#    plus `ip netns exec NS true`, the fixed cost of entering a namespace in both.
# 3. Checks that v6guard apply and nft -f left the same table in their namespaces.
#
# Needs root for everything that touches nftables; without root only the unprivileged parts
# run. The host's own ruleset is never touched: every apply and every `nft -f` happens in a
# namespace created here and deleted on exit (also on Ctrl-C or failure).
#
# Environment: RUNS (default 20), BENCH_OUT (default target/v6guard-bench).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."

RUNS=${RUNS:-20}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${BENCH_OUT:-$TARGET_DIR/v6guard-bench}
SNAPSHOT=$OUT/snapshot-1000x10.json
RENDERED=$OUT/ruleset-1000x10.nft
RESULTS=$OUT/results.txt
BIN=$TARGET_DIR/release/v6guard

NS_CRITERION=v6g-bench-crit-$$
NS_CLI=v6g-bench-cli-$$
NS_NFT=v6g-bench-nft-$$

is_root() { [[ $(id -u) -eq 0 ]]; }

netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

cleanup() {
    local rc=$?
    set +e
    if is_root; then
        # Only the namespaces this run named (the bench normally deletes its own).
        for ns in "$NS_CRITERION" "$NS_CLI" "$NS_NFT"; do
            if netns_exists "$ns"; then
                ip netns del "$ns" && echo "[bench] removed namespace $ns" >&2
            fi
        done
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[bench] %s\n' "$*" >&2; }

mkdir -p "$OUT"
: >"$RESULTS"
result() { printf '%s\n' "$*" | tee -a "$RESULTS"; }

now_ns() { date +%s%N; }

# time_runs LABEL CMD...: 2 untimed warm-up runs, then RUNS timed runs (stdout discarded).
# Prints "LABEL median X ms (min Y, max Z, n=RUNS)".
time_runs() {
    local label=$1
    shift
    local i start end samples=()
    for i in 1 2; do "$@" >/dev/null; done
    for ((i = 0; i < RUNS; i++)); do
        start=$(now_ns)
        "$@" >/dev/null
        end=$(now_ns)
        samples+=($(((end - start) / 1000)))
    done
    summarize_us "$label" "${samples[@]}"
}

# summarize_us LABEL MICROSECONDS...: median, min and max in ms.
summarize_us() {
    local label=$1
    shift
    printf '%s\n' "$@" | sort -n | awk -v label="$label" '
        { v[NR] = $1 }
        END {
            if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%-44s median %8.2f ms   (min %.2f, max %.2f, n=%d)\n",
                label, m / 1000, v[1] / 1000, v[NR] / 1000, NR
        }' | tee -a "$RESULTS"
}

# ---------------------------------------------------------------------------
# 1. criterion
# ---------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)
log "cargo bench --bench plan_render_apply $*"
V6G_BENCH_NETNS=$NS_CRITERION V6G_BENCH_SNAPSHOT_OUT=$SNAPSHOT \
    cargo bench --bench plan_render_apply -- "$@"

result "== tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes'), $(date -u +%Y-%m-%dT%H:%MZ)"
result "== load average before: $LOAD_BEFORE; after criterion: $(cut -d' ' -f1-3 /proc/loadavg)"
result "== machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r), $(nft --version 2>/dev/null || echo 'nft missing')"
result "== criterion medians (this run's $TARGET_DIR/criterion/*/*/new/estimates.json)"
python3 - "$TARGET_DIR/criterion" "$STARTED" <<'EOF' | tee -a "$RESULTS"
import json, pathlib, sys
root, started = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def key(p):
    parts = p.relative_to(root).parts
    return [int(x) if x.isdigit() else x for x in parts]
fresh = [p for p in root.glob("*/*/new/estimates.json") if p.stat().st_mtime >= started]
for est in sorted(fresh, key=key):
    bench = "/".join(est.relative_to(root).parts[:2])
    e = json.loads(est.read_text())
    med, ci = e["median"]["point_estimate"], e["median"]["confidence_interval"]
    print(f"{bench:44} median {med / 1e6:8.3f} ms   "
          f"(95% CI {ci['lower_bound'] / 1e6:.3f} .. {ci['upper_bound'] / 1e6:.3f})")
EOF

# ---------------------------------------------------------------------------
# 2. the release CLI, end to end
# ---------------------------------------------------------------------------
log "cargo build --release --bin v6guard"
cargo build --release --bin v6guard

result "== CLI end to end, 1000 containers x 10 published ports ($RUNS runs after 2 warm-ups)"
"$BIN" render --snapshot "$SNAPSHOT" >"$RENDERED" 2>/dev/null
result "rendered script: $(wc -c <"$RENDERED") bytes, $(wc -l <"$RENDERED") lines"
time_runs "v6guard render --snapshot" "$BIN" render --snapshot "$SNAPSHOT"

if ! is_root; then
    log "not root: skipping v6guard apply and nft -f (they need CAP_NET_ADMIN)"
    exit 0
fi

if [[ -e /etc/v6guard ]]; then
    log "note: /etc/v6guard exists; the CLI runs below plan with that configuration, the criterion runs with the defaults"
fi
ip netns add "$NS_CLI"
ip netns add "$NS_NFT"

time_runs "ip netns exec NS true (namespace entry)" ip netns exec "$NS_CLI" true

# v6guard's own log line reports the in-process time (snapshot load + plan + apply) as ms=N.
APPLY_LOG=$OUT/apply.log
: >"$APPLY_LOG"
apply_cli() {
    NO_COLOR=1 V6GUARD_LOG=info ip netns exec "$NS_CLI" "$BIN" apply --snapshot "$SNAPSHOT" \
        2>>"$APPLY_LOG"
}
time_runs "ip netns exec NS v6guard apply --snapshot" apply_cli
mapfile -t inproc < <(sed 's/\x1b\[[0-9;]*m//g' "$APPLY_LOG" | grep -o 'ms=[0-9]*' | tail -n "$RUNS" | cut -d= -f2)
if ((${#inproc[@]})); then
    printf '%s\n' "${inproc[@]}" | sort -n | awk -v n="${#inproc[@]}" '
        { v[NR] = $1 }
        END {
            if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%-44s median %8.2f ms   (min %d, max %d, n=%d; whole ms)\n",
                "  of which in-process (v6guard log ms=)", m, v[1], v[NR], n
        }' | tee -a "$RESULTS"
fi

time_runs "ip netns exec NS2 nft -f rendered.nft" ip netns exec "$NS_NFT" nft -f "$RENDERED"

# ---------------------------------------------------------------------------
# 3. same result both ways
# ---------------------------------------------------------------------------
# "ELEMENTS RULES" of table ip6 v6guard in namespace $1 (elements of all its sets and maps).
table_shape() {
    ip netns exec "$1" nft -j list table ip6 v6guard | python3 -c '
import json, sys
objs = json.load(sys.stdin)["nftables"]
elements = sum(len(o[kind].get("elem", [])) for o in objs for kind in ("set", "map") if kind in o)
rules = sum(1 for o in objs if "rule" in o)
print(elements, rules)'
}
sorted_listing() {
    # Elements are listed in hash order; compare them as a sorted list.
    ip netns exec "$1" nft list table ip6 v6guard | tr -d '\t' | tr ',' '\n' |
        sed 's/^ *//; s/elements = { //; s/ }$//' | sort
}
read -r cli_elements cli_rules < <(table_shape "$NS_CLI")
read -r nft_elements nft_rules < <(table_shape "$NS_NFT")
if diff <(sorted_listing "$NS_CLI") <(sorted_listing "$NS_NFT") >/dev/null; then
    same="identical"
else
    same="DIFFERENT"
fi
result "check: v6guard apply installed $cli_rules rules + $cli_elements set/map elements, nft -f $nft_rules rules + $nft_elements; listings $same"
log "results in $RESULTS"
