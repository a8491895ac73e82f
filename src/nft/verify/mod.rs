//! Verifying: does the kernel hold the plan? The table, its comment (which plan it was built
//! from), its rules (counted, or byte for byte against the kernel's own form of the plan,
//! built in a private namespace by [`reference`]), each set's declared size and every set
//! element.

mod reference;

use tracing::warn;

use super::NftError;
use super::read::rules::ChainRules;
use super::read::{SetDeclaration, compare_elements, list_tables, read_rules, read_sets};
use crate::ruleset::Ruleset;

pub use reference::{ReferenceError, reference};

/// How [`verify`] compares rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleCheck {
    /// Count them. The daemon's choice: its change monitor sees every edit as it happens, and
    /// its service has no CAP_SYS_ADMIN for the reference namespace.
    Count,
    /// Byte for byte against the kernel's own form of the plan ([`reference`]); counts
    /// only, with a warning, when that cannot be built.
    Exact,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// How the kernel differs from the plan, one line each; empty when it holds the plan.
    pub problems: Vec<String>,
    /// Set when the rules were only counted although [`RuleCheck::Exact`] was asked for: why.
    pub counted_only: Option<String>,
    /// Whether v6guard's ip6 table filters at all: false when it is missing or dormant, so
    /// nothing of v6guard stands between the outside and the containers.
    pub filtering: bool,
}

/// The differences between what the kernel holds in v6guard's table and `expected`: missing
/// or dormant table, rules from another plan (the table's comment), rules added, removed or
/// (with [`RuleCheck::Exact`]) edited in place, sets declared with another size, set elements
/// missing or extra.
pub fn verify(expected: &Ruleset, check: RuleCheck) -> Result<Verified, NftError> {
    // A rule dump filtered by a table that does not exist comes back empty, not ENOENT:
    // check the table itself first.
    let tables = list_tables()?;
    let find = |family: i32| {
        tables
            .iter()
            .find(|t| t.family == family as u32 && t.name == expected.table)
    };
    let table = find(libc::NFPROTO_IPV6);
    let (Some(table), Some(held)) = (table, read_rules(&expected.table)?) else {
        return Ok(Verified {
            problems: vec![format!("table ip6 {} is missing", expected.table)],
            counted_only: None,
            filtering: false,
        });
    };
    let mut problems = Vec::new();
    if !expected.bridge_chains.is_empty() {
        match find(libc::NFPROTO_BRIDGE) {
            None => problems.push(format!("table bridge {} is missing", expected.table)),
            Some(bridge) if bridge.dormant => problems.push(format!(
                "table bridge {} is dormant (`flags dormant`): VLAN-tagged frames and router \
                 advertisements from containers are not dropped",
                expected.table
            )),
            Some(_) => {}
        }
    }
    let mut counted_only = None;
    if table.dormant {
        problems.push(format!(
            "table ip6 {} is dormant (`flags dormant`): none of its rules sees a packet",
            expected.table
        ));
    }
    // Kernels before 5.13 drop table userdata: no comment means "cannot tell", not "wrong".
    let other_plan = table
        .comment
        .as_deref()
        .is_some_and(|comment| comment != expected.comment());
    if other_plan {
        // Its rules differ as a matter of course; comparing them would say nothing more.
        problems.push(format!(
            "table ip6 {} holds rules from another plan ({}), not from the current \
             configuration and Docker state ({})",
            expected.table,
            table.comment.as_deref().unwrap_or_default(),
            expected.comment()
        ));
    } else {
        let reference = match check {
            RuleCheck::Count => None,
            RuleCheck::Exact => match reference(expected) {
                Ok(reference) => Some(reference),
                Err(why) => {
                    warn!(%why, "cannot build the reference rules; comparing rule counts only");
                    counted_only = Some(why.to_string());
                    None
                }
            },
        };
        problems.extend(rule_problems(expected, &held, reference.as_ref()));
    }
    problems.extend(size_problems(expected, &read_sets(&expected.table)?));
    for set in &expected.sets {
        match compare_elements(&expected.table, set)? {
            None => problems.push(format!("set {} is missing", set.name)),
            Some(held) if held.held != set.elements.len() || held.matching != held.held => problems
                .push(format!(
                    "set {} holds {} elements ({} missing or changed, {} extra), expected {}",
                    set.name,
                    held.held,
                    set.elements.len() - held.matching,
                    held.extra,
                    set.elements.len()
                )),
            Some(_) => {}
        }
    }
    Ok(Verified {
        problems,
        counted_only,
        filtering: !table.dormant,
    })
}

/// The planned sets the kernel declares with another size than their capacity (a set it
/// lacks is reported with its elements). The daemon never resizes a set in place, so a
/// difference means the table was built from another plan or edited.
fn size_problems(expected: &Ruleset, declared: &[SetDeclaration]) -> Vec<String> {
    let show = |size: Option<u32>| size.map_or("no size".to_string(), |s| format!("size {s}"));
    expected
        .sets
        .iter()
        .filter_map(|set| {
            let held = declared.iter().find(|d| d.name == set.name)?;
            (held.size != set.capacity()).then(|| {
                format!(
                    "set {} is declared with {}, the plan's has {}",
                    set.name,
                    show(held.size),
                    show(set.capacity())
                )
            })
        })
        .collect()
}

