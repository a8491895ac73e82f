//! Per-container policy from the container's own labels (`v6guard.allow_from`,
//! `v6guard.expose`, `v6guard.deny`), for people who deploy with Compose rather than Ansible.
//!
//! **Labels only narrow** unless the operator says otherwise. Docker copies an image's
//! `LABEL`s into every container made from it, so a label may come from whoever wrote the
//! image rather than whoever ran the container: an image must not be able to open its
//! container's ports from outside. So `v6guard.deny` and `v6guard.allow_from` always apply
//! (narrowing is safe whoever asks for it), while `v6guard.expose` is ignored with a message
//! unless v6guard.yaml sets `defaults.labels_may_expose: true`, and even then when its value
//! is the image's own (or the image's labels could not be read).
//!
//! A malformed label is reported, and it fails closed: a broken `v6guard.allow_from` admits
//! no source, a broken `v6guard.deny` or an unknown `v6guard.*` name (`v6guard.allow-from`)
//! closes every port of the container over IPv6, a broken `v6guard.expose` opens nothing. The
//! container's other labels still apply, so a typo can never open more than the author meant.

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
///
/// `image_labels` are the `v6guard.*` labels of the container's image, `None` when they are
/// not known (every label then counts as possibly the image's). `labels_may_expose` is
/// v6guard.yaml's `defaults.labels_may_expose`: without it `v6guard.expose` is ignored.
pub fn container_policy_from_labels(
    labels: &BTreeMap<String, String>,
    image_labels: Option<&BTreeMap<String, String>>,
    labels_may_expose: bool,
) -> (Option<ContainerPolicy>, Vec<LabelError>) {
    let mut policy = ContainerPolicy::default();
    let mut errors = Vec::new();
    let mut used = false;
    for (label, value) in labels.range(LABEL_PREFIX.to_string()..) {
        if !label.starts_with(LABEL_PREFIX) {
            break;
        }
        match apply_label(&mut policy, label, value) {
            // An expose label counts once it is known to be allowed, below.
            Ok(()) => used |= label != LABEL_EXPOSE,
            Err(invalid) => {
                used |= fail_closed(&mut policy, label);
                errors.push(LabelError::new(label, value, invalid));
            }
        }
    }
    if let Some(value) = labels
        .get(LABEL_EXPOSE)
        .filter(|_| !policy.expose.is_empty())
    {
        match widening_refused(value, image_labels, labels_may_expose) {
            Some(invalid) => {
                policy.expose.clear();
                errors.push(LabelError::new(LABEL_EXPOSE, value, invalid));
            }
            None => used = true,
        }
    }
    if let Some(error) = expose_overlapping_deny(&mut policy, labels) {
        errors.push(error);
    }
    (used.then_some(policy), errors)
}

