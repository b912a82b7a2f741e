//! The process's heap: giving the pages it freed back to the kernel after a burst of allocations.

/// Gives the free pages of the heap back to the kernel. Loading manifests and running a pass
/// allocate and free a lot (YAML trees, every listing's JSON, plans, the report), on several threads;
/// glibc keeps what it freed in the middle of its arenas, interleaved with the long-lived desired
/// state and ledger rows, so RSS stayed at the peak of the load and of each pass (an idle daemon
/// with 100,000 links: 255 MB; `--once` with 1,000,000 links: 300 MB more after a parallel load).
/// `malloc_trim` releases the free pages of every arena, where freeing alone only returns the top
/// of the main one.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions; it takes each arena's own lock.
    unsafe {
        libc::malloc_trim(0);
    }
}
