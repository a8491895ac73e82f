//! What keeps the table guarding when Docker's state alone does not: the skeleton before
//! Docker is read, standing down while Docker firewalls IPv6 itself, and putting the table
//! back after drift. Part of the [`Machine`]; all kernel changes go through its Enforcer.

use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::drift::{Detected, DriftReport, RESTORE_WINDOW};
use super::enforcer::Host;
use super::machine::Machine;
use super::pacing::TriggerKind;
use super::reconcile::Kernel;
use super::record::{ms, summarize};
use super::skeleton_snapshot;
use crate::config::Mode;
use crate::ruleset::TABLE_NAME;

/// What [`Machine::apply_skeleton`] did.
enum Skeleton {
    /// Installed, with this many rules.
    Applied(usize),
    /// Docker manages IPv6 itself (known without Docker): nothing installed.
    StandingDown,
    /// `fail_closed` is off: nothing installed.
    FailClosedOff,
    /// The kernel refused it (logged).
    Failed,
}

impl<K: Kernel, H: Host> Machine<K, H> {
    /// Before Docker is asked anything (at boot, dockerd restarts containers as soon as it
    /// runs, and it may not run for a while): make sure a table guards Docker's bridges. A
    /// table left by an earlier run is kept (it holds more than the skeleton); without one,
    /// the skeleton ruleset is applied. Either way systemd hears READY, so dockerd, ordered
    /// after v6guard, starts with its bridges guarded.
    pub(super) fn guard_at_start(&mut self) {
        // Both tables: a kept ip6 table without the bridge table (an upgrade from a version
        // without it, or a deletion while v6guard was down) would leave VLAN tags and router
        // advertisements unguarded until Docker is read.
        let present = match self.enforcer.host().tables_present() {
            Ok(present) => present,
            Err(error) => {
                error!(%error, "cannot list nftables tables, so no skeleton ruleset; nothing guards Docker's bridges until Docker is read");
                return;
            }
        };
        if present {
            info!(
                "table ip6 {TABLE_NAME} from an earlier run is in place; kept until Docker is read"
            );
            self.update_status(|s| {
                s.at_start = Some(format!(
                    "kept table ip6 {TABLE_NAME} left by an earlier run"
                ))
            });
            self.announce("guarding with the table left by an earlier run; waiting for Docker");
            return;
        }
        match self.apply_skeleton("no table ip6 v6guard yet") {
            Skeleton::Applied(rules) => {
                self.update_status(|s| {
                    s.at_start = Some(format!(
                        "applied the skeleton ruleset ({rules} rules) before Docker was read"
                    ));
                    s.totals.transactions += 1;
                    s.totals.full_transactions += 1;
                });
                self.announce("skeleton ruleset in place; waiting for Docker");
            }
            Skeleton::StandingDown => self.announce("standing down before Docker is read"),
            Skeleton::FailClosedOff => self.announce("fail_closed off; waiting for Docker"),
            Skeleton::Failed => {}
        }
    }

