# shellcheck shell=bash
# v6guard lab harness library.  Source it:   . scripts/lib.sh
#
# Safe under `set -euo pipefail`; it never changes shell options itself.
#
# Functions:
#   v6g_install_packages        idempotent apt install of the lab's packages
#   v6g_ensure_dockerd          use a running dockerd, or start our own (see below); with
#                               V6G_ENGINE=26, stop our 20.10 and start Debian 13's 26.1.5
#   v6g_stop_dockerd            stop only a dockerd that this library started (either engine)
#   v6g_trixie_build            build (once, cached) the Debian 13 root with docker.io 26.1.5
#   v6g_engine_env              print `export ...` lines pointing clients at V6G_ENGINE's dockerd
#   (V6G_DOCKERD_NETNS=NS with V6G_ENGINE=26: start dockerd inside network namespace NS;
#    V6G_IP6TABLES=true: Docker firewalls IPv6 itself)
#   v6g_ensure_image            build local image v6guard-lab/busybox:latest if missing
#   v6g_outside_up NAME         netns NAME = "outside world" 2001:db8:76::2, routed via host
#   v6g_outside_down NAME       remove netns NAME and its host veth (idempotent)
#   v6g_outside_ifnames NAME    print "<host-ifname> <ns-ifname>" for NAME
#   v6g_container_ip6 CTR [NET] print the container's global IPv6 address
#
# Lab address plan (never use fd00::/64 -- that's eth0):
#   docker0 fixed-cidr-v6 fd76:6700:0:1::/64, test networks fd76:6700:0:N::/64 (N>=10)
#   outside world 2001:db8:76::/64 (host veth ::1, namespace ::2)
#
# Hard rules honoured: never flushes the nft ruleset, touches no nft table
# (Docker itself creates its iptables-nft tables), never touches eth0.

if [[ -n "${V6G_LIB_SOURCED:-}" ]]; then
    return 0
fi
V6G_LIB_SOURCED=1

# Debian's Docker 20.10 client. /usr/local/bin/docker (a Docker 28 client) shadows it.
: "${DOCKER:=/usr/bin/docker}"
: "${DOCKERD:=/usr/sbin/dockerd}"
V6G_LAB_DIR=/run/v6guard-lab
# The 20.10 lab dockerd's config (V6G_DAEMON_JSON: the selected engine's).
V6G_DAEMON_JSON_2010=$V6G_LAB_DIR/daemon.json
V6G_DAEMON_JSON=$V6G_DAEMON_JSON_2010
V6G_DOCKERD_LOG=$V6G_LAB_DIR/dockerd.log
V6G_DOCKERD_PID=$V6G_LAB_DIR/dockerd.pid
V6G_IMAGE=v6guard-lab/busybox:latest
# Bump when the image content recipe changes; v6g_ensure_image rebuilds on mismatch (on every
# engine: 5 replaced a Docker 26 image that carried rev 4 but not its content, without ping).
V6G_IMAGE_REV=5
# shellcheck disable=SC2034  # for users of the library
V6G_OUTSIDE_NET=2001:db8:76::/64
V6G_OUTSIDE_HOST_ADDR=2001:db8:76::1
V6G_OUTSIDE_NS_ADDR=2001:db8:76::2
# IPv4 on the same veth (TEST-NET-2, documentation range), so tests can put Docker's IPv4
# behaviour beside v6guard's IPv6 behaviour. Not TEST-NET-1: some machines number eth0 from
# 192.0.2.0/24. v6g_outside_up refuses to run if either prefix is already in use here.
V6G_OUTSIDE_NET4=198.51.100.0/24
V6G_OUTSIDE_HOST_ADDR4=198.51.100.1
V6G_OUTSIDE_NS_ADDR4=198.51.100.2

