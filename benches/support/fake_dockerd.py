#!/usr/bin/env python3
"""A fake Docker Engine API (20.10, API 1.41) on a unix socket, for measuring the real
`v6guard daemon` at N containers without starting N containers.

    fake_dockerd.py SOCKET N [PORTS]

Serves what v6guard reads (src/docker/): /_ping, /version, /info, /networks,
/containers/json (with the `id` filter), /containers/{id}/json, /images/{id}/json and
/events (an open stream that never sends an event). The host it describes is the benches'
synthetic one (benches/support/mod.rs): N containers on the bridge network `bench`
(fd76:6700:0:10::/64, bridge br-b0b0b0b0b0b0), each publishing PORTS ports (default 10;
8 TCP, 2 UDP) as `-p P:P` on 0.0.0.0 and ::, plus the default bridge docker0.
"""

import ipaddress
import json
import re
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

BENCH_NETWORK_ID = "b0" * 32
BRIDGE_NETWORK_ID = "d0" * 32
IMAGE_ID = "sha256:" + "e0" * 32
HOST_PORTS = 45_000


def container_address(index):
    return str(ipaddress.IPv6Address("fd76:6700:0:10::") + index + 2)


def container(index, ports):
    host = index + 2
    bindings = []
    for p in range(ports):
        proto = "udp" if p + 2 >= ports else "tcp"
        host_port = 20_000 + (index * ports + p) % HOST_PORTS
        for ip in ("0.0.0.0", "::"):
            bindings.append({"IP": ip, "PrivatePort": 8000 + p, "PublicPort": host_port, "Type": proto})
    return {
        "Id": f"{index:064x}",
        "Names": [f"/bench-{index:05}"],
        "Image": "v6guard-lab/busybox:latest",
        "ImageID": IMAGE_ID,
        "Command": "httpd -f",
        "Created": 1700000000,
        "Ports": bindings,
        "Labels": {},
        "State": "running",
        "Status": "Up 1 hour",
        "HostConfig": {"NetworkMode": "bench"},
        "NetworkSettings": {
            "Networks": {
                "bench": {
                    "NetworkID": BENCH_NETWORK_ID,
                    "EndpointID": f"{index:064x}",
                    "Gateway": "172.20.0.1",
                    "IPAddress": f"172.20.{host >> 8 & 255}.{host & 255}",
                    "IPPrefixLen": 16,
                    "IPv6Gateway": "fd76:6700:0:10::1",
                    "GlobalIPv6Address": container_address(index),
                    "GlobalIPv6PrefixLen": 64,
                    "MacAddress": "02:42:ac:14:00:02",
                }
            }
        },
        "Mounts": [],
    }


def network(net_id, name, subnet, options):
    return {
        "Name": name,
        "Id": net_id,
        "Created": "2026-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": True,
        "Internal": False,
        "Attachable": False,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": subnet}]},
        "Options": options,
        "Labels": {},
    }


class Host:
    def __init__(self, count, ports):
        self.containers = [container(i, ports) for i in range(count)]
        self.by_id = {c["Id"]: c for c in self.containers}
        self.networks = [
            network(BENCH_NETWORK_ID, "bench", "fd76:6700:0:10::/64", {}),
            network(
                BRIDGE_NETWORK_ID,
                "bridge",
                "fd76:6700:0:1::/64",
                {"com.docker.network.bridge.name": "docker0", "com.docker.network.bridge.default_bridge": "true"},
            ),
        ]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    host = None

    def log_message(self, *args):
        pass

    def send_json(self, value, status=200):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlparse(self.path)
        path = re.sub(r"^/v[0-9.]+", "", url.path)
        query = parse_qs(url.query)
        host = self.host
        if path == "/_ping":
            body = b"OK"
            self.send_response(200)
            self.send_header("Api-Version", "1.41")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path == "/version":
            self.send_json({"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "MinAPIVersion": "1.12",
                            "Os": "linux", "Arch": "amd64", "KernelVersion": "6.1.0"})
        elif path == "/info":
            self.send_json({"ID": "fake", "Containers": len(host.containers),
                            "ContainersRunning": len(host.containers), "ServerVersion": "20.10.24+dfsg1"})
        elif path == "/networks":
            self.send_json(host.networks)
        elif path.startswith("/networks/"):
            net_id = unquote(path.split("/")[2])
            match = [n for n in host.networks if n["Id"] == net_id or n["Name"] == net_id]
            self.send_json(match[0] if match else {"message": "no such network"}, 200 if match else 404)
        elif path == "/containers/json":
            filters = json.loads(query.get("filters", ["{}"])[0] or "{}")
            ids = filters.get("id")
            if isinstance(ids, dict):
                ids = list(ids)
            if ids:
                self.send_json([host.by_id[i] for i in ids if i in host.by_id])
            else:
                self.send_json(host.containers)
        elif re.match(r"^/containers/[^/]+/json$", path):
            cid = unquote(path.split("/")[2])
            c = host.by_id.get(cid)
            if c is None:
                self.send_json({"message": "No such container"}, 404)
            else:
                self.send_json({"Id": c["Id"], "Name": c["Names"][0], "Image": IMAGE_ID,
                                "State": {"Running": True, "Pid": 0},
                                "HostConfig": {"NetworkMode": "bench", "Links": None},
                                "NetworkSettings": c["NetworkSettings"], "Config": {"Labels": {}}})
        elif path.startswith("/images/"):
            self.send_json({"Id": IMAGE_ID, "RepoTags": ["v6guard-lab/busybox:latest"], "Config": {"Labels": {}}})
        elif path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Api-Version", "1.41")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                while True:
                    time.sleep(3600)
            except Exception:
                pass
        else:
            self.send_json({"message": f"fake dockerd: {path} not served"}, 404)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    sock, count = sys.argv[1], int(sys.argv[2])
    ports = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    Handler.host = Host(count, ports)
    with Server(sock, Handler) as server:
        print(f"fake dockerd: {count} containers x {ports} ports on {sock}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
