//! A container's effective policy: its policy file entry narrowed by its labels.
//!
//! Policy files are the operator's (pushed by Ansible, reviewed in version control); labels
//! are whoever starts the container's, the same person who chooses `-p`. So a label may
//! narrow what the file allows but never widen what the file narrowed:
//!
//! - `deny`: the union of both. Deny always wins over expose and publish.
//! - `allow_from`: the intersection. Without a file list, the label's list applies; with one,
//!   each label prefix is kept where it lies inside a file prefix, narrowed to the file prefix
//!   where it is wider, and dropped (with a warning) where it is outside all of them.
//! - `expose`: the union, minus every denied port. A label's expose reaches this point only
//!   when the operator lets labels widen and the image did not set it (labels.rs); it still
//!   cannot open a port the file denies: that part is dropped with a warning.
//!   Exposed ports obey `allow_from` like published ones, so a label cannot reach sources the
//!   file excluded.

use std::collections::BTreeSet;

use ipnet::Ipv6Net;

use super::error::{Location, Warning};
use super::labels::{LABEL_ALLOW_FROM, LABEL_EXPOSE};
use super::policy::ContainerPolicy;
use super::ports::{PortSpec, subtract_all};

/// Combine a container's policy file entry and its label policy. Warnings cite the policy
/// file entry; the caller adds the container's name.
pub fn effective_container_policy(
    file: Option<&ContainerPolicy>,
    labels: Option<&ContainerPolicy>,
) -> (ContainerPolicy, Vec<Warning>) {
    let empty = ContainerPolicy::default();
    let file = file.unwrap_or(&empty);
    let labels = labels.unwrap_or(&empty);
    let origin = file.origin.clone();
    let mut warnings = Vec::new();

    let deny = unique(file.deny.iter().chain(&labels.deny).copied());
    let label_expose = label_expose(&file.deny, &labels.expose, &origin, &mut warnings);
    let expose = unique(subtract_all(
        &[file.expose.clone(), label_expose].concat(),
        &deny,
    ));
    let allow_from = match (&file.allow_from, &labels.allow_from) {
        (None, None) => None,
        (Some(only), None) | (None, Some(only)) => Some(only.clone()),
        (Some(file_list), Some(label_list)) => {
            Some(intersect(file_list, label_list, &origin, &mut warnings))
        }
    };
    let policy = ContainerPolicy {
        allow_from,
        expose,
        deny,
        origin,
    };
    (policy, warnings)
}

/// The label's exposed ports without those the file denies, warning about each cut.
fn label_expose(
    file_deny: &[PortSpec],
    exposed: &[PortSpec],
    origin: &Option<Location>,
    warnings: &mut Vec<Warning>,
) -> Vec<PortSpec> {
    let mut kept = Vec::new();
    for spec in exposed {
        let rest = subtract_all(&[*spec], file_deny);
        if rest != [*spec] {
            let message = match rest.is_empty() {
                true => format!("{spec} ignored: the policy file denies it"),
                false => format!(
                    "{spec} narrowed to {}: the policy file denies the rest",
                    list(&rest)
                ),
            };
            warnings.push(warning(origin, LABEL_EXPOSE, message));
        }
        kept.extend(rest);
    }
    kept
}

/// Sources both lists allow.
fn intersect(
    file: &[Ipv6Net],
    labels: &[Ipv6Net],
    origin: &Option<Location>,
    warnings: &mut Vec<Warning>,
) -> Vec<Ipv6Net> {
    let mut kept = Vec::new();
    for prefix in labels {
        let parts: Vec<Ipv6Net> = file.iter().filter_map(|f| overlap(f, prefix)).collect();
        if parts.is_empty() {
            let message = format!(
                "{prefix} ignored: outside the policy file's allow_from ({})",
                list(file)
            );
            warnings.push(warning(origin, LABEL_ALLOW_FROM, message));
        } else if parts != [*prefix] {
            let message = format!(
                "{prefix} narrowed to {}: the policy file allows no more",
                list(&parts)
            );
            warnings.push(warning(origin, LABEL_ALLOW_FROM, message));
        }
        kept.extend(parts);
    }
    let kept = unique(kept);
    if kept.is_empty() && !file.is_empty() {
        let message =
            "no source remains: every port of this container is closed over IPv6".to_string();
        warnings.push(warning(origin, LABEL_ALLOW_FROM, message));
    }
    kept
}

/// The common part of two prefixes: the longer one when one contains the other.
fn overlap(a: &Ipv6Net, b: &Ipv6Net) -> Option<Ipv6Net> {
    if a.contains(b) {
        Some(*b)
    } else if b.contains(a) {
        Some(*a)
    } else {
        None
    }
}

/// Sorted without repeats, so the planner and tests see one canonical order.
fn unique<T: Ord>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    items
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    let texts: Vec<String> = items.iter().map(T::to_string).collect();
    texts.join(", ")
}

