//! Parsers for the scalar values of configuration files and container labels.
//!
//! Each returns what is wrong and what was expected, so files (which add the place) and labels
//! (which add the label) can report the same mistake the same way.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv6Net;

use crate::snapshot::GatewayMode;

/// A value that does not parse: what is wrong with it and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub problem: String,
    pub expected: String,
}

impl Invalid {
    pub(crate) fn new(problem: impl Into<String>, expected: impl Into<String>) -> Self {
        Invalid {
            problem: problem.into(),
            expected: expected.into(),
        }
    }
}

const PREFIX_EXPECTED: &str = "an IPv6 prefix such as 2001:db8::/32, or one IPv6 address";

/// An IPv6 prefix, or one address meaning its /128. Host bits are an error rather than
/// silently cleared: `2001:db8::5/64` more often means "this host" than "this /64", and
/// guessing wrong would open a whole network; the message offers both readings.
pub fn parse_prefix(text: &str) -> Result<Ipv6Net, Invalid> {
    let (address, length) = match text.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (text, None),
    };
    let address = parse_ipv6(address, text, PREFIX_EXPECTED)?;
    let Some(length) = length else {
        return Ok(Ipv6Net::from(address));
    };
    let length: u8 = match length.parse() {
        Ok(length) if length <= 128 => length,
        _ => {
            return Err(Invalid::new(
                format!("`{text}` has prefix length {length}, over 128"),
                "an IPv6 prefix with a length from 0 to 128, such as 2001:db8::/32",
            ));
        }
    };
    let net = Ipv6Net::new(address, length).map_err(|_| Invalid::new(text, PREFIX_EXPECTED))?;
    if net.trunc() != net {
        return Err(Invalid::new(
            format!("`{text}` has host bits set"),
            format!(
                "the network {} (or {address}/128 for this one address)",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

/// An IPv6 address; an IPv4 one gets its own message, since v6guard filters IPv6 only.
fn parse_ipv6(address: &str, whole: &str, expected: &str) -> Result<Ipv6Addr, Invalid> {
    if let Ok(address) = address.parse::<Ipv6Addr>() {
        return Ok(address);
    }
    let problem = if address.parse::<Ipv4Addr>().is_ok() {
        format!("`{whole}` is IPv4; v6guard filters IPv6 only")
    } else {
        format!("`{whole}` is not an IPv6 address")
    };
    Err(Invalid::new(problem, expected))
}

/// One of Docker 28's gateway modes, in Docker's words (`nat`, `routed`,
/// `nat-unprotected`), so the same word works in a policy file and in `docker network
/// create -o com.docker.network.bridge.gateway_mode_ipv6=...`.
pub fn parse_gateway_mode(text: &str) -> Result<GatewayMode, Invalid> {
    GatewayMode::parse(text).ok_or_else(|| {
        let words: Vec<&str> = GatewayMode::ALL.iter().map(|m| m.as_str()).collect();
        Invalid::new(
            format!("`{text}` is not a gateway mode"),
            format!("one of {} (Docker's words)", words.join(", ")),
        )
    })
}

const SNAT_EXPECTED: &str =
    "a global or unique-local IPv6 address of this host, such as 2001:db8::25";

/// The source address for SNAT: one that can be routed back to this host.
pub fn parse_snat_address(text: &str) -> Result<Ipv6Addr, Invalid> {
    let address = parse_ipv6(text, text, SNAT_EXPECTED)?;
    let unusable = if address.is_unspecified() {
        Some("the unspecified address")
    } else if address.is_loopback() {
        Some("the loopback address")
    } else if address.is_multicast() {
        Some("a multicast address")
    } else if address.segments()[0] & 0xffc0 == 0xfe80 {
        Some("link-local, which is not routed")
    } else if address.to_ipv4_mapped().is_some() {
        Some("an IPv4-mapped address")
    } else {
        None
    };
    match unusable {
        Some(why) => Err(Invalid::new(format!("`{text}` is {why}"), SNAT_EXPECTED)),
        None => Ok(address),
    }
}

const INTERFACE_EXPECTED: &str =
    "an interface name of 1 to 15 characters without '/', ':' or spaces, such as eth0";

/// A Linux interface name, by the kernel's own rules (`dev_valid_name`).
pub fn parse_interface(text: &str) -> Result<String, Invalid> {
    let problem = if text.is_empty() {
        Some("the interface name is empty".to_string())
    } else if text.len() > 15 {
        Some(format!("`{text}` is {} bytes long", text.len()))
    } else if text == "." || text == ".." {
        Some(format!("`{text}` is not a name"))
    } else if text
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Some(format!(
            "`{text}` contains '/', ':', a space or a control character"
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Invalid::new(problem, INTERFACE_EXPECTED)),
        None => Ok(text.to_string()),
    }
}

const DURATION_EXPECTED: &str =
    "a duration from 1 second to 24 hours, such as 300 (seconds), 300s, 5m or 1h";

/// A duration: whole seconds, or a number with `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, Invalid> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => text.split_at(split),
        None => (text, "s"),
    };
    let multiplier = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|s| (1..=86_400).contains(s));
    match seconds {
        Some(seconds) => Ok(Duration::from_secs(seconds)),
        None => Err(Invalid::new(
            format!("`{text}` is not a duration v6guard accepts"),
            DURATION_EXPECTED,
        )),
    }
}

/// An address and port to listen on, such as `[::1]:9723`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, Invalid> {
    const EXPECTED: &str = "an address and port such as [::1]:9723 or 127.0.0.1:9723";
    match text.parse::<SocketAddr>() {
        Ok(address) if address.port() != 0 => Ok(address),
        Ok(_) => Err(Invalid::new(format!("`{text}` has port 0"), EXPECTED)),
        Err(_) => Err(Invalid::new(
            format!("`{text}` is not an address and port"),
            EXPECTED,
        )),
    }
}