    /// Guard every Docker bridge by name with the skeleton ruleset (before Docker is read),
    /// unless Docker manages IPv6 itself or `fail_closed` is off. Logs what it did and `why`.
    fn apply_skeleton(&mut self, why: &str) -> Skeleton {
        let docker_owns_ipv6 = match self.settings.force {
            true => None,
            false => self.enforcer.host().docker_manages_ipv6(),
        };
        let mode = self.inputs.options.mode;
        if let Some(reason) = &docker_owns_ipv6 {
            if mode == Mode::StandDown {
                info!("{why}; no skeleton ruleset: {reason}");
                return Skeleton::StandingDown;
            }
        }
        // Augment mode (`mode: augment`, or `auto` where Docker firewalls IPv6): its skeleton
        // holds no drops until Docker is read, instead of closing Docker's bridges against
        // Docker's own rules.
        let augment = !self.inputs.options.force_full
            && (mode == Mode::Augment || (mode == Mode::Auto && docker_owns_ipv6.is_some()));
        if self.inputs.options.bridge_names.is_empty()
            && self.inputs.options.bridge_prefixes.is_empty()
        {
            info!(
                "{why}; no skeleton ruleset: fail_closed is off, so nothing is guarded until \
                 Docker is read"
            );
            return Skeleton::FailClosedOff;
        }
        let skeleton = match augment {
            true => crate::plan::augment::plan(&skeleton_snapshot(), &self.inputs),
            false => self.inputs.plan(&skeleton_snapshot()),
        };
        match self.enforcer.enforce(skeleton) {
            Ok(applied) => {
                info!(
                    rules = applied.table.rules,
                    ms = ms(applied.table.took),
                    "{why}: applied the skeleton ruleset (Docker's bridges closed by name, except \
                     replies, neighbour discovery and echo) until Docker is read"
                );
                Skeleton::Applied(applied.table.rules)
            }
            Err(error) => {
                error!(
                    %error,
                    "{why}; cannot apply the skeleton ruleset: nothing guards Docker's bridges \
                     until Docker is read and its ruleset applied"
                );
                Skeleton::Failed
            }
        }
    }

    /// Why not to apply (Docker manages IPv6 itself), logged when it first appears.
    /// With `--force` the reason is logged once and ignored.
    pub(super) fn stand_down(&mut self, reason: Option<String>) -> Option<String> {
        if self.settings.force {
            if let Some(reason) = &reason {
                if !self.force_warned {
                    warn!("--force: applying although {reason}");
                    self.force_warned = true;
                }
            }
            return None;
        }
        match (&reason, &self.stood_down) {
            (Some(why), None) => {
                error!(
                    reason = why.as_str(),
                    "standing down: not changing the ruleset (run with --force to override)"
                );
                self.remove_tables_standing_down(why);
            }
            (Some(why), Some(before)) if why != before => error!(
                reason = why.as_str(),
                "still standing down, for another reason (run with --force to override)"
            ),
            (None, Some(_)) => {
                info!("Docker no longer manages IPv6 itself; v6guard enforces again");
                self.update_status(|s| s.stand_down_cleanup = None);
            }
            _ => {}
        }
        self.stood_down = reason.clone();
        if reason.is_some() {
            self.announce("standing down: Docker manages IPv6 itself");
        }
        reason
    }

    /// Standing down: v6guard's table would fight Docker's own IPv6 firewall (a frozen
    /// published set dropping what Docker allows), so it goes, loudly. The next enforce (once
    /// Docker stops managing IPv6) installs the table afresh.
    fn remove_tables_standing_down(&mut self, why: &str) {
        let outcome = match self.enforcer.remove_tables() {
            Ok(removed) if removed.is_empty() => return,
            Ok(removed) => {
                let tables = removed.join(", ");
                warn!(
                    "standing down: REMOVED v6guard's table(s) {tables}, so they do not fight \
                     Docker's own IPv6 firewall. Why: {why}"
                );
                format!("removed table(s) {tables} on standing down")
            }
            Err(error) => {
                error!(%error, "standing down: could not remove v6guard's tables; they may fight Docker's own IPv6 firewall. Remove them with `v6guard cleanup`");
                format!("could not remove v6guard's tables: {error}")
            }
        };
        self.update_status(|s| s.stand_down_cleanup = Some(outcome));
    }

    /// Reports from the nftables monitor (a burst, coalesced): one restore for them all.
    pub(super) fn on_drift(&mut self, reports: Vec<DriftReport>, now: Instant) {
        // A change read before our last restore began is already overwritten by it (the
        // periodic verify got there first): restoring again would only spend the restore limit.
        let superseded = |seen: &Instant| self.restore_started.is_some_and(|r| *seen < r);
        let foreign = reports.iter().find_map(|r| match r {
            DriftReport::Foreign {
                process,
                pid,
                changes,
                seen,
            } if !superseded(seen) => Some((process.clone(), *pid, summarize(changes))),
            _ => None,
        });
        let overrun = reports.contains(&DriftReport::Overrun);
        match foreign {
            Some((process, pid, changes)) => {
                let what = format!(
                    "`{process}` (pid {pid}) changed table ip6 or bridge {TABLE_NAME}: {changes}"
                );
                self.restore(&what, Detected::Notification, now);
            }
            None if overrun => self.verify(
                "nftables notifications were lost",
                Detected::Notification,
                now,
            ),
            None => debug!("table change already undone by the last restore"),
        }
    }

