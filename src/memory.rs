//! Memory as the kernel sees it (RSS), beyond what the data needs: what the daemon (and an
//! apply of a large table) does after its large short-lived allocations.
//!
//! At 10,000 containers the daemon's live data is some 27 MiB, but its large short-lived
//! allocations (the container list from Docker, the full plan, the apply's batch, the whole
//! table read back by the periodic verify, the change monitor's reading of our own replace)
//! leave glibc holding tens of MiB it freed. Both functions here are glibc-only and do
//! nothing elsewhere.

/// Return the heap's free pages to the kernel (`malloc_trim`, over every arena; a few ms at
/// most). For after a large short-lived allocation, never on the event path.
pub fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One malloc arena for every thread. The daemon's second thread, the change monitor, reads
/// our own full replace (one message per element) in bursts; an arena of its own keeps what
/// those freed (some 2 MiB at 10,000 containers) out of reach of the main thread's use. The
/// threads seldom allocate at once, so sharing costs no waiting that matters.
pub fn use_one_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
