//! The audit as a table for people: grouped by container, the rows that matter first.

use std::fmt::Write;

use super::{Report, Row, SourceClass, Via};

/// The report as text. `colour` marks exposure beyond what was published in red (only for a
/// terminal, and not with NO_COLOR; the caller decides).
pub fn render_text(report: &Report, colour: bool) -> String {
    let mut out = String::new();
    let state = match report.enforcement.state {
        "enforced" => "v6guard: enforced (the kernel holds the planned ruleset)".to_string(),
        "not_enforced" => format!(
            "v6guard: NOT ENFORCED: {}",
            report.enforcement.reasons.join("; ")
        ),
        "stood_down" => format!(
            "v6guard: standing down: {}",
            report.enforcement.reasons.join("; ")
        ),
        other => format!(
            "v6guard: {other}: {}",
            report.enforcement.reasons.join("; ")
        ),
    };
    let _ = writeln!(out, "{state}");
    for hazard in &report.hazards {
        let _ = writeln!(
            out,
            "hazard: {}\n        fix: {}",
            hazard.message, hazard.fix
        );
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    let mut containers: Vec<&str> = report.rows.iter().map(|r| r.container.as_str()).collect();
    containers.dedup();
    for container in containers {
        let _ = writeln!(out, "\n{container}");
        for row in report.rows.iter().filter(|r| r.container == container) {
            let _ = writeln!(out, "  {}", row_line(row, colour));
        }
    }
    if !report.notes.is_empty() {
        out.push('\n');
    }
    for note in &report.notes {
        let _ = writeln!(out, "{}: {}", note.container, note.note);
    }
    if report.rows.is_empty() && report.notes.is_empty() {
        out.push_str("\n(no container listens on or publishes an IPv6 port)\n");
    }
    if let Some(probe) = &report.probe {
        let _ = writeln!(
            out,
            "\n--probe: {} TCP connections from outside, {} disagreeing with the audit",
            probe.probed,
            probe.disagreements.len()
        );
        for d in &probe.disagreements {
            let _ = writeln!(
                out,
                "  DISAGREES {} [{}]:{}: the audit says {}, a real connection {}",
                d.container,
                d.address,
                d.port,
                if d.audit_says_reachable {
                    "reachable"
                } else {
                    "closed"
                },
                if d.connection_succeeded {
                    "succeeded"
                } else {
                    "failed"
                }
            );
        }
    }
    out
}

fn row_line(row: &Row, colour: bool) -> String {
    let socket = format!("[{}]:{}/{}", row.address, row.port, row.protocol.name());
    let status = match (row.published, row.beyond_published) {
        (true, _) => "published",
        (false, true) => "NOT PUBLISHED, REACHABLE",
        (false, false) => "not published",
    };
    let from = if row.reachable_from.is_empty() {
        "nobody".to_string()
    } else {
        row.reachable_from
            .iter()
            .map(|c| source_name(*c, row))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let via: Vec<String> = row.via.iter().map(via_name).collect();
    let line = format!(
        "{socket:<42} {status:<25} from {from}; via {}  ({})",
        if via.is_empty() {
            "-".to_string()
        } else {
            via.join(", ")
        },
        row.why
    );
    if colour && row.beyond_published {
        format!("\x1b[31m{line}\x1b[0m")
    } else {
        line
    }
}

fn source_name(class: SourceClass, row: &Row) -> String {
    match class {
        SourceClass::Outside => match &row.outside_sources {
            None => "outside".to_string(),
            Some(prefixes) => format!(
                "outside (only {})",
                prefixes
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        SourceClass::OtherNetwork => "other networks".to_string(),
        SourceClass::SameNetwork => "same network".to_string(),
        SourceClass::Host => "host".to_string(),
    }
}

fn via_name(via: &Via) -> String {
    match via {
        Via::Direct => "direct".to_string(),
        Via::Dnat { host } => format!("DNAT {host}"),
        Via::DockerProxy { host } => format!("docker-proxy {host} (client address hidden)"),
    }
}