# Which engine the lab runs: 20.10 (the host's Debian 12 docker.io) or 26 (Debian 13's
# docker.io 26.1.5 in its own root, see "Debian 13 engine" below). Never both at once.
: "${V6G_ENGINE:=20.10}"
# The Debian 13 root, cached outside the repository and rebuilt when missing.
: "${V6G_TRIXIE_ROOT:=/var/cache/v6guard-lab/trixie}"
# dockerd 26's /run: a host directory, so the socket and pidfile are reachable from here.
V6G_TRIXIE_RUN=$V6G_LAB_DIR/trixie-run
V6G_TRIXIE_SOCK=$V6G_TRIXIE_RUN/docker.sock
V6G_TRIXIE_LOG=$V6G_LAB_DIR/dockerd-26.log
V6G_TRIXIE_PKGS=docker.io,iptables,iproute2,ca-certificates

if [[ "$V6G_ENGINE" == 26 ]]; then
    # dockerd 26 reads its default config file under its own root; v6guard finds it there.
    V6G_DAEMON_JSON=$V6G_TRIXIE_ROOT/etc/docker/daemon.json
    export DOCKER_HOST=unix://$V6G_TRIXIE_SOCK
elif [[ "$V6G_ENGINE" != 20.10 ]]; then
    printf '[v6g] ERROR: V6G_ENGINE=%s: expected 20.10 or 26\n' "$V6G_ENGINE" >&2
    return 1
fi

v6g_log() { printf '[v6g] %s\n' "$*" >&2; }
v6g_die() { printf '[v6g] ERROR: %s\n' "$*" >&2; return 1; }

# --------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------
# netcat-openbsd is not in the original list: Debian's busybox-static `nc` has
# no UDP (-u) support, so the image carries OpenBSD netcat (+ its libs) as `nc`.
V6G_PACKAGES=(docker.io nftables busybox-static iproute2 libnftnl-dev libmnl-dev
              debootstrap  # the Debian 13 engine's root
              pkg-config curl netcat-openbsd ansible-core python3-apt dpkg-dev  # packaging
              lintian ansible-lint  # tests/packaging.rs lints the .deb and the role
              linux-libc-dev  # tests/hardening.rs: system-call numbers for its seccomp filter
              systemd)  # systemd-analyze checks the unit file (PID 1 need not be systemd)

v6g_install_packages() {
    local p missing=()
    for p in "${V6G_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    v6g_log "installing: ${missing[*]}"
    local out
    out=$(mktemp)
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$out" 2>&1; then
        cat "$out" >&2; rm -f "$out"
        v6g_die "apt-get update failed"; return 1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >"$out" 2>&1; then
        tail -n 30 "$out" >&2; rm -f "$out"
        v6g_die "apt-get install failed"; return 1
    fi
    rm -f "$out"
    v6g_log "installed: ${missing[*]}"
}

# --------------------------------------------------------------------------
# dockerd
# --------------------------------------------------------------------------
v6g_docker_up() {
    # `docker info` exits 1 when the daemon is unreachable; ServerVersion must be non-empty.
    local v
    v=$("$DOCKER" info --format '{{.ServerVersion}}' 2>/dev/null) || return 1
    [[ -n "$v" ]]
}

