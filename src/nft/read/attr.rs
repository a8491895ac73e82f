//! The one parser of nf_tables netlink messages that `read` uses for every dump (tables,
//! chains, rules, sets, set elements): a message's header and its attributes, nested or not.
//!
//! Kernel input is untrusted here: every length is checked, a truncated or malformed
//! attribute ends the walk, and nothing panics.

/// `nfnetlink` subsystem of nftables, in the high byte of `nlmsg_type`.
const NFTABLES: u16 = (libc::NFNL_SUBSYS_NFTABLES as u16) << 8;
pub const NEWTABLE: u16 = NFTABLES | libc::NFT_MSG_NEWTABLE as u16;
pub const NEWCHAIN: u16 = NFTABLES | libc::NFT_MSG_NEWCHAIN as u16;
pub const NEWRULE: u16 = NFTABLES | libc::NFT_MSG_NEWRULE as u16;
pub const NEWSET: u16 = NFTABLES | libc::NFT_MSG_NEWSET as u16;
pub const NEWSETELEM: u16 = NFTABLES | libc::NFT_MSG_NEWSETELEM as u16;

pub const NLMSG_HDRLEN: usize = 16;
pub const NFGENMSG_LEN: usize = 4;
/// The flag bits of an attribute's type (nested, network byte order).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// An nf_tables message: its type, the family of its nfgenmsg header and its attributes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'m> {
    pub kind: u16,
    /// `NFPROTO_*` of the object (the first byte of the nfgenmsg header).
    pub family: u8,
    pub attributes: &'m [u8],
}

/// The message in `bytes` (one netlink message, header included), or `None` when it is too
/// short to be an nf_tables message.
pub fn message(bytes: &[u8]) -> Option<Message<'_>> {
    let kind = u16::from_ne_bytes(bytes.get(4..6)?.try_into().ok()?);
    let length = u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let bytes = bytes.get(..length.min(bytes.len()))?;
    Some(Message {
        kind,
        family: *bytes.get(NLMSG_HDRLEN)?,
        attributes: bytes.get(NLMSG_HDRLEN + NFGENMSG_LEN..)?,
    })
}

/// The attributes in a buffer of them: (type without flags, value). Also walks a nested
/// attribute's value.
pub fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let length = u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(bytes.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        if length < 4 || length > bytes.len() {
            return None;
        }
        let value = &bytes[4..length];
        bytes = bytes.get(align(length)..).unwrap_or_default();
        Some((kind, value))
    })
}

/// The value of the first attribute of type `kind` in `bytes`.
pub fn find(bytes: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(bytes).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// A NUL-terminated string attribute.
pub fn text(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// A 32-bit attribute (nf_tables sends them in network byte order).
pub fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

pub fn align(length: usize) -> usize {
    (length + 3) & !3
}

/// Builders of messages for the parsers' unit tests.
#[cfg(test)]
pub mod build {
    use super::*;

    pub fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = ((value.len() + 4) as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align(out.len()), 0);
        out
    }

    pub fn text(kind: u16, value: &str) -> Vec<u8> {
        attribute(kind, format!("{value}\0").as_bytes())
    }

    pub fn message(kind: u16, family: u8, attributes: &[Vec<u8>]) -> Vec<u8> {
        let payload = attributes.concat();
        let mut out = ((NLMSG_HDRLEN + NFGENMSG_LEN + payload.len()) as u32)
            .to_ne_bytes()
            .to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0u8; 10]);
        out.extend_from_slice(&[family, 0, 0, 0]);
        out.extend(payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_attributes_and_stops_at_malformed_ones() {
        let mut bytes = build::text(1, "v6guard");
        bytes.extend(build::attribute(2, &7u32.to_be_bytes()));
        let walked: Vec<_> = attributes(&bytes).collect();
        assert_eq!(walked.len(), 2);
        assert_eq!(text(walked[0].1), "v6guard");
        assert_eq!(be32(find(&bytes, 2).expect("attribute 2")), Some(7));
        for cut in 0..bytes.len() {
            assert!(attributes(&bytes[..cut]).count() <= 2);
        }
        let message_bytes = build::message(NEWTABLE, 10, &[bytes.clone()]);
        let parsed = message(&message_bytes).expect("message");
        assert_eq!((parsed.kind, parsed.family), (NEWTABLE, 10));
        assert_eq!(parsed.attributes, &bytes[..]);
        for cut in 0..NLMSG_HDRLEN + 1 {
            assert!(message(&message_bytes[..cut]).is_none());
        }
    }
}
