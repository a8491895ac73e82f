//! Port specifications: `80`, `80/udp`, `8000-8010/tcp`, as Docker writes ports.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::values::Invalid;
use crate::snapshot::Protocol;

/// One container port or an inclusive range of them, for one protocol. Ports are container
/// ports (the right side of `-p HOST:CONTAINER`): over routed IPv6, clients reach the
/// container's own address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    pub protocol: Protocol,
    /// First port, 1..=65535.
    pub first: u16,
    /// Last port, `first..=65535`; equal to `first` for a single port.
    pub last: u16,
}

const EXPECTED: &str = "PORT[-PORT][/tcp|udp|sctp] with ports from 1 to 65535, such as 80/tcp";

impl PortSpec {
    /// A single port.
    pub fn single(protocol: Protocol, port: u16) -> Self {
        PortSpec {
            protocol,
            first: port,
            last: port,
        }
    }

    pub fn ports(&self) -> RangeInclusive<u16> {
        self.first..=self.last
    }

    /// Whether this spec covers `port` over `protocol`.
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && self.ports().contains(&port)
    }

    /// Whether the two specs share at least one port of the same protocol.
    pub fn overlaps(&self, other: &PortSpec) -> bool {
        self.protocol == other.protocol && self.first <= other.last && other.first <= self.last
    }

    /// The ports of `self` that `other` does not cover: none, one or two ranges.
    pub fn subtract(&self, other: &PortSpec) -> Vec<PortSpec> {
        if !self.overlaps(other) {
            return vec![*self];
        }
        let mut rest = Vec::new();
        if self.first < other.first {
            rest.push(PortSpec {
                last: other.first - 1,
                ..*self
            });
        }
        if other.last < self.last {
            rest.push(PortSpec {
                first: other.last + 1,
                ..*self
            });
        }
        rest
    }
}

/// Remove every port in `remove` from `specs`.
pub fn subtract_all(specs: &[PortSpec], remove: &[PortSpec]) -> Vec<PortSpec> {
    remove.iter().fold(specs.to_vec(), |kept, r| {
        kept.iter().flat_map(|spec| spec.subtract(r)).collect()
    })
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.first, self.protocol)
        } else {
            write!(f, "{}-{}/{}", self.first, self.last, self.protocol)
        }
    }
}

impl Serialize for PortSpec {
    /// As text (`8000-8010/tcp`), the way it is written in files and labels.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for PortSpec {
    type Err = Invalid;

    /// `PORT`, `PORT/PROTO`, `FIRST-LAST/PROTO`; no protocol means tcp, as in Docker.
    fn from_str(text: &str) -> Result<Self, Invalid> {
        if text.contains(':') {
            return Err(Invalid::new(
                format!("`{text}` looks like a -p HOST:CONTAINER mapping"),
                format!("the container port alone; {EXPECTED}"),
            ));
        }
        let (ports, protocol) = match text.split_once('/') {
            Some((ports, protocol)) => (ports, parse_protocol(text, protocol)?),
            None => (text, Protocol::Tcp),
        };
        let (first, last) = match ports.split_once('-') {
            Some((first, last)) => (parse_port(text, first)?, parse_port(text, last)?),
            None => {
                let port = parse_port(text, ports)?;
                (port, port)
            }
        };
        if first > last {
            return Err(Invalid::new(
                format!("`{text}` is a range that ends before it starts"),
                EXPECTED,
            ));
        }
        Ok(PortSpec {
            protocol,
            first,
            last,
        })
    }
}

fn parse_protocol(whole: &str, protocol: &str) -> Result<Protocol, Invalid> {
    Protocol::parse(protocol).ok_or_else(|| {
        Invalid::new(
            format!("`{whole}` has protocol `{protocol}`"),
            "tcp, udp or sctp after the slash, such as 53/udp",
        )
    })
}

fn parse_port(whole: &str, port: &str) -> Result<u16, Invalid> {
    match port.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        Ok(n) => Err(Invalid::new(
            format!("`{whole}` has port {n}, outside 1 to 65535"),
            EXPECTED,
        )),
        Err(_) => Err(Invalid::new(format!("`{whole}` is not a port"), EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> PortSpec {
        text.parse().unwrap()
    }

    fn rejected(text: &str) -> String {
        let invalid = text.parse::<PortSpec>().unwrap_err();
        format!("{}; expected {}", invalid.problem, invalid.expected)
    }

    #[test]
    fn docker_forms_parse() {
        assert_eq!(spec("80"), PortSpec::single(Protocol::Tcp, 80));
        assert_eq!(spec("53/udp"), PortSpec::single(Protocol::Udp, 53));
        assert_eq!(spec("3868/sctp").protocol, Protocol::Sctp);
        let range = spec("8000-8010/tcp");
        assert_eq!((range.first, range.last), (8000, 8010));
        assert_eq!(range.to_string(), "8000-8010/tcp");
        assert_eq!(spec("443").to_string(), "443/tcp");
        assert_eq!(spec("65535").last, 65535);
    }

    #[test]
    fn bad_ports_say_why() {
        assert_eq!(
            rejected("70000/tcp"),
            "`70000/tcp` has port 70000, outside 1 to 65535; expected PORT[-PORT][/tcp|udp|sctp] \
             with ports from 1 to 65535, such as 80/tcp"
        );
        assert!(rejected("0").contains("has port 0"));
        assert!(rejected("80/icmp").contains("has protocol `icmp`"));
        assert!(rejected("80/TCP").contains("has protocol `TCP`"));
        assert!(rejected("9000-8000").contains("ends before it starts"));
        assert!(rejected("8080:80").contains("-p HOST:CONTAINER"));
        assert!(rejected("http").contains("is not a port"));
        assert!(rejected("").contains("is not a port"));
        assert!(rejected("80-").contains("is not a port"));
    }

    #[test]
    fn subtraction_splits_ranges() {
        let range = spec("8000-8010");
        assert_eq!(
            range.subtract(&spec("8005")),
            vec![spec("8000-8004"), spec("8006-8010")]
        );
        assert_eq!(range.subtract(&spec("8000-8010")), vec![]);
        assert_eq!(range.subtract(&spec("7000-8003")), vec![spec("8004-8010")]);
        assert_eq!(range.subtract(&spec("8005/udp")), vec![range]);
        assert_eq!(
            subtract_all(
                &[spec("1-10"), spec("20")],
                &[spec("5"), spec("20"), spec("9-12")]
            ),
            vec![spec("1-4"), spec("6-8")]
        );
    }

    #[test]
    fn serialises_as_text() {
        assert_eq!(
            serde_json::to_string(&spec("53/udp")).unwrap(),
            r#""53/udp""#
        );
    }
}
