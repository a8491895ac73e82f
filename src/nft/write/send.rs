//! Sending a finalized batch and waiting for the kernel's verdict: on a socket of its own
//! (`apply`, `cleanup`) or on one kept open (the daemon's [`Session`]).

use nftnl::FinalizedBatch;

use crate::nft::NftError;

/// Send a finalized batch on a socket of its own and wait for the kernel's verdict on every
/// message (`apply`, `cleanup`: one transaction, then the process ends).
pub fn send_batch(batch: &FinalizedBatch) -> Result<(), NftError> {
    Session::open()?.send(batch)
}

/// A netfilter netlink socket kept open for many transactions (the daemon's).
///
/// Why keep it: after a transaction that deleted anything (set elements, a replaced table),
/// the kernel frees the old objects in the background once an RCU grace period has passed,
/// 10-20 ms on the project's machine. Closing a netfilter socket waits for that work, so a
/// socket per transaction makes every removal look 10-20 ms slow although the kernel acked the
/// new rules in well under a millisecond. A kept socket never waits for it.
pub struct Session {
    socket: mnl::Socket,
    /// The largest batch sent so far, in bytes: the send buffer fits it.
    largest_batch: usize,
    /// The most messages in one batch so far: the receive buffer holds their acks.
    most_messages: usize,
    /// Holds acknowledgements, reused between transactions.
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("portid", &self.socket.portid())
            .field("largest_batch", &self.largest_batch)
            .field("most_messages", &self.most_messages)
            .finish()
    }
}

impl Session {
    /// Open a socket in the current network namespace.
    pub fn open() -> Result<Session, NftError> {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
        cap_acks(&socket).map_err(NftError::Socket)?;
        Ok(Session {
            socket,
            largest_batch: 0,
            most_messages: 0,
            buffer: vec![0u8; nftnl::nft_nlmsg_maxsize() as usize],
        })
    }

    /// Send a finalized batch and wait for the kernel's verdict on every message. After an
    /// error, acknowledgements of the failed batch may still be queued: drop the session.
    pub fn send(&mut self, batch: &FinalizedBatch) -> Result<(), NftError> {
        // The kernel only accepts a batch that arrives in one message, begin to end: nftnl
        // splits large batches into pages, so join them and send once (as `nft` does).
        let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
        if bytes.len() > self.largest_batch {
            grow_buffer(
                &self.socket,
                libc::SO_SNDBUFFORCE,
                bytes.len().saturating_mul(2),
            )
            .map_err(NftError::Socket)?;
            self.largest_batch = bytes.len();
        }
        let messages = batch.sequence_numbers().len();
        if messages > self.most_messages {
            grow_buffer(
                &self.socket,
                libc::SO_RCVBUFFORCE,
                messages
                    .saturating_mul(ACK_BUFFER_SHARE)
                    .max(DEFAULT_RCVBUF),
            )
            .map_err(NftError::Socket)?;
            self.most_messages = messages;
        }
        let portid = self.socket.portid();
        let sent = self.socket.send(&bytes).map_err(NftError::Send)?;
        if sent < bytes.len() {
            return Err(NftError::Send(std::io::Error::other(
                "netlink sent a partial batch",
            )));
        }

        let mut expected = batch.sequence_numbers();
        while !expected.is_empty() {
            let messages = self
                .socket
                .recv(&mut self.buffer)
                .map_err(NftError::Receive)?;
            for message in messages {
                let message = message.map_err(NftError::Receive)?;
                let seq = expected.next().unwrap_or(0);
                mnl::cb_run(message, seq, portid).map_err(NftError::Rejected)?;
            }
        }
        let large = bytes.len() >= TRIM_AFTER_BATCH;
        drop(bytes);
        if large {
            crate::memory::return_freed_memory();
        }
        Ok(())
    }
}

/// A batch this large (some 60,000 set elements) is a full replace on a large host. It
/// comes right after the process's largest short-lived allocations: the whole container
/// list from Docker, the plan, the batch and its joined copy. glibc keeps what they freed
/// (at 10,000 containers x 10 ports, some 35 MiB of the daemon's 93 MiB RSS); hand it back.
const TRIM_AFTER_BATCH: usize = 4 << 20;

/// Ask the kernel not to echo each request inside its acknowledgement. Without this, a
/// batch of large set-element messages (10,000 elements is about 7 messages of 64 KiB) is
/// answered with as many 64 KiB acks, overflowing the socket's receive buffer (ENOBUFS).
fn cap_acks(socket: &mnl::Socket) -> std::io::Result<()> {
    const NETLINK_CAP_ACK: libc::c_int = 10;
    // SAFETY: the socket is open; the option value is a c_int that outlives the call.
    let result = unsafe {
        mnl::mnl_sys::mnl_socket_setsockopt(
            socket.as_raw_socket(),
            NETLINK_CAP_ACK,
            &1 as *const libc::c_int as *mut libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel answers every message of a batch at once, after the commit, and each
/// acknowledgement occupies some 800-900 bytes of the receive buffer (measured: with the
/// default 208 KiB, acks were lost between 60 networks, 204 rules, and 80 networks, 264
/// rules). Room for 2 KiB each.
const ACK_BUFFER_SHARE: usize = 2048;
/// Linux's default socket buffer (`net.core.rmem_default`); never asked to shrink below it.
const DEFAULT_RCVBUF: usize = 212_992;

/// Grow a socket buffer (`SO_SNDBUFFORCE` or `SO_RCVBUFFORCE`, which need CAP_NET_ADMIN, as
/// `nft` does) to `bytes`. A netlink message larger than the send buffer is refused
/// (EMSGSIZE; the default holds roughly 5,000 set elements), and acknowledgements that
/// overflow the receive buffer are lost (ENOBUFS) although the transaction was committed.
fn grow_buffer(socket: &mnl::Socket, option: libc::c_int, bytes: usize) -> std::io::Result<()> {
    let wanted = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the fd belongs to the open socket; the option value outlives the call.
    let result = unsafe {
        let fd = mnl::mnl_sys::mnl_socket_get_fd(socket.as_raw_socket());
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            &wanted as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