    /// Compare the kernel with the applied ruleset; restore on any difference.
    pub(super) fn verify(&mut self, why: &str, detected: Detected, now: Instant) {
        if self.stood_down.is_some() {
            return;
        }
        match self.enforcer.verify() {
            Ok(problems) if problems.is_empty() => {
                debug!(why, "kernel matches the applied ruleset")
            }
            Ok(problems) => self.restore(&format!("{why}: {}", problems.join("; ")), detected, now),
            Err(error) => warn!(%error, why, "cannot verify the table"),
        }
    }

    /// Put the applied ruleset back. Notifications are answered at once up to the restore
    /// limit; the periodic verify always restores (see [`super::drift::RestoreLimit`]).
    fn restore(&mut self, what: &str, detected: Detected, now: Instant) {
        if self.stood_down.is_some() {
            warn!("{what}; not restoring while standing down");
            return;
        }
        let decision = self.restores.decide(detected, now);
        let window_s = RESTORE_WINDOW.as_secs();
        let verify_s = self.settings.verify_interval.as_secs();
        if !decision.restore {
            if decision.log {
                error!(
                    "DRIFT: {what}. Something keeps changing v6guard's table ({} restores in \
                     {window_s} s): not restoring at once any more, the periodic verify (every \
                     {verify_s} s) restores it. Summed up once every {window_s} s from now on",
                    self.restores.recent()
                );
            } else {
                debug!("DRIFT: {what}; left to the periodic verify");
            }
            return;
        }
        let started = Instant::now();
        match self.enforcer.restore() {
            Ok(true) => {
                self.restore_started = Some(started);
                self.restores.restored(now);
                let took = ms(started.elapsed());
                if decision.log && decision.fighting {
                    error!(
                        ms = took,
                        "DRIFT: {what}. Restored v6guard's ruleset. Something keeps changing the \
                         table: {} restores in {window_s} s, {} changes left to the periodic \
                         verify (every {verify_s} s) since the last such line",
                        self.restores.recent(),
                        decision.unanswered
                    );
                } else if decision.log {
                    error!(ms = took, "DRIFT: {what}. Restored v6guard's ruleset");
                } else {
                    debug!(ms = took, "DRIFT: {what}. Restored v6guard's ruleset");
                }
                self.update_status(|s| s.totals.drift_restores += 1);
            }
            // Nothing applied yet: a table kept from an earlier run was changed before this
            // daemon applied anything. Counted against the restore limit whatever follows, so
            // a fight over it is not answered at full speed either.
            Ok(false) => {
                self.restores.restored(now);
                self.replace_unknown_table(what, started, now);
            }
            Err(error) => error!(%error, "DRIFT: {what}. Restoring FAILED"),
        }
    }

    /// The table changed before this daemon applied anything, so there is nothing of its own
    /// to put back. With Docker read already (its first apply failed), apply the real plan at
    /// once; before that, guard the bridges with the skeleton.
    fn replace_unknown_table(&mut self, what: &str, started: Instant, now: Instant) {
        if self.snapshot.is_some() {
            error!("DRIFT: {what}. Nothing applied yet; applying the plan from Docker's state");
            self.queue_full(TriggerKind::Resync, "drift before the first apply", now);
            return;
        }
        error!("DRIFT: {what}. Nothing applied yet and Docker not read: installing the skeleton");
        if let Skeleton::Applied(_) = self.apply_skeleton("drift before Docker was read") {
            self.restore_started = Some(started);
            self.update_status(|s| s.totals.drift_restores += 1);
            self.announce("skeleton ruleset in place; waiting for Docker");
        }
    }
}
