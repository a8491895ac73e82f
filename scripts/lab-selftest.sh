#!/usr/bin/env bash
# Lab self-test: demonstrates the Docker IPv6 "leak" v6guard is meant to close.
#
#   (a) container-to-container IPv6 works on an ICC=false network
#   (b) from an "outside" netns, a container's IPv6 address is reachable on
#       both its published port (80) and an unpublished port (81)
#
# Prints diagnostics (bridge-nf, Docker's firewall state, network Options,
# NetworkSettings.Ports shapes). Cleans up containers/network/netns on exit;
# leaves dockerd running. Read-only w.r.t. nftables/ip6tables.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

NET=v6g-selftest
SUBNET=fd76:6700:0:10::/64
NS=v6g-out
CA=v6g-st-a     # -p 8080:80, httpd :80 + httpd :81 (unpublished) + UDP :9999 (unpublished)
CB=v6g-st-b     # -p 127.0.0.1:8081:80, httpd :80
CC=v6g-st-c     # plain client on the same network
CD=v6g-st-d     # plain client on the default bridge (docker0)

cleanup() {
    local rc=$?
    set +e
    "$DOCKER" rm -f "$CA" "$CB" "$CC" "$CD" >/dev/null 2>&1
    "$DOCKER" network rm "$NET" >/dev/null 2>&1
    v6g_outside_down "$NS"
    echo "== cleanup done (exit $rc)"
}
trap cleanup EXIT

PASS=0; FAIL=0
result() { # result "label" expected(yes|no) actual(yes|no)
    local verdict=MATCH
    [[ "$2" == "$3" ]] || verdict=UNEXPECTED
    [[ "$verdict" == MATCH ]] && PASS=$((PASS + 1)) || FAIL=$((FAIL + 1))
    printf '  %-62s expected=%-3s got=%-3s %s\n' "$1" "$2" "$3" "$verdict"
}
yn() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
hdr() { printf '\n== %s\n' "$*"; }

hdr "setup"
v6g_install_packages
v6g_ensure_dockerd
v6g_ensure_image
"$DOCKER" rm -f "$CA" "$CB" "$CC" "$CD" >/dev/null 2>&1 || true
"$DOCKER" network rm "$NET" >/dev/null 2>&1 || true
v6g_outside_up "$NS"

"$DOCKER" network create --ipv6 --subnet "$SUBNET" \
    -o com.docker.network.bridge.enable_icc=false "$NET" >/dev/null
"$DOCKER" run -d --name "$CA" --network "$NET" -p 8080:80 "$V6G_IMAGE" \
    sh -c 'httpd -p 81 -h /www; nc.openbsd -6 -u -l -k -p 9999 >/tmp/udp.txt & exec httpd -f -p 80 -h /www' >/dev/null
"$DOCKER" run -d --name "$CB" --network "$NET" -p 127.0.0.1:8081:80 "$V6G_IMAGE" \
    httpd -f -p 80 -h /www >/dev/null
"$DOCKER" run -d --name "$CC" --network "$NET" "$V6G_IMAGE" sleep 3600 >/dev/null
"$DOCKER" run -d --name "$CD" "$V6G_IMAGE" sleep 3600 >/dev/null

