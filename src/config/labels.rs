//! Per-container policy from the container's own labels (`v6guard.allow_from`,
//! `v6guard.expose`, `v6guard.deny`), for people who deploy with Compose rather than Ansible.
//!
//! A malformed label is reported, and it fails closed: a broken `v6guard.allow_from` admits
//! no source, a broken `v6guard.deny` or an unknown `v6guard.*` name (`v6guard.allow-from`)
//! closes every port of the container over IPv6, a broken `v6guard.expose` opens nothing. The container's other labels still apply, so a typo can
//! never open more than the author meant.

use std::collections::BTreeMap;

use ipnet::Ipv6Net;

use super::policy::ContainerPolicy;
use super::ports::PortSpec;
use super::values::{Invalid, parse_prefix};
use crate::snapshot::Protocol;

/// Every label v6guard reads starts with this.
pub const LABEL_PREFIX: &str = "v6guard.";
pub const LABEL_ALLOW_FROM: &str = "v6guard.allow_from";
pub const LABEL_EXPOSE: &str = "v6guard.expose";
pub const LABEL_DENY: &str = "v6guard.deny";
const LABELS: [&str; 3] = [LABEL_ALLOW_FROM, LABEL_EXPOSE, LABEL_DENY];

/// A `v6guard.*` label v6guard cannot use. The caller names the container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {label}={value:?}: {problem}; expected {expected}")]
pub struct LabelError {
    pub label: String,
    pub value: String,
    pub problem: String,
    pub expected: String,
}

impl LabelError {
    fn new(label: &str, value: &str, invalid: Invalid) -> Self {
        LabelError {
            label: label.to_string(),
            value: value.to_string(),
            problem: invalid.problem,
            expected: invalid.expected,
        }
    }
}

/// The container policy its labels ask for, and an error for each label ignored. `None` when
/// no usable `v6guard.*` label is set. Labels of other tools are not looked at.
pub fn container_policy_from_labels(
    labels: &BTreeMap<String, String>,
) -> (Option<ContainerPolicy>, Vec<LabelError>) {
    let mut policy = ContainerPolicy::default();
    let mut errors = Vec::new();
    let mut used = false;
    for (label, value) in labels.range(LABEL_PREFIX.to_string()..) {
        if !label.starts_with(LABEL_PREFIX) {
            break;
        }
        match apply_label(&mut policy, label, value) {
            Ok(()) => used = true,
            Err(invalid) => {
                used |= fail_closed(&mut policy, label);
                errors.push(LabelError::new(label, value, invalid));
            }
        }
    }
    if let Some(error) = expose_overlapping_deny(&mut policy, labels) {
        errors.push(error);
    }
    (used.then_some(policy), errors)
}

/// What a malformed label means: the narrowest reading. Returns whether it restricts anything.
fn fail_closed(policy: &mut ContainerPolicy, label: &str) -> bool {
    match label {
        LABEL_ALLOW_FROM => {
            policy.allow_from = Some(Vec::new());
            true
        }
        LABEL_EXPOSE => false,
        // A broken deny, or a label name v6guard does not know (a typo of allow_from or deny
        // is the likely cause): close every port.
        _ => {
            policy.deny = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                .into_iter()
                .map(|protocol| PortSpec {
                    protocol,
                    first: 1,
                    last: u16::MAX,
                })
                .collect();
            true
        }
    }
}

fn apply_label(policy: &mut ContainerPolicy, label: &str, value: &str) -> Result<(), Invalid> {
    match label {
        LABEL_ALLOW_FROM => policy.allow_from = Some(parse_allow_from(value)?),
        LABEL_EXPOSE => policy.expose = parse_items(value, str::parse)?,
        LABEL_DENY => policy.deny = parse_items(value, str::parse)?,
        _ => {
            return Err(Invalid::new(
                "v6guard has no such label",
                format!("one of {}", LABELS.join(", ")),
            ));
        }
    }
    Ok(())
}

/// An empty allow_from label would close every port, which is more likely a templating
/// mistake than a wish; policy files can say `allow_from: []` explicitly.
fn parse_allow_from(value: &str) -> Result<Vec<Ipv6Net>, Invalid> {
    let prefixes = parse_items(value, parse_prefix)?;
    if prefixes.is_empty() {
        return Err(Invalid::new(
            "no prefix given",
            "comma-separated IPv6 prefixes, such as 2001:db8::/32,fd00::/8 \
             (to close every port, use v6guard.deny)",
        ));
    }
    Ok(prefixes)
}

/// Comma-separated items, spaces around them ignored, empty items skipped.
fn parse_items<T>(
    value: &str,
    parse: impl Fn(&str) -> Result<T, Invalid>,
) -> Result<Vec<T>, Invalid> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse)
        .collect()
}

