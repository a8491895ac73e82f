//! Policy files: every rejected case with its exact message, and what valid files give.

use std::path::Path;

use super::*;
use crate::config::PortSpec;
use crate::snapshot::{GatewayMode, Protocol};

const FILE: &str = "/etc/v6guard/policies/10-web.yaml";

fn parse(text: &str) -> Result<Policy, ConfigErrors> {
    parse_policy_file(Path::new(FILE), text)
}

/// The messages of a file that must be rejected, one per error.
fn rejected(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(policy) => panic!("accepted: {policy:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn at(line: usize, column: usize) -> Option<Location> {
    Some(Location {
        file: FILE.into(),
        line,
        column,
    })
}

#[test]
fn a_full_valid_file() {
    let policy = parse(
        "# Public web server\n\
         networks:\n\
         \x20 frontend:\n\
         \x20   icc: false\n\
         \x20   nat66: true\n\
         \x20   snat_address: 2001:db8::80\n\
         containers:\n\
         \x20 web:\n\
         \x20   allow_from: [2001:db8::/32, \"fd00::/8\", 2001:db8:ffff::1]\n\
         \x20   expose: [\"9100/tcp\", 8000-8010/udp, 443]\n\
         \x20   deny: [22]\n",
    )
    .unwrap();
    let frontend = &policy.networks["frontend"];
    assert_eq!(frontend.icc, Some(false));
    assert_eq!(frontend.nat66, Some(true));
    assert_eq!(frontend.snat_address, Some("2001:db8::80".parse().unwrap()));
    assert_eq!(frontend.ndp_proxy, None);
    assert_eq!(frontend.origin, at(3, 3));
    let ndp = parse("networks:\n  frontend:\n    ndp_proxy:\n      interface: eth0\n").unwrap();
    assert_eq!(
        ndp.networks["frontend"].ndp_proxy,
        Some(NdpProxy {
            interface: "eth0".into()
        })
    );
    let web = &policy.containers["web"];
    let prefixes: Vec<String> = web
        .allow_from
        .iter()
        .flatten()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        prefixes,
        ["2001:db8::/32", "fd00::/8", "2001:db8:ffff::1/128"]
    );
    assert_eq!(
        web.expose,
        vec![
            PortSpec::single(Protocol::Tcp, 9100),
            PortSpec {
                protocol: Protocol::Udp,
                first: 8000,
                last: 8010
            },
            PortSpec::single(Protocol::Tcp, 443),
        ]
    );
    assert_eq!(web.deny, vec![PortSpec::single(Protocol::Tcp, 22)]);
    assert_eq!(web.origin, at(8, 3));
}

#[test]
fn empty_files_and_sections_are_no_policy() {
    assert_eq!(parse("").unwrap(), Policy::default());
    assert_eq!(parse("# all commented out\n").unwrap(), Policy::default());
    assert_eq!(
        parse("networks:\ncontainers:\n").unwrap(),
        Policy::default()
    );
    let policy = parse("containers:\n  web:\n").unwrap();
    assert_eq!(policy.containers["web"].allow_from, None);
    assert_eq!(
        parse("containers: {db: {allow_from: []}}")
            .unwrap()
            .containers["db"]
            .allow_from,
        Some(vec![])
    );
}

#[test]
fn a_typo_in_a_key_is_an_error_naming_the_valid_keys() {
    assert_eq!(
        rejected("networks:\n  frontend:\n    iccc: false\n"),
        [format!(
            "{FILE}:3:5: networks.frontend.iccc: unknown key (did you mean icc?); expected one \
             of icc, nat66, snat_address, ndp_proxy, gateway_mode"
        )]
    );
}

#[test]
fn unknown_keys_at_every_level() {
    assert_eq!(
        rejected(
            "network:\n  x: {}\ncontainers:\n  db:\n    denny: [5432]\n    ports: [1]\n\
             networks:\n  n:\n    ndp_proxy: {iface: eth0}\n"
        ),
        [
            format!(
                "{FILE}:1:1: network: unknown key (did you mean networks?); expected one of \
                 networks, containers"
            ),
            format!(
                "{FILE}:5:5: containers.db.denny: unknown key (did you mean deny?); expected one \
                 of allow_from, expose, deny"
            ),
            format!(
                "{FILE}:6:5: containers.db.ports: unknown key; expected one of allow_from, \
                 expose, deny"
            ),
            format!(
                "{FILE}:9:5: networks.n.ndp_proxy: the interface is missing; expected \
                 ndp_proxy: {{interface: IFNAME}}"
            ),
            format!(
                "{FILE}:9:17: networks.n.ndp_proxy.iface: unknown key; expected one of interface"
            ),
        ]
    );
}