# Is PID (from our pidfile) a live dockerd started with our config file?
v6g__our_dockerd_pid() {
    local pid
    [[ -r "$V6G_DOCKERD_PID" ]] || return 1
    pid=$(tr -dc '0-9' <"$V6G_DOCKERD_PID")
    [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config-file $V6G_DAEMON_JSON_2010" || return 1
    printf '%s\n' "$pid"
}

# The lab daemon's config. V6G_USERLAND_PROXY=true|false (default false) picks the proxy mode,
# V6G_IP6TABLES=true|false (default false) whether Docker firewalls IPv6 itself (augment mode's
# tests); Docker before 27 accepts ip6tables only with experimental on.
v6g__lab_daemon_json() {
    local experimental=""
    if [[ "${V6G_IP6TABLES:-false}" == true ]]; then
        experimental=$',\n  "experimental": true'
    fi
    printf '{\n  "ipv6": true,\n  "fixed-cidr-v6": "fd76:6700:0:1::/64",\n  "icc": false,\n  "userland-proxy": %s,\n  "ip6tables": %s%s\n}\n' \
        "${V6G_USERLAND_PROXY:-false}" "${V6G_IP6TABLES:-false}" "$experimental"
}

v6g__write_daemon_json() {
    mkdir -p "$V6G_LAB_DIR" "$(dirname "$V6G_DAEMON_JSON")"
    local want
    want=$(v6g__lab_daemon_json)
    if [[ ! -f "$V6G_DAEMON_JSON" ]] || [[ "$(cat "$V6G_DAEMON_JSON")" != "$want" ]]; then
        printf '%s\n' "$want" >"$V6G_DAEMON_JSON"
    fi
}

# v6g_restart_dockerd: restart our lab dockerd so it picks up V6G_USERLAND_PROXY.
# Only for a dockerd this library started.
v6g_restart_dockerd() {
    if v6g_docker_up && ! v6g__our_engine_pid >/dev/null; then
        v6g_die "the running dockerd was not started by scripts/lib.sh; not restarting it"; return 1
    fi
    v6g_stop_dockerd
    v6g__write_daemon_json
    v6g_ensure_dockerd
}

v6g_ensure_dockerd() {
    if [[ "$V6G_ENGINE" == 26 ]]; then
        v6g__ensure_trixie_dockerd
        return
    fi
    if v6g_docker_up; then
        if v6g__our_dockerd_pid >/dev/null; then
            v6g_log "dockerd (started by v6g lib, pid $(v6g__our_dockerd_pid)) is running"
        else
            v6g_log "using already-running dockerd (not started by v6g lib; its config may differ from $V6G_DAEMON_JSON)"
        fi
        return 0
    fi

    # Never two dockerds at once: they would fight over docker0 and the iptables chains.
    v6g__stop_trixie_dockerd
    v6g__write_daemon_json
    local netns=()
    v6g__dockerd_netns

    local pid
    if pid=$(v6g__our_dockerd_pid); then
        v6g_log "our dockerd (pid $pid) exists but does not answer yet; waiting"
    else
        rm -f "$V6G_DOCKERD_PID"
        v6g_log "starting dockerd --config-file $V6G_DAEMON_JSON (log $V6G_DOCKERD_LOG)"
        # setsid: own session, so it survives the calling script / its process group.
        (
            v6g__close_inherited_fds
            exec setsid "${netns[@]}" "$DOCKERD" --config-file "$V6G_DAEMON_JSON" \
                --pidfile "$V6G_DOCKERD_PID"
        ) </dev/null >>"$V6G_DOCKERD_LOG" 2>&1 &
        pid=$!
    fi
    v6g__wait_dockerd "$pid" "$V6G_DOCKERD_PID" "$V6G_DOCKERD_LOG"
}

# Set the caller's `netns` array to the command prefix that runs dockerd in
# V6G_DOCKERD_NETNS (empty: the host's namespace), and prepare that namespace. In its own
# namespace, whatever Docker writes (ip6tables too) goes away with the namespace, and the
# host's tables never see it.
v6g__dockerd_netns() {
    if [[ -z "${V6G_DOCKERD_NETNS:-}" ]]; then
        v6g__host_prepare
        return
    fi
    # nsenter, not `ip netns exec`: that remounts /sys for the namespace, without the
    # cgroup mounts dockerd needs.
    netns=(nsenter --net="/run/netns/$V6G_DOCKERD_NETNS")
    "${netns[@]}" bash -c ". '$(readlink -f "${BASH_SOURCE[0]}")' && v6g__host_prepare"
}

# Close every descriptor above 2 this shell inherited, before it execs dockerd: a dockerd
# outlives its caller, and one started under `flock /run/v6guard-tests.lock` would otherwise
# hold the test lock (and block every other test run) for as long as it runs.
v6g__close_inherited_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if [[ "$fd" =~ ^[0-9]+$ ]] && ((fd > 2)); then
            eval "exec $fd>&-" 2>/dev/null || true
        fi
    done
}

