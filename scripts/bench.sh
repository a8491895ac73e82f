#!/usr/bin/env bash
# v6guard performance: every benchmark of docs/performance.md, and the scaling plot.
#
#   scripts/bench.sh [criterion args...]      e.g. PARTS=apply scripts/bench.sh apply_scale
#   PARTS="rss plot" scripts/bench.sh          only some parts
#
# Parts (PARTS, default all, in this order):
#   apply      1. `cargo bench --bench plan_render_apply` (criterion; the apply benchmarks run
#                 in a throwaway network namespace), including apply_scale and the full apply
#                 of 100,000 published ports (apply_10000x10). Also writes the 1000x10
#                 snapshot as JSON.
#              2. The release CLI end to end on that snapshot, RUNS times each (median):
#                   v6guard render --snapshot FILE / ip netns exec NS v6guard apply --snapshot
#                   FILE / ip netns exec NS2 nft -f RENDERED, plus `ip netns exec NS true`.
#              3. Checks that v6guard apply and nft -f left the same table.
#   latency    `V6G_BENCH_CONTAINERS=N cargo bench --bench daemon_latency` for N in
#              LATENCY_N (default "100 1000 3000 10000"): event to enforced vs containers.
#   rss        The real `v6guard daemon` (release) against a fake Docker API on a unix socket
#              (benches/support/fake_dockerd.py) describing N containers x 10 published ports,
#              in a throwaway namespace; VmRSS and VmHWM RSS_SETTLE s (default 12: past the
#              first periodic verify) after the first reconcile applied every element.
#              N in RSS_N (default "100 1000 3000 10000"); RSS_PORTS ports each (default 10).
#   docker     Docker 20.10's per-port ip6tables cost vs N: with N ports' rules loaded
#              (ip6tables-restore) in a throwaway namespace, the three ip6tables commands
#              Docker runs to publish one more port, timed (DOCKER_SAMPLES ports, default 10).
#              N in DOCKER_N (default "100 1000 3000 10000").
#   dataplane  `cargo bench --bench dataplane`: new connections/s and throughput through a
#              router namespace with no ruleset, v6guard's (100,000 elements; and for one
#              container), the floor of a stateful firewall (conntrack alone; conntrack and
#              NAT hooks), Docker's (1,000 ports), interleaved; ratios to no ruleset.
#   plot       $OUT/scaling.png (gnuplot) from the figures above; docs/performance.md shows
#              the copy in docs/performance-scaling.png (`cp` it after a run you keep).
#
# Needs root for everything that touches nftables; without root only the unprivileged parts
# run. The host's own ruleset is never touched: every apply, `nft -f`, ip6tables-restore and
# daemon runs in a namespace created here and deleted on exit (also on Ctrl-C or failure).
# Installs iperf3, conntrack and gnuplot-nox (Debian) when missing.
#
# Environment: RUNS (default 20), BENCH_OUT (default target/v6guard-bench), PARTS, LATENCY_N,
# RSS_N, RSS_PORTS, DOCKER_N, DOCKER_SAMPLES, and the dataplane bench's V6G_DP_ROUNDS, V6G_DP_SECONDS,
# V6G_DP_THREADS.
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
NS_RSS=v6g-bench-rss-$$
NS_DOCKER=v6g-bench-dkr-$$
PARTS=${PARTS:-apply latency rss docker dataplane plot}
RSS_PORTS=${RSS_PORTS:-10}
RSS_TMP=""
FAKE_PID=""
DAEMON_PID=""

want() { [[ " $PARTS " == *" $1 "* ]]; }

is_root() { [[ $(id -u) -eq 0 ]]; }

netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

