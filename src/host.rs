//! Host facts outside Docker's API that decide whether v6guard's rules can work: whether
//! bridged IPv6 passes the ip6 forward hook (br_netfilter), and whether Docker's own nftables
//! backend owns IPv6 here.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use tracing::{info, warn};

use crate::nft::{self, NftError};
use crate::ruleset::Ruleset;

/// With this sysctl on, IPv6 bridged between two ports of a bridge passes the ip6 forward hook
/// with iifname == oifname == the bridge, which is what ICC enforcement relies on.
pub const BRIDGE_NF_IP6TABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-ip6tables";

/// Whether bridged IPv6 is passed to the ip6 hooks (false when br_netfilter is not loaded).
pub fn bridge_nf_ip6tables() -> bool {
    fs::read_to_string(BRIDGE_NF_IP6TABLES).is_ok_and(|v| v.trim() == "1")
}

/// Whether Docker's nftables backend has its `ip6 docker-bridges` table here.
pub fn docker_nft_ip6_table() -> Result<bool, NftError> {
    Ok(nft::list_tables()?
        .iter()
        .any(|t| t.family == libc::NFPROTO_IPV6 as u32 && t.name == "docker-bridges"))
}

/// Make the host able to enforce `ruleset`: turn on bridged-IPv6 filtering when it needs it.
/// A failure is logged, not fatal: the rest of the ruleset still protects.
pub fn ensure_prerequisites(ruleset: &Ruleset) {
    if ruleset.needs_bridge_netfilter && !bridge_nf_ip6tables() {
        if let Err(error) = enable_bridge_nf_ip6tables() {
            warn!(
                %error,
                "ICC is off on some network but net.bridge.bridge-nf-call-ip6tables could not be \
                 turned on: containers on one bridge can still talk over IPv6"
            );
        }
    }
}

/// Turn on `bridge-nf-call-ip6tables` (loading br_netfilter first if needed), as dockerd does
/// for IPv4 when ICC is off. Without it, ICC rules see no bridged traffic.
pub fn enable_bridge_nf_ip6tables() -> io::Result<()> {
    if !Path::new(BRIDGE_NF_IP6TABLES).exists() {
        let status = Command::new("modprobe").arg("br_netfilter").status();
        if !matches!(status, Ok(s) if s.success()) {
            warn!("could not load br_netfilter (modprobe br_netfilter)");
        }
    }
    fs::write(BRIDGE_NF_IP6TABLES, "1")?;
    info!("enabled net.bridge.bridge-nf-call-ip6tables so ICC can be enforced on bridged IPv6");
    Ok(())
}

/// The version of the dockerd that runs or will run here, from `dockerd --version`, before
/// Docker's API can be asked (at boot v6guard starts first). The running dockerd's own binary
/// when there is one (run as `/proc/PID/exe`: its path names a file under dockerd's own root,
/// which for a dockerd in a chroot or a container is not ours), else `dockerd` on PATH.
/// `None` when neither answers.
pub fn installed_dockerd_version() -> Option<String> {
    let program = crate::settings::find_dockerd()
        .map(|d| std::path::PathBuf::from(format!("/proc/{}/exe", d.pid)))
        .filter(|exe| exe.exists())
        .unwrap_or_else(|| "dockerd".into());
    let out = Command::new(program).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_dockerd_version(&String::from_utf8_lossy(&out.stdout))
}

/// `Docker version 20.10.24+dfsg1, build 297e128` -> `20.10.24+dfsg1`.
fn parse_dockerd_version(text: &str) -> Option<String> {
    let rest = text.trim().strip_prefix("Docker version ")?;
    let version = rest.split([',', ' ']).next()?;
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerd_version_lines() {
        assert_eq!(
            parse_dockerd_version("Docker version 20.10.24+dfsg1, build 297e128\n").as_deref(),
            Some("20.10.24+dfsg1")
        );
        assert_eq!(
            parse_dockerd_version("Docker version 28.5.1, build f8215cc").as_deref(),
            Some("28.5.1")
        );
        assert_eq!(parse_dockerd_version("dockerd: command not found"), None);
        assert_eq!(parse_dockerd_version("Docker version dev, build x"), None);
    }
}