/// A port both exposed and denied by labels: the expose label is dropped, deny wins.
fn expose_overlapping_deny(
    policy: &mut ContainerPolicy,
    labels: &BTreeMap<String, String>,
) -> Option<LabelError> {
    let (exposed, denied) = policy
        .expose
        .iter()
        .find_map(|e| Some((*e, *policy.deny.iter().find(|d| d.overlaps(e))?)))?;
    policy.expose.clear();
    let value = labels
        .get(LABEL_EXPOSE)
        .map(String::as_str)
        .unwrap_or_default();
    Some(LabelError::new(
        LABEL_EXPOSE,
        value,
        Invalid::new(
            format!("{exposed} overlaps {denied} in {LABEL_DENY}"),
            "each port either exposed or denied, not both",
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortSpec;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spec(text: &str) -> PortSpec {
        text.parse().unwrap()
    }

    #[test]
    fn no_v6guard_labels_means_no_policy() {
        let (policy, errors) =
            container_policy_from_labels(&labels(&[("com.docker.compose.project", "x")]));
        assert_eq!(policy, None);
        assert!(errors.is_empty());
    }

    #[test]
    fn all_three_labels_parse() {
        let (policy, errors) = container_policy_from_labels(&labels(&[
            ("v6guard.allow_from", "2001:db8::/32, fd00::/8"),
            ("v6guard.expose", "9100/tcp,8000-8010/udp,"),
            ("v6guard.deny", "5432"),
            ("traefik.enable", "true"),
        ]));
        assert!(errors.is_empty(), "{errors:?}");
        let policy = policy.unwrap();
        assert_eq!(
            policy.allow_from,
            Some(vec![
                "2001:db8::/32".parse().unwrap(),
                "fd00::/8".parse().unwrap()
            ])
        );
        assert_eq!(policy.expose, vec![spec("9100/tcp"), spec("8000-8010/udp")]);
        assert_eq!(policy.deny, vec![spec("5432/tcp")]);
        assert_eq!(policy.origin, None);
    }

    #[test]
    fn a_malformed_label_fails_closed_alone() {
        let (policy, errors) = container_policy_from_labels(&labels(&[
            ("v6guard.allow_from", "2001:db8::/129"),
            ("v6guard.deny", "5432/tcp"),
        ]));
        assert_eq!(
            errors[0].to_string(),
            "label v6guard.allow_from=\"2001:db8::/129\": `2001:db8::/129` has prefix length 129, \
             over 128; expected an IPv6 prefix with a length from 0 to 128, such as 2001:db8::/32"
        );
        let policy = policy.unwrap();
        assert_eq!(
            policy.allow_from,
            Some(vec![]),
            "a broken allow_from admits no one"
        );
        assert_eq!(
            policy.deny,
            vec![spec("5432/tcp")],
            "the good label still applies"
        );
    }

    #[test]
    fn a_malformed_deny_label_closes_every_port() {
        let (policy, errors) =
            container_policy_from_labels(&labels(&[("v6guard.deny", "5432/tcpp")]));
        assert_eq!(errors.len(), 1);
        assert_eq!(
            policy.unwrap().deny,
            vec![
                spec("1-65535/tcp"),
                spec("1-65535/udp"),
                spec("1-65535/sctp")
            ]
        );
    }

    #[test]
    fn unknown_v6guard_labels_are_errors() {
        let (policy, errors) =
            container_policy_from_labels(&labels(&[("v6guard.alow_from", "::/0")]));
        assert_eq!(
            policy.map(|p| p.deny),
            Some(vec![
                spec("1-65535/tcp"),
                spec("1-65535/udp"),
                spec("1-65535/sctp")
            ]),
            "a mistyped label name closes the container rather than leaving it open"
        );
        assert_eq!(
            errors[0].to_string(),
            "label v6guard.alow_from=\"::/0\": v6guard has no such label; expected one of \
             v6guard.allow_from, v6guard.expose, v6guard.deny"
        );
    }

    #[test]
    fn an_empty_allow_from_label_is_an_error() {
        let (_, errors) = container_policy_from_labels(&labels(&[("v6guard.allow_from", " ")]));
        assert!(errors[0].problem.contains("no prefix given"), "{errors:?}");
    }

    #[test]
    fn bad_ports_in_labels_are_named() {
        let (_, errors) = container_policy_from_labels(&labels(&[("v6guard.deny", "80,99999")]));
        assert!(
            errors[0].to_string().contains("has port 99999"),
            "{errors:?}"
        );
    }

    #[test]
    fn labels_exposing_a_port_they_deny_keep_only_the_deny() {
        let (policy, errors) = container_policy_from_labels(&labels(&[
            ("v6guard.expose", "8000-8100"),
            ("v6guard.deny", "8080"),
        ]));
        let policy = policy.unwrap();
        assert!(policy.expose.is_empty());
        assert_eq!(policy.deny, vec![spec("8080")]);
        assert_eq!(errors[0].label, "v6guard.expose");
        assert!(
            errors[0]
                .problem
                .contains("8000-8100/tcp overlaps 8080/tcp"),
            "{errors:?}"
        );
    }
}
