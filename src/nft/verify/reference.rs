//! The reference for comparing rules byte for byte, so `audit` notices a rule edited in
//! place (same rule count, same table comment).
//!
//! The reference is the kernel's own dump of the planned rules: the plan (without set
//! elements) is applied in a private network namespace of a short-lived thread and read back.
//! Comparing kernel dump with kernel dump avoids guessing how this kernel echoes what it was
//! sent (it drops the nested flag, orders attributes its own way and adds defaults, all of
//! which vary between kernel versions).

use crate::nft::read::{read_rules, rules::ChainRules};
use crate::nft::{NftError, write};
use crate::ruleset::Ruleset;

/// Why the reference rules could not be built (then `verify` counts rules instead).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read /proc/thread-self/ns/net: {0}")]
    Namespace(#[source] std::io::Error),
    #[error("cannot create a private network namespace: {0}")]
    Unshare(#[source] std::io::Error),
    #[error("unshare(CLONE_NEWNET) left the thread in the host's namespace")]
    NotIsolated,
    #[error("applying the plan's rules in the private namespace: {0}")]
    Nft(#[from] NftError),
    #[error("the reference table vanished")]
    Vanished,
    #[error("the reference thread panicked")]
    Panicked,
}

/// The kernel's form of `ruleset`'s rules: applied (without set elements) in a private
/// network namespace and read back. Needs CAP_SYS_ADMIN (to unshare) besides CAP_NET_ADMIN;
/// the error says why it could not be built.
pub fn reference(ruleset: &Ruleset) -> Result<ChainRules, ReferenceError> {
    let mut rules_only = ruleset.clone();
    for set in &mut rules_only.sets {
        set.elements.clear();
    }
    let table = rules_only.table.clone();
    let built = std::thread::spawn(move || -> Result<ChainRules, ReferenceError> {
        // The apply below replaces table `ip6 v6guard` wherever this thread is: it must not
        // run unless the thread demonstrably left the host's namespace (a seccomp filter can
        // make unshare "succeed" without doing anything).
        let host = thread_netns()?;
        // SAFETY: unshare(CLONE_NEWNET) moves only this thread into a new, empty network
        // namespace, which goes away when the thread ends.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(ReferenceError::Unshare(std::io::Error::last_os_error()));
        }
        if thread_netns()? == host {
            return Err(ReferenceError::NotIsolated);
        }
        write::send_batch(&write::build_batch(&rules_only)?)?;
        read_rules(&table)?.ok_or(ReferenceError::Vanished)
    })
    .join();
    built.unwrap_or(Err(ReferenceError::Panicked))
}

/// The identity (inode) of the calling thread's network namespace.
fn thread_netns() -> Result<u64, ReferenceError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .map_err(ReferenceError::Namespace)
}