A6=$(v6g_container_ip6 "$CA" "$NET")
B6=$(v6g_container_ip6 "$CB" "$NET")
C6=$(v6g_container_ip6 "$CC" "$NET")
D6=$(v6g_container_ip6 "$CD" bridge)
GW6=$("$DOCKER" network inspect -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' "$NET")
BR="br-$("$DOCKER" network inspect -f '{{.Id}}' "$NET" | cut -c1-12)"
echo "network $NET bridge=$BR gateways: $GW6"
echo "$CA=$A6  $CB=$B6  $CC=$C6  $CD(docker0)=$D6"
# wait until the servers listen
for _ in $(seq 1 20); do
    if "$DOCKER" exec "$CA" sh -c 'netstat -lnt | grep -q ":81 " && netstat -lnt | grep -q ":80 "' 2>/dev/null; then break; fi
    sleep 0.25
done

hdr "environment"
echo "bridge-nf-call-ip6tables: $(cat /proc/sys/net/bridge/bridge-nf-call-ip6tables 2>/dev/null || echo 'n/a (no br_netfilter)')"
echo "net.ipv6.conf.all.forwarding: $(cat /proc/sys/net/ipv6/conf/all/forwarding)"
echo "dockerd: $("$DOCKER" version -f '{{.Server.Version}}')  config: $(tr -d '\n ' <"$V6G_DAEMON_JSON" 2>/dev/null || echo '?')"
echo "--- $CA routes / addrs (inside):"
"$DOCKER" exec "$CA" ip -6 route
"$DOCKER" exec "$CA" ip -6 -o addr show dev eth0 | awk '{print "   ", $4, $5, $6}'
echo "--- host IPv6 routes:"
ip -6 route | sed 's/^/    /'

hdr "(a) container-to-container over IPv6 on an ICC=false network"
result "$CC -> [$A6]:80 (http)" yes \
    "$(yn "$DOCKER" exec "$CC" timeout 3 wget -q -O- "http://[$A6]:80/")"
result "$CC -> [$A6]:81 (http, unpublished)" yes \
    "$(yn "$DOCKER" exec "$CC" timeout 3 wget -q -O- "http://[$A6]:81/")"
result "$CB -> [$A6]:80 (http)" yes \
    "$(yn "$DOCKER" exec "$CB" timeout 3 wget -q -O- "http://[$A6]:80/")"
result "$CC -> $A6 ping6" yes \
    "$(yn "$DOCKER" exec "$CC" ping -6 -c1 -W2 "$A6")"
A4=$("$DOCKER" inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$CA")
result "$CC -> $A4:80 over IPv4 (ICC enforced by iptables)" no \
    "$(yn "$DOCKER" exec "$CC" timeout 3 wget -q -O- "http://$A4:80/")"

result "$CD (docker0) -> [$A6]:81 across networks (isolation is v4-only)" yes \
    "$(yn "$DOCKER" exec "$CD" timeout 3 wget -q -O- "http://[$A6]:81/")"
result "$CC -> outside 2001:db8:76::2 ping6 (egress, routed, no v6 NAT)" yes \
    "$(yn "$DOCKER" exec "$CC" ping -6 -c1 -W2 2001:db8:76::2)"

hdr "(b) outside netns $NS (2001:db8:76::2) -> container IPv6"
result "outside -> [$A6]:80 (published port, container addr)" yes \
    "$(yn ip netns exec "$NS" curl -g -sS -m 3 "http://[$A6]:80/")"
result "outside -> [$A6]:81 (UNPUBLISHED port)" yes \
    "$(yn ip netns exec "$NS" curl -g -sS -m 3 "http://[$A6]:81/")"
result "outside -> [$B6]:80 (published only on 127.0.0.1)" yes \
    "$(yn ip netns exec "$NS" curl -g -sS -m 3 "http://[$B6]:80/")"
result "outside -> [$C6]:80 (nothing published, nothing listening)" no \
    "$(yn ip netns exec "$NS" nc -6 -z -w 2 "$C6" 80)"
result "outside -> [$D6] ping6 (docker0 container)" yes \
    "$(yn ip netns exec "$NS" busybox ping -6 -c1 -W2 "$D6")"
result "outside -> $A6 ping6" yes \
    "$(yn ip netns exec "$NS" busybox ping -6 -c1 -W2 "$A6")"
ip netns exec "$NS" sh -c "echo v6g-udp-probe | nc -6 -u -w 1 $A6 9999" >/dev/null 2>&1 || true
sleep 0.5
result "outside -> [$A6]:9999/udp (UNPUBLISHED)" yes \
    "$(yn "$DOCKER" exec "$CA" grep -q v6g-udp-probe /tmp/udp.txt)"
# Published port via the host's own IPv6 address: no ip6 DNAT (ip6tables=false)
# and no docker-proxy (userland-proxy=false) -> expected unreachable.
# ...but dockerd itself holds a placeholder listening socket on [::]:8080
# (userland-proxy=false "dummy proxy"): TCP connect succeeds, then silence.
result "outside -> [2001:db8:76::1]:8080 TCP connect (dockerd placeholder socket)" yes \
    "$(yn ip netns exec "$NS" nc -6 -z -w 2 2001:db8:76::1 8080)"
result "host -> [::1]:8080 TCP connect (dockerd placeholder socket)" yes \
    "$(yn nc -6 -z -w 2 ::1 8080)"
result "outside -> [2001:db8:76::1]:8080 HTTP (host v6 addr, published port)" no \
    "$(yn ip netns exec "$NS" curl -g -sS -m 3 "http://[2001:db8:76::1]:8080/")"
result "host -> [::1]:8080 HTTP" no \
    "$(yn curl -g -sS -m 3 "http://[::1]:8080/")"
result "host -> 127.0.0.1:8080 (IPv4 DNAT, sanity)" yes \
    "$(yn curl -sS -m 3 "http://127.0.0.1:8080/")"
result "host -> 127.0.0.1:8081 (IPv4 DNAT, sanity)" yes \
    "$(yn curl -sS -m 3 "http://127.0.0.1:8081/")"

echo "--- host listening sockets for published ports (ss -ltnp):"
ss -ltnp | grep -E ':808[01] ' | sed 's/^/    /' || true

hdr "docker network inspect .Options"
for n in bridge "$NET"; do
    printf '%-14s EnableIPv6=%s Options=%s\n' "$n" \
        "$("$DOCKER" network inspect -f '{{.EnableIPv6}}' "$n")" \
        "$("$DOCKER" network inspect -f '{{json .Options}}' "$n")"
    printf '%-14s IPAM.Config=%s\n' "" "$("$DOCKER" network inspect -f '{{json .IPAM.Config}}' "$n")"
done

hdr "docker inspect .NetworkSettings.Ports"
for c in "$CA" "$CB" "$CC" "$CD"; do
    printf '%-10s %s\n' "$c" "$("$DOCKER" inspect -f '{{json .NetworkSettings.Ports}}' "$c")"
    printf '%-10s HostConfig.PortBindings=%s\n' "" "$("$DOCKER" inspect -f '{{json .HostConfig.PortBindings}}' "$c")"
done
echo "docker port $CA: $("$DOCKER" port "$CA" | tr '\n' ';')"
echo "docker port $CB: $("$DOCKER" port "$CB" | tr '\n' ';')"

hdr "firewall state created by Docker (read-only)"
echo "--- nft list tables:"
nft list tables | sed 's/^/    /'
echo "--- nft chains per table (rule counts):"
nft -a list ruleset | awk '
    /^table /{t=$2" "$3} /^\tchain /{c=$2; n[t" "c]=0; order[++k]=t" "c}
    /^\t\t/ && c!="" && !/^\t\ttype / {n[t" "c]++}
    /^\t}/{c=""}
    END{for(i=1;i<=k;i++) printf "    %-40s %d rules\n", order[i], n[order[i]]}'
echo "--- ip6tables-save ($(readlink -f "$(command -v ip6tables-save)")):"
ip6tables-save 2>&1 | sed 's/^/    /'
if command -v ip6tables-legacy-save >/dev/null; then
    echo "--- ip6tables-legacy-save:"
    ip6tables-legacy-save 2>&1 | sed 's/^/    /'
fi
echo "--- iptables-save (IPv4, for comparison; DOCKER-ISOLATION/ICC):"
iptables-save 2>&1 | grep -E "^(\*|:|-A (FORWARD|DOCKER))" | sed 's/^/    /'

hdr "summary: $PASS expected, $FAIL unexpected"
[[ $FAIL -eq 0 ]]