#[test]
fn a_prefix_longer_than_128_is_an_error() {
    assert_eq!(
        rejected(
            "containers:\n  web:\n    allow_from:\n      - 2001:db8::/32\n      - 2001:db8::/129\n"
        ),
        [format!(
            "{FILE}:5:9: containers.web.allow_from[1]: `2001:db8::/129` has prefix length 129, \
             over 128; expected an IPv6 prefix with a length from 0 to 128, such as 2001:db8::/32"
        )]
    );
}

#[test]
fn host_bits_ipv4_and_non_lists_are_errors() {
    assert_eq!(
        rejected(
            "containers:\n  web:\n    allow_from: [fd00::1/64, 192.0.2.0/24]\n  db:\n    \
             allow_from: 2001:db8::/32\n"
        ),
        [
            format!(
                "{FILE}:3:18: containers.web.allow_from[0]: `fd00::1/64` has host bits set; \
                 expected the network fd00::/64 (or fd00::1/128 for this one address)"
            ),
            format!(
                "{FILE}:3:30: containers.web.allow_from[1]: `192.0.2.0/24` is IPv4; v6guard \
                 filters IPv6 only; expected an IPv6 prefix such as 2001:db8::/32, or one IPv6 \
                 address"
            ),
            format!(
                "{FILE}:5:17: containers.db.allow_from: `2001:db8::/32` is not a list; expected \
                 a list of IPv6 prefixes, such as 2001:db8::/32, such as [2001:db8::/32]"
            ),
        ]
    );
}

#[test]
fn bad_ports_are_errors() {
    assert_eq!(
        rejected("containers:\n  db:\n    deny: [\"5432/tcp\", 70000, 80/icmp, \"8080:80\"]\n"),
        [
            format!(
                "{FILE}:3:24: containers.db.deny[1]: `70000` has port 70000, outside 1 to 65535; \
                 expected PORT[-PORT][/tcp|udp|sctp] with ports from 1 to 65535, such as 80/tcp"
            ),
            format!(
                "{FILE}:3:31: containers.db.deny[2]: `80/icmp` has protocol `icmp`; expected \
                 tcp, udp or sctp after the slash, such as 53/udp"
            ),
            format!(
                "{FILE}:3:40: containers.db.deny[3]: `8080:80` looks like a -p HOST:CONTAINER \
                 mapping; expected the container port alone; PORT[-PORT][/tcp|udp|sctp] with \
                 ports from 1 to 65535, such as 80/tcp"
            ),
        ]
    );
}

#[test]
fn a_port_both_exposed_and_denied_is_an_error() {
    assert_eq!(
        rejected("containers:\n  app:\n    expose: [8000-8100]\n    deny: [8080]\n"),
        [format!(
            "{FILE}:3:14: containers.app.expose[0]: 8000-8100/tcp overlaps 8080/tcp in deny[0]; \
             expected each port either exposed or denied, not both"
        )]
    );
}

#[test]
fn gateway_modes_are_dockers_words() {
    let policy = parse(
        "networks:\n  a: {gateway_mode: nat}\n  b: {gateway_mode: routed}\n  \
         c: {gateway_mode: nat-unprotected}\n  d: {icc: false}\n",
    )
    .unwrap();
    let mode = |name: &str| policy.networks[name].gateway_mode;
    assert_eq!(mode("a"), Some(GatewayMode::Nat));
    assert_eq!(mode("b"), Some(GatewayMode::Routed));
    assert_eq!(mode("c"), Some(GatewayMode::NatUnprotected));
    assert_eq!(mode("d"), None, "absent: Docker's option, else the default");
}