# What both engines need from the host before dockerd starts.
v6g__host_prepare() {
    # Forwarding on *before* dockerd starts, so dockerd does not flip it itself
    # (and with it an ip6 FORWARD DROP policy).
    sysctl -q -w net.ipv6.conf.all.forwarding=1 >/dev/null
    sysctl -q -w net.ipv6.conf.default.forwarding=1 >/dev/null

    if command -v modprobe >/dev/null 2>&1; then
        modprobe br_netfilter >/dev/null 2>&1 || v6g_log "modprobe br_netfilter failed (ignored)"
    else
        v6g_log "no modprobe binary (ignored)"
    fi
    if [[ -e /proc/sys/net/bridge/bridge-nf-call-ip6tables ]]; then
        v6g_log "br_netfilter present: bridge-nf-call-ip6tables=$(cat /proc/sys/net/bridge/bridge-nf-call-ip6tables)"
    else
        v6g_log "br_netfilter NOT present (/proc/sys/net/bridge/bridge-nf-call-ip6tables missing)"
    fi
}

# v6g__wait_dockerd PID PIDFILE LOG: wait up to 30 s for the started dockerd to answer.
v6g__wait_dockerd() {
    local pid=$1 pidfile=$2 log=$3 i
    for ((i = 0; i < 60; i++)); do
        if v6g_docker_up; then
            v6g_log "dockerd is up (pid $(cat "$pidfile" 2>/dev/null || echo "$pid"))"
            return 0
        fi
        # (setsid may fork when called from a job-control shell, so also accept
        # the pid dockerd wrote itself; give it a short grace period)
        if ((i > 6)) && [[ ! -d /proc/$pid ]] && ! v6g__our_engine_pid >/dev/null; then
            break
        fi
        sleep 0.5
    done
    v6g_log "dockerd did not come up; last lines of $log:"
    tail -n 30 "$log" >&2 || true
    return 1
}

# The pid of the lab dockerd of the selected engine, if running.
v6g__our_engine_pid() {
    if [[ "$V6G_ENGINE" == 26 ]]; then
        v6g__trixie_dockerd_pid
    else
        v6g__our_dockerd_pid
    fi
}

# Stop the lab dockerd of the selected engine (only one this library started).
v6g_stop_dockerd() {
    if [[ "$V6G_ENGINE" == 26 ]]; then
        v6g__stop_trixie_dockerd
        return
    fi
    local pid
    if ! pid=$(v6g__our_dockerd_pid); then
        v6g_log "no dockerd started by v6g lib is running; nothing to stop"
        return 0
    fi
    v6g__stop_pid "$pid"
    rm -f "$V6G_DOCKERD_PID"
}

# Whether PID runs (a zombie, exited but not reaped by its parent, does not).
v6g__pid_alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# TERM, wait up to 30 s, then KILL.
v6g__stop_pid() {
    local pid=$1 i
    v6g_log "stopping dockerd pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        v6g__pid_alive "$pid" || break
        sleep 0.5
    done
    if v6g__pid_alive "$pid"; then
        v6g_log "dockerd pid $pid did not exit after 30s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
}

# --------------------------------------------------------------------------
# Debian 13 engine: docker.io 26.1.5 in its own root (pivot_root), in the host's network namespace
# --------------------------------------------------------------------------
# The root is made by debootstrap from Debian's own packages (about a minute) and cached in
# V6G_TRIXIE_ROOT. dockerd runs in a private mount namespace (its mounts vanish with it):
# the root bind-mounted on itself so dockerd can pivot containers' roots, /proc /sys /dev
# bound recursively, and its /run a host directory so clients here reach its socket. It
# reads its default config file, $V6G_TRIXIE_ROOT/etc/docker/daemon.json, as dockerd sees it.

