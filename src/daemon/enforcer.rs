//! The Enforcer: the one place that changes the host to match a planned Ruleset, for the
//! daemon and for `v6guard apply` alike.
//!
//! Order, always: host prerequisites (bridged IPv6 through the ip6 hooks), then the nftables
//! transaction, then the NDP proxy entries. The table goes before the proxy entries because a
//! proxy entry makes the host answer neighbour solicitations for a container's address on the
//! uplink, which draws traffic towards it: that traffic must meet the rules that decide what
//! may pass, not the previous ones (or none, on a first apply). Removing an entry after the
//! table is harmless: the address then only stops being answered for. If the kernel refuses
//! the table, the proxy entries are left as they were (still matching the rules that stayed),
//! and the next enforce syncs both.
//!
//! The kernel and the host are traits ([`Kernel`], [`Host`]) so the daemon's state machine is
//! unit-tested with fakes; [`Enforcer::system`] is the real thing.

use std::path::PathBuf;

use tracing::debug;

use super::reconcile::{Changed, Enforced, Kernel, Netlink, Reconciler};
use crate::ndp::{self, NdpChanges, NdpError};
use crate::nft::{self, NftError};
use crate::plan::PlanInputs;
use crate::ruleset::{NdpProxies, Ruleset, TABLE_NAME};
use crate::snapshot::{Container, Snapshot};

/// What the Enforcer and the daemon change on, or ask of, the host outside the nftables
/// transaction. [`System`] is the real one.
pub trait Host {
    /// Make the host able to enforce `ruleset` (e.g. turn on bridge-nf-call-ip6tables).
    fn prepare(&mut self, ruleset: &Ruleset);
    /// Make the NDP proxy entries match `wanted` (see [`crate::ndp::sync`]).
    fn sync_ndp(&mut self, wanted: &NdpProxies) -> Result<NdpChanges, NdpError>;
    /// Remove every table v6guard owns; the tables removed, as `FAMILY NAME`.
    fn remove_tables(&mut self) -> Result<Vec<String>, NftError>;
    /// Whether both of v6guard's tables (ip6 and bridge) are in place and not dormant.
    fn tables_present(&mut self) -> Result<bool, NftError>;
    /// Why Docker will firewall IPv6 itself, known without its API (daemon.json, dockerd's
    /// flags and version, Docker's nftables table); `None` when it will not.
    fn docker_manages_ipv6(&mut self) -> Option<String>;
}

/// The real host: sysctls, rtnetlink for NDP, nf_tables for the tables.
#[derive(Debug, Default)]
pub struct System {
    /// dockerd's config file, for [`Host::docker_manages_ipv6`].
    pub daemon_json: Option<PathBuf>,
}

impl Host for System {
    fn prepare(&mut self, ruleset: &Ruleset) {
        crate::host::ensure_prerequisites(ruleset);
    }

    fn sync_ndp(&mut self, wanted: &NdpProxies) -> Result<NdpChanges, NdpError> {
        ndp::sync(wanted)
    }

    fn remove_tables(&mut self) -> Result<Vec<String>, NftError> {
        nft::cleanup()
    }

    fn tables_present(&mut self) -> Result<bool, NftError> {
        let tables = nft::list_tables()?;
        Ok([libc::NFPROTO_IPV6, libc::NFPROTO_BRIDGE]
            .iter()
            .all(|family| {
                tables
                    .iter()
                    .any(|t| t.family == *family as u32 && t.name == TABLE_NAME && !t.dormant)
            }))
    }

    fn docker_manages_ipv6(&mut self) -> Option<String> {
        let mut host = super::skeleton_snapshot();
        host.daemon = crate::settings::read_daemon_settings(self.daemon_json.as_deref()).ok()?;
        host.engine.docker_nft_ip6_table = crate::host::docker_nft_ip6_table().unwrap_or(false);
        if host.daemon.ip6tables.value.is_none() {
            if let Some(version) = crate::host::installed_dockerd_version() {
                debug!("installed dockerd {version} (`dockerd --version`)");
                host.engine.version = version;
            }
        }
        crate::plan::stand_down_reason(&host).map(|reason| reason.to_string())
    }
}