/// A Docker API endpoint, as `--docker-host` and `DOCKER_HOST` take it.
pub fn parse_docker_host(text: &str) -> Result<String, Invalid> {
    const SCHEMES: [&str; 4] = ["unix://", "tcp://", "http://", "https://"];
    let rest = SCHEMES
        .iter()
        .find_map(|scheme| text.strip_prefix(scheme))
        .or_else(|| text.starts_with('/').then_some(text));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(text.to_string()),
        _ => Err(Invalid::new(
            format!("`{text}` is not a Docker endpoint"),
            "unix:///PATH, tcp://HOST:PORT, http(s)://HOST:PORT or an absolute socket path",
        )),
    }
}

/// An absolute path: v6guard runs as a service, where a relative path has no fixed meaning.
pub fn parse_absolute_path(text: &str) -> Result<PathBuf, Invalid> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(Invalid::new(
            format!("`{text}` is not an absolute path"),
            "an absolute path such as /etc/docker/daemon.json",
        ))
    }
}

/// A container name as Docker allows it (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), without the leading
/// `/` that `docker inspect` shows.
pub fn check_container_name(name: &str) -> Result<(), Invalid> {
    const EXPECTED: &str = "a container name as `docker ps` shows it: letters, digits, '_', '.', '-', starting with a letter or digit";
    if let Some(stripped) = name.strip_prefix('/') {
        return Err(Invalid::new(
            format!("`{name}` starts with '/', which is not part of the name"),
            format!("`{stripped}`"),
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(Invalid::new(
            format!("`{name}` cannot be a Docker container name"),
            EXPECTED,
        ))
    }
}

/// A network name: Docker accepts almost anything, so only emptiness is an error.
pub fn check_network_name(name: &str) -> Result<(), Invalid> {
    if name.trim().is_empty() {
        Err(Invalid::new(
            "the network name is empty",
            "a Docker network name",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem<T: std::fmt::Debug>(result: Result<T, Invalid>) -> String {
        let invalid = result.expect_err("should be rejected");
        format!("{}; expected {}", invalid.problem, invalid.expected)
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            parse_prefix("2001:db8::7").unwrap().to_string(),
            "2001:db8::7/128"
        );
        assert_eq!(parse_prefix("::/0").unwrap().prefix_len(), 0);
        assert_eq!(
            problem(parse_prefix("2001:db8::/129")),
            "`2001:db8::/129` has prefix length 129, over 128; expected an IPv6 prefix with a \
             length from 0 to 128, such as 2001:db8::/32"
        );
        assert_eq!(
            problem(parse_prefix("fd00::1/64")),
            "`fd00::1/64` has host bits set; expected the network fd00::/64 (or fd00::1/128 for \
             this one address)"
        );
        assert!(problem(parse_prefix("10.0.0.0/8")).starts_with("`10.0.0.0/8` is IPv4;"));
        assert!(problem(parse_prefix("example.com")).contains("is not an IPv6 address"));
        assert!(problem(parse_prefix("2001:db8::/x")).contains("prefix length x"));
        assert!(parse_prefix("fe80::1%eth0").is_err());
    }

    #[test]
    fn snat_addresses() {
        assert!(parse_snat_address("2001:db8::25").is_ok());
        assert!(parse_snat_address("fd00::25").is_ok());
        for bad in [
            "::",
            "::1",
            "ff02::1",
            "fe80::1",
            "::ffff:192.0.2.1",
            "192.0.2.1",
            "x",
        ] {
            assert!(parse_snat_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interface_names_follow_the_kernel() {
        assert_eq!(parse_interface("eth0").unwrap(), "eth0");
        assert!(parse_interface("enp0s31f6.100").is_ok());
        for bad in [
            "",
            "a-very-long-name0",
            "eth/0",
            "eth:0",
            "eth 0",
            ".",
            "..",
        ] {
            assert!(parse_interface(bad).is_err(), "{bad:?}");
        }
        assert!(parse_interface("0123456789abcde").is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in [
            "0",
            "",
            "5d",
            "m",
            "-5",
            "25h",
            "1.5m",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn listen_addresses_and_docker_hosts() {
        assert!(parse_listen("[::1]:9723").is_ok());
        assert!(parse_listen("[::1]:0").is_err());
        assert!(parse_listen("::1").is_err());
        assert!(parse_docker_host("unix:///var/run/docker.sock").is_ok());
        assert!(parse_docker_host("tcp://10.0.0.1:2375").is_ok());
        assert!(parse_docker_host("/run/docker.sock").is_ok());
        assert!(parse_docker_host("unix://").is_err());
        assert!(parse_docker_host("docker.sock").is_err());
    }

    #[test]
    fn container_names() {
        assert!(check_container_name("web-1").is_ok());
        assert!(check_container_name("my.app_2").is_ok());
        assert_eq!(
            problem(check_container_name("/web")),
            "`/web` starts with '/', which is not part of the name; expected `web`"
        );
        assert!(check_container_name("-web").is_err());
        assert!(check_container_name("we b").is_err());
        assert!(check_container_name("").is_err());
    }
}