/// Why a `v6guard.expose` label with this value may not open anything, if it may not.
fn widening_refused(
    value: &str,
    image_labels: Option<&BTreeMap<String, String>>,
    labels_may_expose: bool,
) -> Option<Invalid> {
    const USE_POLICY: &str = "`expose` for this container in a policy file";
    if !labels_may_expose {
        return Some(Invalid::new(
            "labels may only narrow, and v6guard.yaml does not let them open ports",
            format!(
                "{USE_POLICY}, or `defaults.labels_may_expose: true` in v6guard.yaml to let \
                 container labels open ports"
            ),
        ));
    }
    let from_image = match image_labels {
        None => {
            "the image's labels could not be read, so it may be set by the image, not by \
                 whoever ran the container"
        }
        Some(image) if image.get(LABEL_EXPOSE).map(String::as_str) == Some(value) => {
            "set by the image, not by whoever ran the container (the image's label has this value)"
        }
        Some(_) => return None,
    };
    Some(Invalid::new(
        from_image,
        format!(
            "{USE_POLICY}, or `docker run --label {LABEL_EXPOSE}=PORTS` with a value other than \
             the image's"
        ),
    ))
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

    fn every_port() -> Vec<PortSpec> {
        vec![
            spec("1-65535/tcp"),
            spec("1-65535/udp"),
            spec("1-65535/sctp"),
        ]
    }

    /// Labels set with `docker run --label` on an image without v6guard labels, with
    /// `defaults.labels_may_expose: true`: every label is honoured.
    fn permissive(labels: &BTreeMap<String, String>) -> (Option<ContainerPolicy>, Vec<LabelError>) {
        container_policy_from_labels(labels, Some(&BTreeMap::new()), true)
    }

    #[test]
    fn no_v6guard_labels_means_no_policy() {
        let (policy, errors) = permissive(&labels(&[("com.docker.compose.project", "x")]));
        assert_eq!(policy, None);
        assert!(errors.is_empty());
    }

    #[test]
    fn all_three_labels_parse() {
        let (policy, errors) = permissive(&labels(&[
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
        let (policy, errors) = permissive(&labels(&[
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
        let (policy, errors) = permissive(&labels(&[("v6guard.deny", "5432/tcpp")]));
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
        let (policy, errors) = permissive(&labels(&[("v6guard.alow_from", "::/0")]));
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
        let (_, errors) = permissive(&labels(&[("v6guard.allow_from", " ")]));
        assert!(errors[0].problem.contains("no prefix given"), "{errors:?}");
    }

    #[test]
    fn bad_ports_in_labels_are_named() {
        let (_, errors) = permissive(&labels(&[("v6guard.deny", "80,99999")]));
        assert!(
            errors[0].to_string().contains("has port 99999"),
            "{errors:?}"
        );
    }

    #[test]
    fn labels_exposing_a_port_they_deny_keep_only_the_deny() {
        let (policy, errors) = permissive(&labels(&[
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

    #[test]
    fn labels_only_narrow_by_default() {
        let container = labels(&[
            ("v6guard.expose", "1-65535/tcp"),
            ("v6guard.deny", "5432"),
            ("v6guard.allow_from", "2001:db8::/32"),
        ]);
        let (policy, errors) = container_policy_from_labels(&container, Some(&labels(&[])), false);
        let policy = policy.unwrap();
        assert!(policy.expose.is_empty(), "expose is ignored");
        assert_eq!(policy.deny, vec![spec("5432")], "deny still applies");
        assert_eq!(
            policy.allow_from,
            Some(vec!["2001:db8::/32".parse().unwrap()]),
            "allow_from still applies"
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "label v6guard.expose=\"1-65535/tcp\": labels may only narrow, and v6guard.yaml \
             does not let them open ports; expected `expose` for this container in a policy \
             file, or `defaults.labels_may_expose: true` in v6guard.yaml to let container \
             labels open ports"
        );
    }

    #[test]
    fn an_ignored_expose_label_alone_is_no_policy() {
        let container = labels(&[("v6guard.expose", "81/tcp")]);
        let (policy, errors) = container_policy_from_labels(&container, Some(&labels(&[])), false);
        assert_eq!(policy, None, "nothing the labels ask for is applied");
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn widening_needs_the_flag() {
        let container = labels(&[("v6guard.expose", "81/tcp")]);
        let image = labels(&[]);
        let (closed, _) = container_policy_from_labels(&container, Some(&image), false);
        let (open, errors) = container_policy_from_labels(&container, Some(&image), true);
        assert_eq!(closed, None);
        assert_eq!(open.unwrap().expose, vec![spec("81/tcp")]);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn an_expose_label_from_the_image_never_widens() {
        // `LABEL v6guard.expose=1-65535/tcp` in the image, copied by Docker into the container.
        let image = labels(&[("v6guard.expose", "1-65535/tcp")]);
        let (policy, errors) = container_policy_from_labels(&image, Some(&image), true);
        assert_eq!(policy, None);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .problem
                .starts_with("set by the image, not by whoever ran the container"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_run_label_overriding_the_images_value_is_honoured_with_the_flag() {
        let image = labels(&[("v6guard.expose", "1-65535/tcp")]);
        let container = labels(&[("v6guard.expose", "81/tcp")]);
        let (policy, errors) = container_policy_from_labels(&container, Some(&image), true);
        assert_eq!(policy.unwrap().expose, vec![spec("81/tcp")]);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn unknown_image_labels_count_as_the_images() {
        let container = labels(&[("v6guard.expose", "81/tcp"), ("v6guard.deny", "22")]);
        let (policy, errors) = container_policy_from_labels(&container, None, true);
        let policy = policy.unwrap();
        assert!(policy.expose.is_empty(), "fail closed");
        assert_eq!(policy.deny, vec![spec("22")], "narrowing still applies");
        assert!(
            errors[0].problem.contains("could not be read"),
            "{errors:?}"
        );
    }

    #[test]
    fn narrowing_labels_from_the_image_still_apply() {
        let image = labels(&[
            ("v6guard.deny", "5432"),
            ("v6guard.allow_from", "2001:db8::/32"),
        ]);
        for may_expose in [false, true] {
            let (policy, errors) = container_policy_from_labels(&image, Some(&image), may_expose);
            let policy = policy.unwrap();
            assert_eq!(policy.deny, vec![spec("5432")]);
            assert_eq!(
                policy.allow_from,
                Some(vec!["2001:db8::/32".parse().unwrap()])
            );
            assert!(errors.is_empty(), "{errors:?}");
        }
    }

    #[test]
    fn malformed_labels_fail_closed_whatever_the_flag_and_the_image() {
        let container = labels(&[
            ("v6guard.allow_from", "2001:db8::/129"),
            ("v6guard.deny", "22/tcpp"),
            ("v6guard.expose", "99999"),
        ]);
        for may_expose in [false, true] {
            for image in [None, Some(&container)] {
                let (policy, errors) = container_policy_from_labels(&container, image, may_expose);
                let policy = policy.unwrap();
                assert_eq!(policy.allow_from, Some(vec![]), "admits no source");
                assert_eq!(policy.deny, every_port(), "closes every port");
                assert!(policy.expose.is_empty(), "opens nothing");
                assert_eq!(errors.len(), 3, "{errors:?}");
            }
        }
    }

    #[test]
    fn a_typo_label_from_the_image_closes_the_container() {
        let image = labels(&[("v6guard.exposee", "1-65535/tcp")]);
        let (policy, errors) = container_policy_from_labels(&image, Some(&image), true);
        assert_eq!(policy.unwrap().deny, every_port());
        assert_eq!(errors.len(), 1);
    }
}