/// What one enforce did: the table transaction, and whether the NDP proxy entries followed.
#[derive(Debug)]
pub struct Applied {
    pub table: Enforced,
    /// `Err`: the table holds the ruleset but the proxy entries could not be updated; the
    /// next enforce tries again.
    pub ndp: Result<(), NdpError>,
}

/// Executes the kernel and NDP side of a plan: owns the [`Reconciler`] (what was applied)
/// and the NDP entries last synced.
pub struct Enforcer<K: Kernel, H: Host> {
    reconciler: Reconciler<K>,
    host: H,
    /// The NDP proxy entries last synced (`None`: not yet, or the last sync failed).
    ndp_synced: Option<NdpProxies>,
}

impl Enforcer<Netlink, System> {
    /// The real kernel and host.
    pub fn system(daemon_json: Option<PathBuf>) -> Self {
        Enforcer::new(Netlink::default(), System { daemon_json })
    }
}

impl<K: Kernel, H: Host> Enforcer<K, H> {
    pub fn new(kernel: K, host: H) -> Self {
        Enforcer {
            reconciler: Reconciler::new(kernel),
            host,
            ndp_synced: None,
        }
    }

    /// Make the host hold `wanted`, in the order the module documentation gives. `Err`: the
    /// kernel refused the table; nothing changed (the transaction is atomic).
    pub fn enforce(&mut self, wanted: Ruleset) -> Result<Applied, NftError> {
        self.host.prepare(&wanted);
        let ndp = wanted.ndp.clone();
        let table = self.reconciler.enforce(wanted)?;
        Ok(Applied {
            table,
            ndp: self.sync_ndp(ndp),
        })
    }

    /// Make the host hold the plan of `snapshot` under `inputs`, in the same order as
    /// [`Self::enforce`]. `changed` says what moved since the last call: the engine then plans
    /// and transacts only those containers' elements (see [`Reconciler::prepare`]).
    pub fn enforce_changes(
        &mut self,
        snapshot: &Snapshot,
        inputs: &PlanInputs,
        changed: Changed,
    ) -> Result<Applied, NftError> {
        let wanted = self.reconciler.prepare(snapshot, inputs, changed);
        self.host.prepare(wanted);
        // Cloned only when it differs from what was synced: NDP entries grow with the host.
        let ndp = (self.ndp_synced.as_ref() != Some(&wanted.ndp)).then(|| wanted.ndp.clone());
        let table = self.reconciler.enforce_prepared()?;
        Ok(Applied {
            table,
            ndp: ndp.map_or(Ok(()), |ndp| self.sync_ndp(ndp)),
        })
    }

    /// Put `fresh` in place of the containers with these IDs in `snapshot`, so the engine's
    /// next [`Self::enforce_changes`] finds them cheaply (see [`Reconciler::replace_containers`]).
    pub fn replace_containers(
        &mut self,
        snapshot: &mut Snapshot,
        ids: &[String],
        fresh: Vec<Container>,
    ) {
        self.reconciler.replace_containers(snapshot, ids, fresh);
    }

    /// Sync the NDP proxy entries, only when what is wanted changed.
    fn sync_ndp(&mut self, wanted: NdpProxies) -> Result<(), NdpError> {
        if self.ndp_synced.as_ref() == Some(&wanted) {
            return Ok(());
        }
        // What was ours at the last sync stays ours for this one, so entries of a network that
        // just went away (compose down) are removed with it.
        let mut effective = wanted.clone();
        if let Some(previous) = &self.ndp_synced {
            effective.owned.extend(previous.owned.iter().cloned());
        }
        match self.host.sync_ndp(&effective) {
            Ok(_) => {
                self.ndp_synced = Some(wanted);
                Ok(())
            }
            Err(error) => {
                self.ndp_synced = None;
                Err(error)
            }
        }
    }

