#!/usr/bin/env bash
# v6guard demo on a local lab:   sudo scripts/demo.sh
#
# On a fresh Debian 12 machine (run as root) this
#   1. installs the lab packages and builds v6guard (needs Rust >= 1.85 / cargo),
#   2. starts (or reuses) dockerd, an "outside world" network namespace and a
#      Docker network with IPv6 and ICC off (custom bridge name v6gdemo0),
#   3. shows Docker's IPv6 leak: containers on an ICC=off network talk over
#      IPv6, and unpublished container ports are reachable from outside,
#   4. runs `v6guard render` and `v6guard apply`,
#   5. probes again and exits non-zero unless the leak is closed while the
#      published port still works (so the demo doubles as an end-to-end check).
#
# On exit it removes the demo containers, network and namespace and runs
# `v6guard cleanup` (set V6G_DEMO_KEEP_RULES=1 to keep table ip6 v6guard).
# If a v6guard table already existed before the demo, it is not removed but
# re-applied for the remaining Docker state instead.  dockerd is left running.
#
# Touches only: the demo containers/network, netns v6g-demo-out (+ its veth),
# and nftables tables "ip6 v6guard*".  Never flushes the ruleset, never eth0.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

NET=v6g-demo
SUBNET=fd76:6700:0:20::/64
BRIDGE=v6gdemo0
NS=v6g-demo-out
WEB1=v6g-demo-web1   # -p 8080:80; httpd on 80 and 81
WEB2=v6g-demo-web2   # nothing published; httpd on 80 and 81
HOST_PORT=8080
WEB_CMD='httpd -p 80 -h /www; exec httpd -f -p 81 -h /www'
BODY='v6guard-lab ok'   # what the image's httpd serves
T=2                     # seconds to wait for a probe that should be blocked

BIN=$repo/target/release/v6guard
SETUP_STARTED=
PREEXISTING_TABLES=

hdr() { printf '\n==== %s\n' "$*"; }
say() { printf '  %s\n' "$*"; }
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }

v6guard_tables() { # names of the ip6 tables v6guard owns (ip6 v6guard*)
    nft list tables ip6 2>/dev/null | awk '$1 == "table" && $2 == "ip6" && $3 ~ /^v6guard/ {print $3}'
}

remove_demo_objects() {
    "$DOCKER" rm -f "$WEB1" "$WEB2" >/dev/null 2>&1 || true
    "$DOCKER" network rm "$NET" >/dev/null 2>&1 || true
    v6g_outside_down "$NS"
}