v6g_trixie_build() {
    if [[ -x "$V6G_TRIXIE_ROOT/usr/sbin/dockerd" ]]; then
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 || { v6g_die "debootstrap is missing (apt-get install debootstrap)"; return 1; }
    local tmp=$V6G_TRIXIE_ROOT.tmp
    rm -rf "$tmp"
    mkdir -p "$(dirname "$V6G_TRIXIE_ROOT")"
    v6g_log "building the Debian 13 root in $V6G_TRIXIE_ROOT (debootstrap, about a minute)"
    if ! debootstrap --variant=minbase --include="$V6G_TRIXIE_PKGS" trixie "$tmp" \
            http://deb.debian.org/debian >"$V6G_TRIXIE_ROOT.log" 2>&1; then
        tail -n 20 "$V6G_TRIXIE_ROOT.log" >&2
        rm -rf "$tmp"
        v6g_die "debootstrap trixie failed (log $V6G_TRIXIE_ROOT.log)"; return 1
    fi
    rm -rf "$V6G_TRIXIE_ROOT"
    mv "$tmp" "$V6G_TRIXIE_ROOT"
    v6g_log "built $V6G_TRIXIE_ROOT ($(chroot "$V6G_TRIXIE_ROOT" /usr/sbin/dockerd --version))"
}

# The pid of a running dockerd whose root is V6G_TRIXIE_ROOT.
v6g__trixie_dockerd_pid() {
    local pid root
    [[ -r "$V6G_TRIXIE_RUN/docker.pid" ]] || return 1
    pid=$(tr -dc '0-9' <"$V6G_TRIXIE_RUN/docker.pid")
    [[ -n "$pid" && -d /proc/$pid ]] || return 1
    # By device and inode: dockerd pivoted into the root, so /proc/PID/root reads back as /.
    root=$(stat -L -c %d:%i "/proc/$pid/root/" 2>/dev/null) || return 1
    [[ "$root" == "$(stat -L -c %d:%i "$V6G_TRIXIE_ROOT/")" ]] || return 1
    printf '%s\n' "$pid"
}

v6g__ensure_trixie_dockerd() {
    if v6g_docker_up; then
        v6g_log "dockerd 26 (pid $(v6g__trixie_dockerd_pid || echo '?')) is running"
        return 0
    fi
    v6g_trixie_build
    # Never two dockerds at once: stop our 20.10 first (and refuse to stop anyone else's).
    if V6G_ENGINE=20.10 DOCKER_HOST= v6g_docker_up; then
        v6g__our_dockerd_pid >/dev/null \
            || { v6g_die "a dockerd not started by scripts/lib.sh runs; not replacing it with 26"; return 1; }
        local other
        other=$(v6g__our_dockerd_pid)
        v6g__stop_pid "$other"
        rm -f "$V6G_DOCKERD_PID"
    fi
    v6g__write_daemon_json
    local netns=()
    v6g__dockerd_netns
    mkdir -p "$V6G_TRIXIE_RUN"
    rm -f "$V6G_TRIXIE_RUN/docker.pid" "$V6G_TRIXIE_SOCK"
    local root
    root=$(readlink -f "$V6G_TRIXIE_ROOT")
    v6g_log "starting dockerd 26 in $root${V6G_DOCKERD_NETNS:+, network namespace $V6G_DOCKERD_NETNS} (config $V6G_DAEMON_JSON, log $V6G_TRIXIE_LOG)"
    # shellcheck disable=SC2016  # expanded by the inner shell
    (
    v6g__close_inherited_fds
    exec setsid "${netns[@]}" unshare --mount --propagation private -- sh -c '
        set -e
        root=$1 run=$2
        mount --bind "$root" "$root"
        mount --rbind /proc "$root/proc"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        mount --bind "$run" "$root/run"
        # pivot_root, not chroot: `docker exec` enters a container by setns() into its mount
        # namespace, which starts from the top of the mounts stacked on the namespace root.
        # Under a chroot, runc pivots the container root into place at the chroot directory,
        # not there, and exec then ran the host'"'"'s binaries in the container'"'"'s network
        # namespace (no ping, the host'"'"'s ip).
        cd "$root"
        mkdir -p .v6g-oldroot
        pivot_root . .v6g-oldroot
        umount -l /.v6g-oldroot
        exec /usr/sbin/dockerd
    ' v6g-dockerd26 "$root" "$V6G_TRIXIE_RUN"
    ) </dev/null >>"$V6G_TRIXIE_LOG" 2>&1 &
    v6g__wait_dockerd "$!" "$V6G_TRIXIE_RUN/docker.pid" "$V6G_TRIXIE_LOG"
}

