//! The set declarations of a table, as the kernel lists them: today only what `verify` compares
//! beyond the table's comment, the declared size (a capacity v6guard chooses per set, see
//! `NamedSet::capacity`). The comment alone cannot show it on kernels before 5.13, which drop
//! table comments.

use super::{NftError, attr, c_string, dump_request, message_bytes, run_dump};
use nftnl::nftnl_sys as sys;

/// One set or map of a table, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDeclaration {
    pub name: String,
    /// `size N`; `None` when declared without one.
    pub size: Option<u32>,
}

/// `NFTA_SET_*` and `NFTA_SET_DESC_*` in linux/netfilter/nf_tables.h.
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_DESC_SIZE: u16 = 1;

/// The sets and maps of table `ip6 TABLE` (none when the table is missing).
pub fn read_sets(table: &str) -> Result<Vec<SetDeclaration>, NftError> {
    let name = c_string(table)?;
    let family = libc::NFPROTO_IPV6 as u16;
    let request = dump_request(libc::NFT_MSG_GETSET as u16, family, |header| {
        // SAFETY: a fresh set object carries only the table filter; it is freed here.
        unsafe {
            let set = sys::nftnl_set_alloc();
            if set.is_null() {
                return;
            }
            sys::nftnl_set_set_str(set, sys::NFTNL_SET_TABLE as u16, name.as_ptr());
            sys::nftnl_set_set_u32(set, sys::NFTNL_SET_FAMILY as u16, u32::from(family));
            sys::nftnl_set_nlmsg_build_payload(header, set);
            sys::nftnl_set_free(set);
        }
    });
    let mut sets = Vec::new();
    match run_dump(&request, parse_set, &mut sets) {
        Ok(()) => Ok(sets),
        Err(NftError::Receive(e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn parse_set(header: &libc::nlmsghdr, sets: &mut Vec<SetDeclaration>) -> libc::c_int {
    if let Some(set) = attr::message(message_bytes(header)).and_then(set_from) {
        sets.push(set);
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// A set from a NEWSET message; `None` for other messages or one without a name.
fn set_from(message: attr::Message<'_>) -> Option<SetDeclaration> {
    if message.kind != attr::NEWSET {
        return None;
    }
    let get = |kind| attr::find(message.attributes, kind);
    Some(SetDeclaration {
        name: attr::text(get(NFTA_SET_NAME)?),
        size: get(NFTA_SET_DESC)
            .and_then(|desc| attr::find(desc, NFTA_SET_DESC_SIZE))
            .and_then(attr::be32),
    })
}

#[cfg(test)]
mod tests {
    use super::attr::build;
    use super::*;

    #[test]
    fn a_set_with_and_without_a_size() {
        let desc = build::attribute(NFTA_SET_DESC_SIZE, &1024u32.to_be_bytes());
        let sized = build::message(
            attr::NEWSET,
            10,
            &[
                build::text(NFTA_SET_NAME, "published"),
                build::attribute(NFTA_SET_DESC, &desc),
            ],
        );
        let parse = |bytes: &[u8]| set_from(attr::message(bytes).expect("a whole message"));
        assert_eq!(
            parse(&sized),
            Some(SetDeclaration {
                name: "published".into(),
                size: Some(1024),
            })
        );
        let unsized_set = build::message(attr::NEWSET, 10, &[build::text(NFTA_SET_NAME, "s")]);
        assert_eq!(parse(&unsized_set).and_then(|s| s.size), None);
        let nameless = build::message(attr::NEWSET, 10, &[build::attribute(NFTA_SET_DESC, &desc)]);
        assert_eq!(parse(&nameless), None);
        let other = build::message(attr::NEWTABLE, 10, &[build::text(NFTA_SET_NAME, "s")]);
        assert_eq!(parse(&other), None);
    }
}
