//! Running iproute2's `ip`, for the audit's probe namespace (`audit --probe`), the one host
//! change v6guard still makes through `ip`. Neighbour proxy entries go over rtnetlink
//! (src/ndp.rs).

use std::process::Command;

/// `ip ARGS` failed: the command line and what it said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{command}` failed: {detail}")]
pub struct IpError {
    pub command: String,
    pub detail: String,
}

/// Run `ip ARGS`; its stdout, or the error with its stderr.
pub fn ip(args: &[&str]) -> Result<String, IpError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| IpError {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(IpError {
            command,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