v6g__stop_trixie_dockerd() {
    local pid
    pid=$(v6g__trixie_dockerd_pid) || return 0
    v6g__stop_pid "$pid"
    rm -f "$V6G_TRIXIE_RUN/docker.pid"
}

# Print shell `export` lines that point docker clients, v6guard and the tests at the selected
# engine's dockerd and daemon.json (eval "$(v6g_engine_env)").
v6g_engine_env() {
    printf 'export V6G_ENGINE=%q\n' "$V6G_ENGINE"
    printf 'export V6G_LAB_DAEMON_JSON=%q\n' "$V6G_DAEMON_JSON"
    if [[ "$V6G_ENGINE" == 26 ]]; then
        printf 'export DOCKER_HOST=%q\n' "unix://$V6G_TRIXIE_SOCK"
    else
        printf 'unset DOCKER_HOST\n'
    fi
}

# --------------------------------------------------------------------------
# Image
# --------------------------------------------------------------------------
# v6guard-lab/busybox:latest: /bin/busybox (static) with all applets symlinked
# in /bin, plus OpenBSD netcat (+ its shared libs) as /bin/nc and
# /bin/nc.openbsd (TCP+UDP, -6, -l, -k, -z, -w) when the host has it.
#
# CAVEAT: Debian's busybox-static is built with FEATURE_SH_STANDALONE, so
# inside `sh -c '...'` a bare `nc` runs busybox's applet (TCP only, no -u/-6/-z)
# regardless of PATH.  Inside sh use `nc.openbsd` (or `/bin/nc`).  A direct
# `docker run IMG nc ...` / `docker exec CTR nc ...` gets OpenBSD netcat.
#
# Serve HTTP:   httpd -f -p PORT -h /www        (/www/index.html = "v6guard-lab ok")
# UDP listen:   nc.openbsd -6 -u -l -k -p PORT
# TCP listen:   nc.openbsd -6 -l -k -p PORT     (or another httpd)
# Probe:        nc.openbsd -z -w 2 ADDR PORT ;  timeout 3 wget -q -O- http://[ADDR]:PORT/
# CAVEAT: busybox 1.35 (Debian) `wget -T N` SEGFAULTS (exit 139), on the host
# too -- wrap with `timeout N wget ...` instead (exit 143 on timeout).
v6g_ensure_image() {
    local rev
    rev=$("$DOCKER" image inspect --format '{{index .Config.Labels "v6guard-lab.rev"}}' \
            "$V6G_IMAGE" 2>/dev/null || true)
    if [[ "$rev" == "$V6G_IMAGE_REV" ]]; then
        return 0
    fi
    local bb
    bb=$(command -v busybox 2>/dev/null || true)
    [[ -x /bin/busybox ]] && bb=/bin/busybox
    if [[ -z "$bb" ]] || ! v6g__file_is_static "$bb"; then
        v6g_die "need static /bin/busybox (package busybox-static)"; return 1
    fi

    local old_id
    old_id=$("$DOCKER" image inspect --format '{{.Id}}' "$V6G_IMAGE" 2>/dev/null || true)
    v6g_log "building image $V6G_IMAGE (rev $V6G_IMAGE_REV)"
    local root
    root=$(mktemp -d /tmp/v6g-rootfs.XXXXXX)
    mkdir -p "$root"/{bin,sbin,etc,www,tmp,root,proc,sys,dev,var/run}
    chmod 1777 "$root/tmp"
    cp "$bb" "$root/bin/busybox"
    local a
    while IFS= read -r a; do
        [[ -n "$a" && "$a" != busybox ]] || continue
        ln -sf busybox "$root/bin/$a"
    done < <("$root/bin/busybox" --list)

    local nco
    nco=$(command -v nc.openbsd 2>/dev/null || true)
    if [[ -n "$nco" ]]; then
        rm -f "$root/bin/nc"
        cp -L "$nco" "$root/bin/nc"
        ln -s nc "$root/bin/nc.openbsd"
        local lib
        while IFS= read -r lib; do
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done < <(ldd "$nco" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u)
    else
        v6g_log "WARNING: nc.openbsd not found; image nc is busybox nc (TCP only, no -u)"
    fi

    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    printf 'v6guard-lab ok\n' >"$root/www/index.html"
    # /cgi-bin/ip answers with the client address the container sees (REMOTE_ADDR), so tests
    # can tell a preserved source from a translated one.
    mkdir -p "$root/www/cgi-bin"
    v6g__ip_cgi >"$root/www/cgi-bin/ip"
    chmod 755 "$root/www/cgi-bin/ip"

    if ! tar --numeric-owner --owner=0 --group=0 -C "$root" -cf - . \
        | "$DOCKER" import \
            --change 'ENV PATH=/bin:/sbin' \
            --change 'CMD ["/bin/sh"]' \
            --change "LABEL v6guard-lab.rev=$V6G_IMAGE_REV" \
            - "$V6G_IMAGE" >/dev/null; then
        rm -rf "$root"
        v6g_die "docker import failed"; return 1
    fi
    rm -rf "$root"
    if [[ -n "$old_id" ]]; then
        # drop the superseded (now untagged) image; fails harmlessly if still in use
        "$DOCKER" image rm "$old_id" >/dev/null 2>&1 || true
    fi
    v6g_log "built $V6G_IMAGE"
}