#[test]
fn a_bad_gateway_mode_is_an_error_at_its_value() {
    assert_eq!(
        rejected("networks:\n  a:\n    gateway_mode: Routed\n  b:\n    gateway_mode: [nat]\n"),
        [
            format!(
                "{FILE}:3:19: networks.a.gateway_mode: `Routed` is not a gateway mode; expected \
                 one of nat, routed, nat-unprotected, isolated (Docker's words)"
            ),
            format!(
                "{FILE}:5:19: networks.b.gateway_mode: a list is not a string; expected one of \
                 nat, routed, nat-unprotected, isolated (Docker's words)"
            ),
        ]
    );
}

#[test]
fn bad_network_values_are_errors() {
    assert_eq!(
        rejected(
            "networks:\n  a:\n    icc: yes\n    nat66: false\n    snat_address: 2001:db8::1\n  \
             b:\n    snat_address: fe80::1\n    ndp_proxy: {interface: a-very-long-ifname}\n  \
             c:\n    ndp_proxy:\n"
        ),
        [
            format!("{FILE}:3:10: networks.a.icc: `yes` is not a boolean; expected true or false"),
            format!(
                "{FILE}:5:5: networks.a.snat_address: SNAT is set but nat66 is false; expected \
                 either nat66: false or an snat_address, not both"
            ),
            format!(
                "{FILE}:7:19: networks.b.snat_address: `fe80::1` is link-local, which is not \
                 routed; expected a global or unique-local IPv6 address of this host, such as \
                 2001:db8::25"
            ),
            format!(
                "{FILE}:8:28: networks.b.ndp_proxy.interface: `a-very-long-ifname` is 18 bytes \
                 long; expected an interface name of 1 to 15 characters without '/', ':' or \
                 spaces, such as eth0"
            ),
            format!(
                "{FILE}:10:5: networks.c.ndp_proxy: the interface is missing; expected \
                 ndp_proxy: {{interface: IFNAME}}"
            ),
        ]
    );
}

#[test]
fn bad_names_and_shapes_are_errors() {
    assert_eq!(
        rejected("containers:\n  /web: {}\n  ok: [1]\nnetworks: [a, b]\n"),
        [
            format!(
                "{FILE}:2:3: containers.\"/web\": `/web` starts with '/', which is not part of \
                 the name; expected `web`"
            ),
            format!(
                "{FILE}:3:7: containers.ok: a list is not a mapping; expected a mapping with keys \
                 allow_from, expose, deny"
            ),
            format!(
                "{FILE}:4:11: networks: a list is not a mapping; expected a mapping of network \
                 names to settings"
            ),
        ]
    );
    assert_eq!(
        rejected("- networks\n"),
        [format!(
            "{FILE}:1:1: (top level): a list is not a mapping; expected a mapping with keys \
             networks, containers"
        )]
    );
}

#[test]
fn yaml_syntax_and_duplicate_keys_are_errors() {
    assert_eq!(
        rejected("containers:\n  web:\n    deny: [80\n"),
        [format!(
            "{FILE}:4:1: not valid YAML: did not find expected ',' or ']', while parsing a flow \
             sequence at line 3 column 11 (inside [...] or {{...}}, quote values that start with ':', \
             such as \"::/0\")"
        )]
    );
    let duplicate = rejected("containers:\n  web: {}\n  web: {deny: [80]}\n");
    assert_eq!(duplicate.len(), 1);
    assert!(
        duplicate[0].starts_with(&format!("{FILE}:")),
        "{duplicate:?}"
    );
    assert!(
        duplicate[0].contains(r#"duplicate entry with key "web""#),
        "{duplicate:?}"
    );
}

#[test]
fn the_same_name_in_two_files_is_an_error_naming_both() {
    let first = parse_policy_file(Path::new("/p/10-a.yaml"), "containers:\n  web: {}\n").unwrap();
    let second = parse_policy_file(
        Path::new("/p/20-b.yaml"),
        "# b\ncontainers:\n  web: {deny: [1]}\n",
    )
    .unwrap();
    let errors = combine(vec![first.clone(), second]).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "/p/20-b.yaml:3:3: containers.web: already defined at /p/10-a.yaml:2:3; expected each \
         container in one policy file only; merge the two entries"
    );
    let other = parse_policy_file(Path::new("/p/20-b.yaml"), "networks:\n  web: {}\n").unwrap();
    let combined = combine(vec![first, other]).unwrap();
    assert!(combined.containers.contains_key("web") && combined.networks.contains_key("web"));
}