fn warning(origin: &Option<Location>, label: &str, message: String) -> Warning {
    Warning {
        at: origin.clone(),
        subject: format!("label {label}"),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(texts: &[&str]) -> Vec<PortSpec> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn nets(texts: &[&str]) -> Vec<Ipv6Net> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn file_entry() -> ContainerPolicy {
        ContainerPolicy {
            allow_from: Some(nets(&["2001:db8:1::/48", "fd00:1::/64"])),
            expose: specs(&["9100"]),
            deny: specs(&["5432", "6000-6010/udp"]),
            origin: Some(Location {
                file: "/etc/v6guard/policies/30-db.yaml".into(),
                line: 4,
                column: 3,
            }),
        }
    }

    #[test]
    fn nothing_is_docker_behaviour() {
        let (policy, warnings) = effective_container_policy(None, None);
        assert_eq!(policy, ContainerPolicy::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_file_alone_applies_as_written() {
        let file = file_entry();
        let (policy, warnings) = effective_container_policy(Some(&file), None);
        assert_eq!(policy.allow_from, file.allow_from);
        assert_eq!(policy.expose, file.expose);
        assert_eq!(policy.deny, file.deny);
        assert_eq!(policy.origin, file.origin);
        assert!(warnings.is_empty());
    }

    #[test]
    fn labels_alone_apply_as_written() {
        let labels = ContainerPolicy {
            allow_from: Some(nets(&["2001:db8::/32"])),
            expose: specs(&["8080"]),
            deny: specs(&["22"]),
            origin: None,
        };
        let (policy, warnings) = effective_container_policy(None, Some(&labels));
        assert_eq!(policy, labels);
        assert!(warnings.is_empty());
    }

    #[test]
    fn label_deny_adds_to_the_file_and_closes_file_exposed_ports() {
        let labels = ContainerPolicy {
            deny: specs(&["9100", "22"]),
            ..ContainerPolicy::default()
        };
        let (policy, warnings) = effective_container_policy(Some(&file_entry()), Some(&labels));
        assert_eq!(policy.deny, specs(&["22", "5432", "9100", "6000-6010/udp"]));
        assert!(policy.expose.is_empty());
        assert!(warnings.is_empty());
    }

    #[test]
    fn label_expose_never_opens_a_port_the_file_denies() {
        let labels = ContainerPolicy {
            expose: specs(&["5432", "6005-6020/udp", "8080"]),
            ..ContainerPolicy::default()
        };
        let (policy, warnings) = effective_container_policy(Some(&file_entry()), Some(&labels));
        assert_eq!(policy.expose, specs(&["8080", "9100", "6011-6020/udp"]));
        let texts: Vec<String> = warnings.iter().map(Warning::to_string).collect();
        assert_eq!(
            texts,
            [
                "/etc/v6guard/policies/30-db.yaml:4:3: label v6guard.expose: 5432/tcp ignored: \
                 the policy file denies it",
                "/etc/v6guard/policies/30-db.yaml:4:3: label v6guard.expose: 6005-6020/udp \
                 narrowed to 6011-6020/udp: the policy file denies the rest",
            ]
        );
    }

    #[test]
    fn label_allow_from_only_narrows() {
        let labels = ContainerPolicy {
            allow_from: Some(nets(&[
                "2001:db8:1:5::/64",
                "2001:db8::/32",
                "2001:db9::/32",
            ])),
            ..ContainerPolicy::default()
        };
        let (policy, warnings) = effective_container_policy(Some(&file_entry()), Some(&labels));
        assert_eq!(
            policy.allow_from,
            Some(nets(&["2001:db8:1::/48", "2001:db8:1:5::/64"]))
        );
        let messages: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "2001:db8::/32 narrowed to 2001:db8:1::/48: the policy file allows no more",
                "2001:db9::/32 ignored: outside the policy file's allow_from (2001:db8:1::/48, \
                 fd00:1::/64)",
            ]
        );
    }

    #[test]
    fn label_allow_from_outside_the_file_closes_everything_and_says_so() {
        let labels = ContainerPolicy {
            allow_from: Some(nets(&["2001:db9::/32"])),
            ..ContainerPolicy::default()
        };
        let (policy, warnings) = effective_container_policy(Some(&file_entry()), Some(&labels));
        assert_eq!(policy.allow_from, Some(vec![]));
        assert!(
            warnings[1].message.starts_with("no source remains"),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_empty_file_allow_from_stays_empty() {
        let file = ContainerPolicy {
            allow_from: Some(vec![]),
            ..ContainerPolicy::default()
        };
        let labels = ContainerPolicy {
            allow_from: Some(nets(&["::/0"])),
            ..ContainerPolicy::default()
        };
        let (policy, warnings) = effective_container_policy(Some(&file), Some(&labels));
        assert_eq!(policy.allow_from, Some(vec![]));
        assert_eq!(
            warnings[0].message,
            "::/0 ignored: outside the policy file's allow_from (none)"
        );
    }
}