# A CGI script for busybox httpd that prints the client's address.
v6g__ip_cgi() {
    # shellcheck disable=SC2016  # $REMOTE_ADDR is for the CGI script, not this shell
    printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%s\\n" "$REMOTE_ADDR"\n'
}

# v6g_www_dir: a document root on the host (for the outside namespace's httpd) with the
# same /cgi-bin/ip; prints its path.
v6g_www_dir() {
    local dir=/run/v6guard-lab/www
    mkdir -p "$dir/cgi-bin"
    printf 'v6guard-lab outside ok\n' >"$dir/index.html"
    v6g__ip_cgi >"$dir/cgi-bin/ip"
    chmod 755 "$dir/cgi-bin/ip"
    printf '%s\n' "$dir"
}

v6g__file_is_static() {
    # busybox-static's binary has no PT_INTERP; ldd says "not a dynamic executable"
    local out
    out=$(ldd "$1" 2>&1 || true)
    [[ "$out" == *"not a dynamic executable"* || "$out" == *"statically linked"* ]]
}

# --------------------------------------------------------------------------
# Outside-world namespace
# --------------------------------------------------------------------------
# Interface names are limited to 15 chars: NAME-h / NAME-n when NAME has <= 13
# chars, otherwise v6g<10 hex of md5(NAME)>-h / -n.
v6g_outside_ifnames() {
    local name=${1:-} base
    [[ -n "$name" ]] || { v6g_die "v6g_outside_ifnames: NAME required"; return 1; }
    if ((${#name} <= 13)); then
        base=$name
    else
        base=v6g$(printf '%s' "$name" | md5sum | cut -c1-10)
    fi
    printf '%s-h %s-n\n' "$base" "$base"
}

v6g_outside_up() {
    local name=${1:-} hif nif
    [[ -n "$name" ]] || { v6g_die "v6g_outside_up: NAME required"; return 1; }
    read -r hif nif < <(v6g_outside_ifnames "$name")

    # Start from a clean state (idempotent re-up).
    v6g_outside_down "$name"
    v6g__prefix_free "$V6G_OUTSIDE_NET" || return 1
    v6g__prefix_free "$V6G_OUTSIDE_NET4" || return 1

    # Host must route between the veth and the docker bridges.
    sysctl -q -w net.ipv6.conf.all.forwarding=1 >/dev/null

    ip netns add "$name" || { v6g_die "ip netns add $name failed"; return 1; }
    if ! ip link add "$hif" type veth peer name "$nif" netns "$name"; then
        v6g_outside_down "$name"; v6g_die "veth creation failed"; return 1
    fi
    # No DAD anywhere (link-local included): usable immediately.
    sysctl -q -w "net.ipv6.conf.$hif.accept_dad=0" >/dev/null || true
    ip netns exec "$name" sysctl -q -w "net.ipv6.conf.$nif.accept_dad=0" >/dev/null || true
    if ! { ip -6 addr add "$V6G_OUTSIDE_HOST_ADDR/64" dev "$hif" nodad &&
           ip link set "$hif" up &&
           ip -n "$name" link set lo up &&
           ip -n "$name" -6 addr add "$V6G_OUTSIDE_NS_ADDR/64" dev "$nif" nodad &&
           ip -n "$name" link set "$nif" up &&
           ip -n "$name" -6 route add default via "$V6G_OUTSIDE_HOST_ADDR" dev "$nif" &&
           ip -4 addr add "$V6G_OUTSIDE_HOST_ADDR4/24" dev "$hif" &&
           ip -n "$name" -4 addr add "$V6G_OUTSIDE_NS_ADDR4/24" dev "$nif" &&
           ip -n "$name" -4 route add default via "$V6G_OUTSIDE_HOST_ADDR4" dev "$nif"; }; then
        v6g_outside_down "$name"; v6g_die "configuring outside namespace $name failed"; return 1
    fi
    v6g_log "outside ns $name up: $nif $V6G_OUTSIDE_NS_ADDR/64 <-> host $hif $V6G_OUTSIDE_HOST_ADDR/64"
}

# Fail when a route for PREFIX already exists on the host (another link, or eth0, uses it):
# adding ours would shadow it.
v6g__prefix_free() {
    local prefix=$1 family=-4
    [[ "$prefix" == *:* ]] && family=-6
    if [[ -n "$(ip "$family" route show root "$prefix" 2>/dev/null; ip "$family" route show match "$prefix" 2>/dev/null | grep -v "^default")" ]]; then
        v6g_die "$prefix is already routed on this host ($(ip "$family" route show match "$prefix" | grep -v '^default' | head -n1)); the lab will not shadow it"
        return 1
    fi
}

v6g_outside_down() {
    local name=${1:-} hif nif
    [[ -n "$name" ]] || { v6g_die "v6g_outside_down: NAME required"; return 1; }
    read -r hif nif < <(v6g_outside_ifnames "$name")
    if ip link show dev "$hif" >/dev/null 2>&1; then
        ip link del dev "$hif" >/dev/null 2>&1 || true
    fi
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF -- "$name"; then
        ip netns del "$name" >/dev/null 2>&1 || true
    fi
    return 0
}

# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------
# v6g_container_ip6 CONTAINER [NETWORK] -> global IPv6 address (empty if none)
v6g_container_ip6() {
    local c=${1:-} net=${2:-}
    [[ -n "$c" ]] || { v6g_die "v6g_container_ip6: CONTAINER required"; return 1; }
    if [[ -n "$net" ]]; then
        "$DOCKER" inspect --format "{{with index .NetworkSettings.Networks \"$net\"}}{{.GlobalIPv6Address}}{{end}}" "$c"
    else
        "$DOCKER" inspect --format '{{range .NetworkSettings.Networks}}{{if .GlobalIPv6Address}}{{.GlobalIPv6Address}}{{"\n"}}{{end}}{{end}}' "$c" | head -n1
    fi
}
