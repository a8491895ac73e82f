//! What containers listen on, read through their init PIDs from the kernel's socket tables,
//! against real containers on the lab dockerd; and containers in the host's network
//! namespace kept in the snapshot with their network mode.

mod common;

use std::net::Ipv6Addr;
use std::time::Duration;

use common::{Container, IMAGE, docker, eventually, system_lock};
use v6guard::listen::{ListenScope, Listener, read_listeners};
use v6guard::snapshot::Protocol;

/// `docker run -d --name NAME ARGS...`, removed on drop.
fn run(name: &str, args: &[&str]) -> Container {
    let _ = common::run(common::DOCKER, &["rm", "-f", name]);
    let mut all = vec!["run", "-d", "--name", name];
    all.extend(args);
    docker(&all);
    Container {
        name: name.to_string(),
    }
}

fn id_of(container: &Container) -> String {
    docker(&["inspect", "-f", "{{.Id}}", &container.name])
        .trim()
        .to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The listeners of `container`, through the PID v6guard's Docker reader finds, once
/// `ready` holds for them (a server binds a moment after `docker run` returns).
fn listeners_when(container: &Container, ready: impl Fn(&[Listener]) -> bool) -> Vec<Listener> {
    let id = id_of(container);
    let pids = runtime().block_on(async {
        let client = v6guard::docker::connect(&common::docker_host())
            .await
            .expect("connect to dockerd");
        v6guard::docker::read_pids(&client, std::slice::from_ref(&id))
            .await
            .expect("read PIDs")
    });
    let pid = *pids.get(&id).expect("a running container has a PID");
    let mut last = Vec::new();
    eventually(Duration::from_secs(10), || {
        last = read_listeners(pid).expect("read listeners");
        ready(&last)
    });
    last
}

fn has(listeners: &[Listener], protocol: Protocol, port: u16) -> Option<ListenScope> {
    listeners
        .iter()
        .find(|l| l.protocol == protocol && l.port == port)
        .map(Listener::scope)
}

#[test]
fn listeners_of_web_udp_and_ipv4_only_containers() {
    let Some(_lock) = system_lock() else { return };
    let web = Container::web("v6gt-lst-web", "bridge", &[]);
    let udp = run("v6gt-lst-udp", &[IMAGE, "nc", "-6", "-u", "-l", "5353"]);
    let v4 = run(
        "v6gt-lst-v4",
        &[IMAGE, "httpd", "-f", "-p", "0.0.0.0:82", "-h", "/www"],
    );

    let listeners = listeners_when(&web, |l| {
        has(l, Protocol::Tcp, 80).is_some() && has(l, Protocol::Tcp, 81).is_some()
    });
    let address: Ipv6Addr = web.ipv6("bridge").parse().unwrap();
    for port in [80, 81] {
        assert_eq!(
            has(&listeners, Protocol::Tcp, port),
            Some(ListenScope::AllIpv6),
            "busybox httpd -p {port} binds ::: {listeners:?}"
        );
        assert!(v6guard::listen::listens_on(
            &listeners,
            Protocol::Tcp,
            port,
            address
        ));
    }

    let listeners = listeners_when(&udp, |l| has(l, Protocol::Udp, 5353).is_some());
    assert_eq!(
        has(&listeners, Protocol::Udp, 5353),
        Some(ListenScope::AllIpv6),
        "{listeners:?}"
    );
    assert_eq!(has(&listeners, Protocol::Tcp, 5353), None);

    let listeners = listeners_when(&v4, |l| has(l, Protocol::Tcp, 82).is_some());
    assert_eq!(
        has(&listeners, Protocol::Tcp, 82),
        Some(ListenScope::Ipv4Only),
        "{listeners:?}"
    );
    let address: Ipv6Addr = v4.ipv6("bridge").parse().unwrap();
    assert!(!v6guard::listen::listens_on(
        &listeners,
        Protocol::Tcp,
        82,
        address
    ));
}

#[test]
fn host_network_containers_are_in_the_snapshot_with_their_mode() {
    let Some(_lock) = system_lock() else { return };
    let host = run(
        "v6gt-lst-host",
        &["--network", "host", IMAGE, "sleep", "600"],
    );
    let web = Container::web("v6gt-lst-owner", "bridge", &[]);
    let sidecar = run(
        "v6gt-lst-sidecar",
        &[
            "--network",
            "container:v6gt-lst-owner",
            IMAGE,
            "sleep",
            "600",
        ],
    );
    let ids = [id_of(&host), id_of(&web), id_of(&sidecar)];
    let containers = runtime().block_on(async {
        let client = v6guard::docker::connect(&common::docker_host())
            .await
            .expect("connect to dockerd");
        v6guard::docker::read_containers_by_id(&client, &ids)
            .await
            .expect("read containers")
    });
    let find = |name: &str| {
        containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} is missing from the snapshot: {containers:?}"))
    };
    let host = find("v6gt-lst-host");
    assert!(host.shares_host_network(), "{host:?}");
    assert!(
        host.endpoints.iter().all(|e| e.ipv6.is_none()),
        "no address of its own: {host:?}"
    );
    let sidecar = find("v6gt-lst-sidecar");
    assert_eq!(sidecar.shares_network_of(), Some(ids[1].as_str()));
    let web = find("v6gt-lst-owner");
    assert!(!web.shares_host_network());
    assert_eq!(web.shares_network_of(), None);
    // Docker 20.10 reports the default network as "default", 26 as "bridge".
    assert!(
        matches!(web.network_mode.as_str(), "default" | "bridge"),
        "{}",
        web.network_mode
    );
}
