//! `render --diff`: what `apply` would change in the live tables, as nft commands.
//!
//! `apply` always replaces both tables in one transaction; what that *changes* is one of
//! three things, and this prints which:
//! - nothing: the kernel holds the plan (same rules, same elements);
//! - set elements only: the rules are the plan's (same plan digest, rules byte for byte) and
//!   only elements differ, printed as `delete element` / `add element` commands;
//! - the tables themselves (missing, dormant, another plan, rules edited, a set whose element
//!   count crosses a capacity boundary): the reasons, then the whole script, as apply
//!   replaces them whole.
//!
//! The element comparison reuses the daemon's own [`nft::incremental::diff`] against a copy of
//! the plan holding the kernel's elements, so "only elements differ" means exactly what it
//! means to the daemon.

use std::fmt::Write as _;

use super::exit::Failure;
use v6guard::nft::{self, incremental, read, verify};
use v6guard::ruleset::Ruleset;

/// The nft text of what apply would change, ending in a newline.
pub fn live_diff(wanted: &Ruleset) -> Result<String, Failure> {
    let Some(held) = kernel_copy(wanted)? else {
        // A set or the table is missing: verify says which.
        let verified = verify::verify(wanted, verify::RuleCheck::Count)?;
        return Ok(replace_whole(wanted, &verified.problems));
    };
    // `held` has the plan's structure and the kernel's elements: whatever verify still finds
    // is structural (table missing or dormant, another plan, rules added, removed, edited).
    let verified = verify::verify(&held, verify::RuleCheck::Exact)?;
    if !verified.problems.is_empty() {
        return Ok(replace_whole(wanted, &verified.problems));
    }
    let mut out = String::new();
    if let Some(why) = &verified.counted_only {
        let _ = writeln!(
            out,
            "# rules compared by count only ({why}): an edit in place would not show"
        );
    }
    match incremental::diff(Some(&held), wanted) {
        incremental::Delta::Unchanged => {
            let _ = writeln!(
                out,
                "# tables ip6 and bridge {} hold the plan: apply would change nothing",
                wanted.table
            );
        }
        incremental::Delta::Elements(sets) => {
            let _ = writeln!(
                out,
                "# the rules are the plan's; apply would change these set elements:"
            );
            for set in &sets {
                element_command(&mut out, "delete", &wanted.table, &set.set, &set.removed);
                element_command(&mut out, "add", &wanted.table, &set.set, &set.added);
            }
        }
        incremental::Delta::Replace => {
            // verify found the structure equal, so the sets' declarations differ: the
            // elements apply would install give a set another capacity (`size`), which
            // only a new table can have.
            return Ok(replace_whole(wanted, &resized(&held, wanted)));
        }
    }
    Ok(out)
}

/// The plan with each set's elements as the kernel holds them; `None` when a set (or the
/// table) is missing.
fn kernel_copy(wanted: &Ruleset) -> Result<Option<Ruleset>, Failure> {
    let mut held = wanted.clone();
    for set in &mut held.sets {
        match read::read_elements(&wanted.table, set)? {
            Some(elements) => set.elements = elements,
            None => return Ok(None),
        }
    }
    Ok(Some(held))
}

/// The sets whose size the wanted elements change, one line each.
fn resized(held: &Ruleset, wanted: &Ruleset) -> Vec<String> {
    let mut why: Vec<String> = held
        .sets
        .iter()
        .zip(&wanted.sets)
        .filter(|(h, w)| h.capacity() != w.capacity())
        .map(|(h, w)| {
            format!(
                "set {} goes from {} to {} elements: its size changes from {} to {}",
                w.name,
                h.elements.len(),
                w.elements.len(),
                h.capacity().unwrap_or_default(),
                w.capacity().unwrap_or_default()
            )
        })
        .collect();
    if why.is_empty() {
        why.push("the sets differ".to_string());
    }
    why
}

/// Why the tables would be replaced, then the script that replaces them.
fn replace_whole(wanted: &Ruleset, why: &[String]) -> String {
    let mut out = format!(
        "# apply would replace tables ip6 and bridge {} whole:\n",
        wanted.table
    );
    for problem in why {
        let _ = writeln!(out, "#   {problem}");
    }
    out.push_str(&nft::render::render_script(wanted));
    out
}

/// `add element ip6 v6guard published { a, b }`, or nothing for no elements.
fn element_command(
    out: &mut String,
    verb: &str,
    table: &str,
    set: &str,
    elements: &[incremental::Element],
) {
    if elements.is_empty() {
        return;
    }
    let listed: Vec<String> = elements
        .iter()
        .map(|(key, value)| nft::render::render_element(key, value))
        .collect();
    let _ = writeln!(
        out,
        "{verb} element ip6 {table} {set} {{ {} }}",
        listed.join(", ")
    );
}