    /// Put the applied ruleset back whole (after drift). `Ok(false)`: nothing applied yet.
    pub fn restore(&mut self) -> Result<bool, NftError> {
        self.reconciler.restore()
    }

    /// Differences between the kernel and the applied ruleset (empty when nothing applied).
    pub fn verify(&mut self) -> Result<Vec<String>, NftError> {
        self.reconciler.verify()
    }

    /// Remove v6guard's tables on purpose (standing down): forget what was applied, so the
    /// next enforce installs the table afresh and nothing is restored meanwhile.
    pub fn remove_tables(&mut self) -> Result<Vec<String>, NftError> {
        self.reconciler.forget();
        self.host.remove_tables()
    }

    /// The host, for what the daemon asks of it besides enforcing.
    pub fn host(&mut self) -> &mut H {
        &mut self.host
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::nft::incremental::SetDelta;

    type Log = Rc<RefCell<Vec<&'static str>>>;

    struct FakeKernel(Log, bool);

    impl Kernel for FakeKernel {
        fn replace(&mut self, _: &Ruleset) -> Result<(), NftError> {
            self.0.borrow_mut().push("table");
            match self.1 {
                true => Err(NftError::Rejected(std::io::Error::from_raw_os_error(
                    libc::EPERM,
                ))),
                false => Ok(()),
            }
        }
        fn update(&mut self, _: &str, _: &[SetDelta]) -> Result<(), NftError> {
            self.0.borrow_mut().push("elements");
            Ok(())
        }
        fn verify(&mut self, _: &Ruleset) -> Result<Vec<String>, NftError> {
            Ok(Vec::new())
        }
    }

    struct FakeHost(Log);

    impl Host for FakeHost {
        fn prepare(&mut self, _: &Ruleset) {
            self.0.borrow_mut().push("prepare");
        }
        fn sync_ndp(&mut self, _: &NdpProxies) -> Result<NdpChanges, NdpError> {
            self.0.borrow_mut().push("ndp");
            Ok(NdpChanges::default())
        }
        fn remove_tables(&mut self) -> Result<Vec<String>, NftError> {
            Ok(Vec::new())
        }
        fn tables_present(&mut self) -> Result<bool, NftError> {
            Ok(false)
        }
        fn docker_manages_ipv6(&mut self) -> Option<String> {
            None
        }
    }

    fn ruleset(proxied: &[&str]) -> Ruleset {
        let mut ruleset =
            crate::plan::PlanInputs::default().plan(&super::super::skeleton_snapshot());
        for address in proxied {
            let entry = ("eth0".to_string(), address.parse().unwrap());
            ruleset.ndp.entries.insert(entry);
        }
        ruleset
    }

    #[test]
    fn prerequisites_then_the_table_then_ndp_and_ndp_only_when_it_changes() {
        let log = Log::default();
        let mut enforcer = Enforcer::new(FakeKernel(log.clone(), false), FakeHost(log.clone()));
        enforcer
            .enforce(ruleset(&["2001:db8::5"]))
            .unwrap()
            .ndp
            .unwrap();
        assert_eq!(*log.borrow(), ["prepare", "table", "ndp"]);
        log.borrow_mut().clear();
        enforcer
            .enforce(ruleset(&["2001:db8::5"]))
            .unwrap()
            .ndp
            .unwrap();
        assert_eq!(*log.borrow(), ["prepare"], "nothing changed");
        log.borrow_mut().clear();
        enforcer
            .enforce(ruleset(&["2001:db8::6"]))
            .unwrap()
            .ndp
            .unwrap();
        assert_eq!(*log.borrow(), ["prepare", "ndp"]);
    }

    #[test]
    fn a_refused_table_leaves_the_ndp_entries_alone() {
        let log = Log::default();
        let mut enforcer = Enforcer::new(FakeKernel(log.clone(), true), FakeHost(log.clone()));
        assert!(enforcer.enforce(ruleset(&["2001:db8::5"])).is_err());
        assert_eq!(*log.borrow(), ["prepare", "table"]);
    }
}