cleanup() {
    local rc=$?
    set +e
    # Only the processes this run started, by pid.
    [[ -n $DAEMON_PID ]] && kill "$DAEMON_PID" 2>/dev/null
    [[ -n $FAKE_PID ]] && kill "$FAKE_PID" 2>/dev/null
    [[ -n $RSS_TMP ]] && rm -rf "$RSS_TMP"
    if is_root; then
        # Only the namespaces this run named (the bench normally deletes its own).
        for ns in "$NS_CRITERION" "$NS_CLI" "$NS_NFT" "$NS_RSS" "$NS_DOCKER"; do
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
result "== tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes'), $(date -u +%Y-%m-%dT%H:%MZ); parts: $PARTS"
result "== machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r), $(nft --version 2>/dev/null || echo 'nft missing'); load $(cut -d' ' -f1-3 /proc/loadavg)"

# apt packages the parts need, installed when missing (Debian 12).
need_packages() {
    local missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if ((${#missing[@]})); then
        is_root || { log "missing ${missing[*]} (run as root to install)"; return 1; }
        log "apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
    fi
}
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

part_apply() {
# ---------------------------------------------------------------------------
# 1. criterion
# ---------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)
log "cargo bench --bench plan_render_apply $*"
V6G_BENCH_NETNS=$NS_CRITERION V6G_BENCH_SNAPSHOT_OUT=$SNAPSHOT \
    cargo bench --bench plan_render_apply -- "$@"

result "== load average before: $LOAD_BEFORE; after criterion: $(cut -d' ' -f1-3 /proc/loadavg)"
result "== criterion medians (this run's $TARGET_DIR/criterion/*/*/new/estimates.json)"
python3 - "$TARGET_DIR/criterion" "$STARTED" "$OUT/apply.dat" <<'EOF' | tee -a "$RESULTS"
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
# For the plot: published ports, apply (socket per apply, replacing), to the ack (kept socket).
def median_ms(name):
    est = root / name / "new" / "estimates.json"
    if not est.exists():
        return "NaN"
    return f'{json.loads(est.read_text())["median"]["point_estimate"] / 1e6:.3f}'
with open(sys.argv[3], "w") as dat:
    dat.write("# published_ports apply_ms ack_ms\n")
    for ports in (100, 1000, 10000, 20000):
        dat.write(f"{ports} {median_ms(f'apply_scale/{ports}')} NaN\n")
    dat.write(f"100000 NaN {median_ms('apply_10000x10/apply_kept_socket')}\n")
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
    return 0
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
}

# ---------------------------------------------------------------------------
# event latency vs containers (the daemon's reconcile path; benches/daemon_latency.rs)
# ---------------------------------------------------------------------------
part_latency() {
    is_root || { log "not root: skipping the daemon latency bench"; return 0; }
    local dat=$OUT/latency.dat n log_file
    printf '# containers start_p50_ms start_p99_ms die_p99_ms full_p50_ms plan_p50_ms start_p99_full_plan_ms\n' >"$dat"
    local counts=${LATENCY_N:-100 1000 3000 10000}
    result "== daemon: event to enforced vs running containers (daemon_latency)"
    for n in $counts; do
        log_file=$OUT/latency-$n.txt
        V6G_BENCH_CONTAINERS=$n ROUNDS=${ROUNDS_LATENCY:-1000} \
            cargo bench --bench daemon_latency >"$log_file"
        # One `result case=CASE containers=N ... p50_ms=X p99_ms=X` line per measurement.
        awk '
            function kv(key,   i, pair) {
                for (i = 1; i <= NF; i++) { split($i, pair, "="); if (pair[1] == key) return pair[2] }
            }
            $1 == "result" {
                c = kv("case"); n = kv("containers")
                if (c == "start") { s50 = kv("p50_ms"); s99 = kv("p99_ms") }
                if (c == "die") d99 = kv("p99_ms")
                if (c == "full-replace") f50 = kv("p50_ms")
                if (c == "plan-only") pl = kv("p50_ms")
                if (c == "start-full-plan") o99 = kv("p99_ms")
            }
            END { printf "%s %s %s %s %s %s %s\n", n, s50, s99, d99, f50, pl, o99 }' \
            "$log_file" >>"$dat"
        result "$(tail -n 1 "$dat" | awk '{printf "%6d containers: start p50 %s ms, p99 %s ms; die p99 %s ms; full replace p50 %s ms; plan p50 %s ms", $1, $2, $3, $4, $5, $6}')"
    done
}

# ---------------------------------------------------------------------------
# daemon RSS vs containers: the real daemon against a fake Docker API
# ---------------------------------------------------------------------------
part_rss() {
    is_root || { log "not root: skipping the daemon RSS bench"; return 0; }
    cargo build --release --bin v6guard
    RSS_TMP=$(mktemp -d /tmp/v6g-bench-rss.XXXXXX)
    printf '{"ipv6": true, "fixed-cidr-v6": "fd76:6700:0:1::/64", "ip6tables": false}\n' \
        >"$RSS_TMP/daemon.json"
    : >"$RSS_TMP/v6guard.yaml"
    mkdir -p "$RSS_TMP/policies"
    local dat=$OUT/rss.dat n elements i status
    printf '# containers vmrss_kib vmhwm_kib elements\n' >"$dat"
    result "== daemon RSS (release, real daemon, fake Docker API with N containers x $RSS_PORTS ports)"
    for n in ${RSS_N:-100 1000 3000 10000}; do
        rm -f "$RSS_TMP/docker.sock" "$RSS_TMP/daemon.log"
        python3 benches/support/fake_dockerd.py "$RSS_TMP/docker.sock" "$n" "$RSS_PORTS" >"$RSS_TMP/fake.log" 2>&1 &
        FAKE_PID=$!
        for ((i = 0; i < 100; i++)); do [[ -S $RSS_TMP/docker.sock ]] && break; sleep 0.1; done
        ip netns add "$NS_RSS"
        NO_COLOR=1 ip netns exec "$NS_RSS" "$BIN" daemon \
            --docker-host "unix://$RSS_TMP/docker.sock" --daemon-json "$RSS_TMP/daemon.json" \
            --config "$RSS_TMP/v6guard.yaml" --policies-dir "$RSS_TMP/policies" \
            --state-file "$RSS_TMP/status.json" >"$RSS_TMP/daemon.log" 2>&1 &
        DAEMON_PID=$!
        # `ip netns exec` execs the daemon: $DAEMON_PID is the daemon. Wait for the reconcile
        # that read Docker (the skeleton apply comes first) to have applied.
        elements=""
        for ((i = 0; i < 600; i++)); do
            elements=$(sed 's/\x1b\[[0-9;]*m//g' "$RSS_TMP/daemon.log" |
                grep 'reconciled result="applied"' | grep -o 'elements=[0-9]*' | tail -n 1 | cut -d= -f2 || true)
            [[ -n $elements ]] && break
            kill -0 "$DAEMON_PID" 2>/dev/null || break
            sleep 0.1
        done
        # Past the first periodic verify (every 10 s), which reads every element back.
        sleep "${RSS_SETTLE:-12}"
        if [[ -z $elements ]] || ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            log "the daemon did not reconcile at $n containers; its log:"
            cat "$RSS_TMP/daemon.log" >&2
            return 1
        fi
        status=/proc/$DAEMON_PID/status
        local rss hwm
        rss=$(awk '/^VmRSS/ {print $2}' "$status")
        hwm=$(awk '/^VmHWM/ {print $2}' "$status")
        printf '%s %s %s %s\n' "$n" "$rss" "$hwm" "$elements" >>"$dat"
        result "$(awk -v n="$n" -v e="$elements" -v r="$rss" -v h="$hwm" 'BEGIN {
            printf "%6d containers (%s elements): VmRSS %6.1f MiB, VmHWM (peak) %6.1f MiB", n, e, r / 1024, h / 1024 }')"
        kill "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null || true
        DAEMON_PID=""
        kill "$FAKE_PID"
        wait "$FAKE_PID" 2>/dev/null || true
        FAKE_PID=""
        ip netns del "$NS_RSS"
    done
}

# ---------------------------------------------------------------------------
# Docker's own IPv6 cost per published port vs ports already published
# ---------------------------------------------------------------------------
# Docker 20.10's ip6tables rules for N containers with one published TCP port each (the
# per-port part; the same shape as benches/dataplane.rs loads).
docker_rules() {
    local n=$1 br=br-b0b0b0b0b0b0
    python3 - "$n" "$br" <<'EOF'
import ipaddress, sys
n, br = int(sys.argv[1]), sys.argv[2]
base = ipaddress.IPv6Address("fd76:6700:0:10::")
f = ["*filter", ":FORWARD DROP [0:0]", ":DOCKER - [0:0]", f"-A FORWARD -o {br} -j DOCKER"]
t = ["*nat", ":PREROUTING ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]", ":DOCKER - [0:0]",
     "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"]
for i in range(n):
    a = base + i + 2
    f.append(f"-A DOCKER -d {a}/128 ! -i {br} -o {br} -p tcp -m tcp --dport 8000 -j ACCEPT")
    t.append(f"-A POSTROUTING -s {a}/128 -d {a}/128 -p tcp -m tcp --dport 8000 -j MASQUERADE")
    t.append(f"-A DOCKER ! -i {br} -p tcp -m tcp --dport {20000 + i} -j DNAT --to-destination [{a}]:8000")
print("\n".join(f + ["COMMIT"] + t + ["COMMIT"]))
EOF
}

part_docker() {
    is_root || { log "not root: skipping Docker's ip6tables cost"; return 0; }
    command -v ip6tables >/dev/null || { log "ip6tables missing: skipping"; return 0; }
    local dat=$OUT/docker.dat n k samples=${DOCKER_SAMPLES:-10} start end a br=br-b0b0b0b0b0b0
    printf '# ports_already ms_per_port_add (3 ip6tables commands, as Docker 20.10)\n' >"$dat"
    result "== Docker 20.10's way: ip6tables commands to publish one more port, vs ports already published ($(ip6tables --version))"
    for n in ${DOCKER_N:-100 1000 3000 10000}; do
        ip netns add "$NS_DOCKER"
        docker_rules "$n" | ip netns exec "$NS_DOCKER" ip6tables-restore
        start=$(now_ns)
        for ((k = 0; k < samples; k++)); do
            a=fd76:6700:0:11::$((k + 2))
            ip netns exec "$NS_DOCKER" ip6tables -t filter -A DOCKER -d "$a/128" ! -i "$br" -o "$br" -p tcp -m tcp --dport 8000 -j ACCEPT
            ip netns exec "$NS_DOCKER" ip6tables -t nat -A POSTROUTING -s "$a/128" -d "$a/128" -p tcp -m tcp --dport 8000 -j MASQUERADE
            ip netns exec "$NS_DOCKER" ip6tables -t nat -A DOCKER ! -i "$br" -p tcp -m tcp --dport $((60000 + k)) -j DNAT --to-destination "[$a]:8000"
        done
        end=$(now_ns)
        ip netns del "$NS_DOCKER"
        awk -v n="$n" -v us=$(((end - start) / 1000)) -v k="$samples" \
            'BEGIN { printf "%d %.3f\n", n, us / k / 1000 }' >>"$dat"
        result "$(tail -n 1 "$dat" | awk '{printf "%6d ports published: %.2f ms to publish one more (3 ip6tables commands)", $1, $2}')"
    done
}

# ---------------------------------------------------------------------------
# data plane
# ---------------------------------------------------------------------------
part_dataplane() {
    is_root || { log "not root: skipping the data plane bench"; return 0; }
    need_packages iperf3:iperf3 ip6tables-restore:iptables conntrack:conntrack
    result "== data plane: client -> router -> server namespaces (benches/dataplane.rs)"
    BENCH_OUT=$OUT cargo bench --bench dataplane | tee -a "$RESULTS"
}

# ---------------------------------------------------------------------------
# the plot
# ---------------------------------------------------------------------------
part_plot() {
    need_packages gnuplot:gnuplot-nox || return 0
    local png=$OUT/scaling.png
    gnuplot <<EOF
set terminal pngcairo size 1500,620 font ",10"
set output "$png"
set multiplot layout 1,3 title "v6guard vs Docker 20.10 (ip6tables): cost as a host grows ($(date -u +%Y-%m-%d), $(nproc) CPUs, shared machine)"
set logscale xy
set grid
set key below vertical maxrows 4
set xlabel "containers (one change)"
set ylabel "ms"
set title "one container's change, to the kernel"
plot "$OUT/latency.dat" using 1:3 with linespoints title "v6guard: start -> enforced p99", \
     "$OUT/latency.dat" using 1:4 with linespoints title "v6guard: die -> enforced p99", \
     "$OUT/latency.dat" using 1:7 with linespoints title "v6guard before the engine (full plan + diff): start p99", \
     "$OUT/docker.dat" using 1:2 with linespoints title "Docker: ip6tables for one port (x N ports)"
set xlabel "published ports (x2 elements: set + DNAT map)"
set xrange [50:200000]
set title "full apply of the whole ruleset"
plot "$OUT/apply.dat" using 1:2 with linespoints title "v6guard apply (socket per apply, to close)", \
     "$OUT/apply.dat" using 1:3 with points pointsize 2 title "v6guard apply 10,000 x 10, to the ack", \
     "$OUT/latency.dat" using (\$1*2):5 with linespoints title "daemon full replace p50 (2 ports each)", \
     "$OUT/docker.dat" using 1:(\$1*\$2) with linespoints title "Docker: N ports one by one (estimate: N x the per-port cost at N)"
set autoscale x
set xlabel "containers (10 published ports each)"
set ylabel "MiB"
set title "daemon memory"
plot "$OUT/rss.dat" using 1:(\$2/1024) with linespoints title "VmRSS", \
     "$OUT/rss.dat" using 1:(\$3/1024) with linespoints title "VmHWM (peak)", \
     40 with lines dashtype 2 title "goal at 10,000: 40 MiB"
unset multiplot
EOF
    result "plot: $png"
}

want apply && part_apply "$@"
want latency && part_latency
want rss && part_rss
want docker && part_docker
want dataplane && part_dataplane
want plot && part_plot
log "results in $RESULTS"