cleanup() {
    local rc=$?
    set +e
    [[ -n "$SETUP_STARTED" ]] || exit "$rc"
    hdr "cleanup"
    remove_demo_objects
    say "removed containers $WEB1 $WEB2, network $NET, namespace $NS (dockerd left running)"
    if [[ ! -x "$BIN" ]]; then
        :
    elif [[ -n "${V6G_DEMO_KEEP_RULES:-}" ]]; then
        say "V6G_DEMO_KEEP_RULES is set: table ip6 v6guard kept (it still names the removed demo"
        say "network).  Inspect: nft list table ip6 v6guard   Remove: $BIN cleanup"
        say "(or re-apply it for the current Docker state: $BIN apply; the next demo run replaces it)"
    elif [[ -n "$PREEXISTING_TABLES" ]]; then
        say "v6guard table(s) existed before the demo ($PREEXISTING_TABLES): not removing them;"
        say "re-applying table ip6 v6guard for the remaining Docker state"
        if ! "$BIN" apply; then
            say "WARNING: re-apply failed; check 'nft list table ip6 v6guard'"
            ((rc != 0)) || rc=1
        fi
    else
        if "$BIN" cleanup; then
            say "table ip6 v6guard removed (run with V6G_DEMO_KEEP_RULES=1 to keep it)"
        else
            say "WARNING: '$BIN cleanup' failed"
            ((rc != 0)) || rc=1
        fi
    fi
    printf '\n==== demo %s (exit %d)\n' "$([[ $rc == 0 ]] && echo PASSED || echo FAILED)" "$rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------
# http_ok CMD...  -> 0 when CMD exits 0 and printed the image's index page
http_ok() {
    local out
    out=$("$@" 2>/dev/null) || return 1
    [[ "$out" == *"$BODY"* ]]
}
from_web2() { "$DOCKER" exec "$WEB2" timeout "$T" wget -q -O- "$1"; }
from_outside() { ip netns exec "$NS" curl -g -sS --connect-timeout "$T" -m "$((T + 1))" "$1"; }

# state of each probe, keyed by phase:name
declare -A STATE=() EXPECT=()
FAILED=0

# probe PHASE NAME EXPECT(OPEN|BLOCKED|-) LABEL NOTE CMD...
probe() {
    local phase=$1 name=$2 expect=$3 label=$4 note=$5 got mark=""
    shift 5
    if http_ok "$@"; then got=OPEN; else got=BLOCKED; fi
    STATE[$phase:$name]=$got
    EXPECT[$phase:$name]=$expect
    if [[ "$expect" != - ]]; then
        if [[ "$got" == "$expect" ]]; then
            mark="ok"
        else
            mark="UNEXPECTED (want $expect)"
            FAILED=$((FAILED + 1))
        fi
    fi
    printf '  %-10s %-46s %-36s %s\n' "[$got]" "$label" "$note" "$mark" | sed 's/ *$//'
}

# run_probes PHASE -- the same four (+1) probes before and after v6guard
run_probes() {
    local phase=$1 e_c2c6 e_pub e_unpub
    if [[ "$phase" == after ]]; then
        e_c2c6=BLOCKED e_pub=OPEN e_unpub=BLOCKED
    else
        e_c2c6=- e_pub=- e_unpub=-
    fi
    printf '  %-10s %-46s %-36s %s\n' "STATE" "PROBE" "WHAT" "$([[ $phase == after ]] && echo CHECK)" | sed 's/ *$//'
    probe "$phase" c2c6 "$e_c2c6" "web2 -> web1 [$IP6_1]:80" "IPv6, same network, ICC off" \
        from_web2 "http://[$IP6_1]:80/"
    probe "$phase" c2c4 "$([[ $phase == after ]] && echo BLOCKED || echo -)" \
        "web2 -> web1 $IP4_1:80" "IPv4, same network, ICC off" \
        from_web2 "http://$IP4_1:80/"
    probe "$phase" pub "$e_pub" "outside -> web1 [$IP6_1]:80" "published (-p $HOST_PORT:80)" \
        from_outside "http://[$IP6_1]:80/"
    probe "$phase" unpub "$e_unpub" "outside -> web1 [$IP6_1]:81" "NOT published" \
        from_outside "http://[$IP6_1]:81/"
    probe "$phase" unpub2 "$e_unpub" "outside -> web2 [$IP6_2]:80" "NOT published (web2 publishes none)" \
        from_outside "http://[$IP6_2]:80/"
    probe "$phase" host6 "$e_pub" "outside -> host [$V6G_OUTSIDE_HOST_ADDR]:$HOST_PORT" \
        "published, via the host's address (DNAT)" \
        from_outside "http://[$V6G_OUTSIDE_HOST_ADDR]:$HOST_PORT/"
    local seen
    seen=$(from_outside "http://[$V6G_OUTSIDE_HOST_ADDR]:$HOST_PORT/cgi-bin/ip" 2>/dev/null | tail -n 1 || true)
    say "  web1 sees the client through the host address as: ${seen:-no answer} (outside is [$V6G_OUTSIDE_NS_ADDR])"
}

# --------------------------------------------------------------------------
# 1. Packages and build
# --------------------------------------------------------------------------
if ((EUID != 0)); then
    die "run as root: sudo $0"
fi
START=$SECONDS
# v6guard logs via tracing, which colours its output unless NO_COLOR is set
[[ -t 2 ]] || export NO_COLOR=1

hdr "1. packages and build"
v6g_install_packages

# cargo: on PATH, or (under sudo, whose secure_path hides ~/.cargo/bin) the
# invoking user's rustup install -- then build as that user so that target/
# stays theirs and their toolchain is used.
CARGO=() BUILD_AS=
if [[ -n "${SUDO_USER:-}" && "$SUDO_USER" != root ]]; then
    user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    if [[ -n "$user_home" && -x "$user_home/.cargo/bin/cargo" ]] &&
       runuser -u "$SUDO_USER" -- test -w "$repo" &&
       { [[ ! -e "$repo/target" ]] || runuser -u "$SUDO_USER" -- test -w "$repo/target"; }; then
        BUILD_AS=$SUDO_USER
        CARGO=(runuser -u "$SUDO_USER" -- env "HOME=$user_home"
               "PATH=$user_home/.cargo/bin:/usr/local/bin:/usr/bin:/bin" cargo)
    fi
fi
if ((${#CARGO[@]} == 0)); then
    if command -v cargo >/dev/null 2>&1; then
        CARGO=(cargo)
    elif [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
        CARGO=("${HOME:-/root}/.cargo/bin/cargo")   # rustup's default place; sudo drops it from PATH
    else
        cat >&2 <<'EOF'
demo: ERROR: `cargo` not found on PATH.
  v6guard needs Rust >= 1.85 (edition 2024); Debian 12's rustc (1.63) is too old.
  Install it with rustup (https://rustup.rs):
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
  then re-run (cargo is looked up on PATH, in ~/.cargo/bin, and in the sudo
  user's ~/.cargo/bin).  Elsewhere:   sudo env "PATH=$PATH" scripts/demo.sh
EOF
        exit 1
    fi
fi
say "cargo: $("${CARGO[@]}" --version)${BUILD_AS:+ (building as $BUILD_AS)}"
build=(build --release)
[[ -f "$repo/Cargo.lock" ]] && build+=(--locked)
say "building: cargo ${build[*]}  (the first build takes a few minutes)"
build_started=$SECONDS
if ! (cd "$repo" && "${CARGO[@]}" "${build[@]}" --quiet); then
    die "cargo build failed (v6guard needs Rust >= 1.85 and libnftnl-dev/libmnl-dev)"
fi
[[ -x "$BIN" ]] || die "build produced no $BIN"
say "built $BIN in $((SECONDS - build_started))s"

# --------------------------------------------------------------------------
# 2. Docker, image, outside world
# --------------------------------------------------------------------------
hdr "2. dockerd, image, outside namespace"
v6g_ensure_dockerd
v6g_ensure_image
say "dockerd $("$DOCKER" version -f '{{.Server.Version}}')"

# A table kept by an earlier run (V6G_DEMO_KEEP_RULES) still guards the demo
# bridge and would hide the leak: it is the demo's own, so remove it.
if nft list table ip6 v6guard 2>/dev/null | grep -qF "\"$BRIDGE\""; then
    say "removing table ip6 v6guard left by an earlier demo run (it guards $BRIDGE)"
    nft delete table ip6 v6guard
fi
PREEXISTING_TABLES=$(v6guard_tables | paste -sd' ' -)
if [[ -n "$PREEXISTING_TABLES" ]]; then
    say "NOTE: v6guard table(s) already installed: $PREEXISTING_TABLES.  They stay in place, so"
    say "      BEFORE below is not Docker-only; at the end table ip6 v6guard is re-applied, not removed."
fi

SETUP_STARTED=1
remove_demo_objects   # leftovers of an interrupted earlier run
v6g_outside_up "$NS"
say "outside world: namespace $NS at $V6G_OUTSIDE_NS_ADDR, routed via the host"

# --------------------------------------------------------------------------
# 3. Docker network and containers
# --------------------------------------------------------------------------
hdr "3. Docker network $NET (IPv6, ICC off, bridge $BRIDGE) and two web containers"
"$DOCKER" network create --ipv6 --subnet "$SUBNET" \
    -o com.docker.network.bridge.enable_icc=false \
    -o com.docker.network.bridge.name="$BRIDGE" "$NET" >/dev/null
"$DOCKER" run -d --name "$WEB1" --network "$NET" -p "$HOST_PORT:80" "$V6G_IMAGE" \
    sh -c "$WEB_CMD" >/dev/null
"$DOCKER" run -d --name "$WEB2" --network "$NET" "$V6G_IMAGE" \
    sh -c "$WEB_CMD" >/dev/null

IP6_1=$(v6g_container_ip6 "$WEB1" "$NET")
IP6_2=$(v6g_container_ip6 "$WEB2" "$NET")
IP4_1=$("$DOCKER" inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$WEB1")
[[ -n "$IP6_1" && -n "$IP6_2" && -n "$IP4_1" ]] || die "containers got no addresses (IPv6: '$IP6_1' '$IP6_2', IPv4: '$IP4_1')"
say "web1 = $WEB1  $IP6_1  $IP4_1  published: $HOST_PORT->80/tcp, also listens on 81"
say "web2 = $WEB2  $IP6_2  publishes nothing, listens on 80 and 81"

# Wait until both servers listen and web1's published port answers from outside.
for c in "$WEB1" "$WEB2"; do
    for _ in $(seq 1 40); do
        if "$DOCKER" exec "$c" sh -c 'netstat -lnt | grep -q ":80 " && netstat -lnt | grep -q ":81 "' 2>/dev/null; then
            break
        fi
        sleep 0.25
    done
done
for _ in $(seq 1 20); do
    http_ok ip netns exec "$NS" curl -g -sS -m 1 "http://[$IP6_1]:80/" && break
    sleep 0.5
done

# --------------------------------------------------------------------------
# 4. Before
# --------------------------------------------------------------------------
hdr "4. BEFORE v6guard: Docker's own firewall only"
run_probes before
echo
leaks=0
[[ "${STATE[before:c2c6]}" == OPEN ]] && { say "LEAK: ICC is off, yet web2 reaches web1 over IPv6 (IPv4 is ${STATE[before:c2c4]})"; leaks=$((leaks + 1)); }
[[ "${STATE[before:unpub]}" == OPEN ]] && { say "LEAK: web1's unpublished port 81 is reachable from outside over IPv6"; leaks=$((leaks + 1)); }
[[ "${STATE[before:unpub2]}" == OPEN ]] && { say "LEAK: web2 publishes nothing, yet its port 80 is reachable from outside over IPv6"; leaks=$((leaks + 1)); }
if ((leaks == 0)); then
    if [[ -n "$PREEXISTING_TABLES" ]]; then
        say "no IPv6 leak visible: an already installed v6guard table guards it (see NOTE above)"
    else
        say "no IPv6 leak visible here (is Docker managing IPv6 itself, e.g. ip6tables on?)"
    fi
fi

# --------------------------------------------------------------------------
# 5. v6guard render + apply
# --------------------------------------------------------------------------
hdr "5a. v6guard render  (dry run: the nft transaction apply performs)"
"$BIN" render | sed 's/^/    /'

hdr "5b. v6guard apply"
set +e
"$BIN" apply
apply_rc=$?
set -e
if ((apply_rc == 3)); then
    die "v6guard stood down: Docker manages IPv6 itself on this host (see message above); nothing to demo"
elif ((apply_rc != 0)); then
    die "v6guard apply failed (exit $apply_rc)"
fi
say "installed: $(nft list tables ip6 | grep -c 'v6guard') v6guard table(s); bridge-nf-call-ip6tables=$(cat /proc/sys/net/bridge/bridge-nf-call-ip6tables 2>/dev/null || echo n/a)"

# --------------------------------------------------------------------------
# 6. After
# --------------------------------------------------------------------------
hdr "6. AFTER v6guard"
run_probes after
echo
say "non-zero drop counters in table ip6 v6guard:"
nft list table ip6 v6guard | grep -E 'counter packets [1-9]' | sed 's/^[[:space:]]*/      /' || say "  (none)"

# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------
hdr "summary"
printf '  %-42s %-9s %-9s %-9s\n' "" BEFORE AFTER "WANT(AFTER)"
summary() {
    local want=${EXPECT[after:$2]}
    printf '  %-42s %-9s %-9s %-9s %s\n' "$1" "${STATE[before:$2]}" "${STATE[after:$2]}" "$want" \
        "$([[ "${STATE[after:$2]}" == "$want" ]] && echo ok || echo FAIL)"
}
summary "web2 -> web1 IPv6 :80 (ICC off)" c2c6
summary "web2 -> web1 IPv4 :80 (ICC off, Docker)" c2c4
summary "outside -> web1 IPv6 :80 (published)" pub
summary "outside -> web1 IPv6 :81 (unpublished)" unpub
summary "outside -> web2 IPv6 :80 (unpublished)" unpub2
summary "outside -> host IPv6 :$HOST_PORT (DNAT)" host6
echo
say "total time: $((SECONDS - START))s"
if ((FAILED > 0)); then
    say "RESULT: $FAILED probe(s) after v6guard apply are not as expected"
    exit 1
fi
say "RESULT: v6guard closed the IPv6 leak; the published port still works"
if [[ -z "${V6G_DEMO_KEEP_RULES:-}" ]]; then
    say "(the table is removed on exit; sudo V6G_DEMO_KEEP_RULES=1 scripts/demo.sh keeps it)"
fi