/// How the rules `held` differ from the plan: byte for byte against `reference` when there is
/// one, else by count.
fn rule_problems(
    expected: &Ruleset,
    held: &ChainRules,
    reference: Option<&ChainRules>,
) -> Vec<String> {
    match reference {
        Some(reference) => differences(reference, held),
        None if count(held) != expected.rule_count() => vec![format!(
            "table ip6 {} holds {} rules, expected {}",
            expected.table,
            count(held),
            expected.rule_count()
        )],
        None => Vec::new(),
    }
}

/// What differs between the rules wanted and the rules held, one line per chain. Meant for
/// a table whose comment names the wanted plan, so a difference is a change made to it since.
pub fn differences(wanted: &ChainRules, held: &ChainRules) -> Vec<String> {
    let mut problems = Vec::new();
    for (chain, rules) in wanted {
        match held.get(chain) {
            None => problems.push(format!("chain {chain} has none of its rules")),
            Some(kernel) if kernel.len() != rules.len() => problems.push(format!(
                "chain {chain} holds {} rules where the plan has {}",
                kernel.len(),
                rules.len()
            )),
            Some(kernel) if kernel != rules => {
                let edited = rules
                    .iter()
                    .zip(kernel)
                    .filter(|(want, have)| want != have)
                    .count();
                problems.push(format!(
                    "chain {chain}: {edited} of its {} rules changed since v6guard applied them",
                    rules.len()
                ));
            }
            Some(_) => {}
        }
    }
    for (chain, rules) in held.iter().filter(|(c, _)| !wanted.contains_key(*c)) {
        problems.push(format!(
            "chain {chain} holds {} rules the plan does not have",
            rules.len()
        ));
    }
    problems
}

/// The number of rules in `chains`.
pub fn count(chains: &ChainRules) -> usize {
    chains.values().map(Vec::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::read::rules::RuleBytes;
    use crate::ruleset::Field;

    fn chains(rules: &[(&str, &[u8])]) -> ChainRules {
        let mut chains = ChainRules::new();
        for (chain, expressions) in rules {
            chains
                .entry(chain.to_string())
                .or_default()
                .push(RuleBytes {
                    expressions: expressions.to_vec(),
                    userdata: b"drop it".to_vec(),
                });
        }
        chains
    }

    #[test]
    fn a_set_declared_with_another_size_is_a_problem() {
        use crate::ruleset::{FieldType, NamedSet};
        let mut expected = Ruleset {
            table: "v6guard".into(),
            sets: vec![
                NamedSet::set("published", vec![FieldType::Port]),
                NamedSet::interval_set("prefixes", vec![FieldType::Prefix]),
            ],
            chains: vec![],
            bridge_chains: vec![],
            needs_bridge_netfilter: false,
            ndp: Default::default(),
        };
        let declared = |published: Option<u32>, prefixes: Option<u32>| {
            vec![
                SetDeclaration {
                    name: "published".into(),
                    size: published,
                },
                SetDeclaration {
                    name: "prefixes".into(),
                    size: prefixes,
                },
            ]
        };
        let capacity = expected.sets[0].capacity();
        assert!(size_problems(&expected, &declared(capacity, None)).is_empty());
        assert!(
            size_problems(&expected, &[]).is_empty(),
            "missing: told elsewhere"
        );
        assert_eq!(
            size_problems(&expected, &declared(None, Some(64))),
            vec![
                "set published is declared with no size, the plan's has size 256",
                "set prefixes is declared with size 64, the plan's has no size",
            ]
        );
        expected.sets[0].elements = (0..200).map(|p| (vec![Field::Port(p)], vec![])).collect();
        assert_eq!(
            size_problems(&expected, &declared(capacity, None)),
            vec!["set published is declared with size 256, the plan's has size 512"]
        );
    }

    #[test]
    fn differences_name_the_chain_and_what_changed() {
        let planned = chains(&[("forward", &[1, 2])]);
        assert_eq!(count(&planned), 1);
        assert_eq!(
            differences(&planned, &planned.clone()),
            Vec::<String>::new()
        );
        assert_eq!(
            differences(&planned, &chains(&[("forward", &[1, 3])])),
            vec!["chain forward: 1 of its 1 rules changed since v6guard applied them"]
        );
        assert_eq!(
            differences(
                &planned,
                &chains(&[("forward", &[1, 2]), ("forward", &[1, 2])])
            ),
            vec!["chain forward holds 2 rules where the plan has 1"]
        );
        assert_eq!(
            differences(&planned, &chains(&[("inputxx", &[1, 2])])),
            vec![
                "chain forward has none of its rules",
                "chain inputxx holds 1 rules the plan does not have"
            ]
        );
    }
}
