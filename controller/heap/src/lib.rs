//! Gives the heap memory handoffd has freed back to the system. This crate holds the one
//! `unsafe` call the controller needs, so that `handoff` itself can `#![forbid(unsafe_code)]`.
//!
//! glibc's `free()` only returns memory at the top of each arena; the rest stays in the
//! process. After a flood of AMI events that handoffd held and then dropped (up to its 16 MiB
//! bounds, see README "Resource bounds"), RSS stayed at its peak (8 → 27 MB, measured by
//! `controller/tests/ami_flood.rs`). `malloc_trim(0)` also releases the free pages inside the
//! arenas. It walks every arena (about a millisecond here), so handoffd calls it when a PBX
//! link ends, not per event.

/// Releases the free pages of every malloc arena to the system; returns whether any was
/// released. A no-op returning `false` where the C library is not glibc.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a plain integer, touches only the allocator's own state
        // under its own locks, and is safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_freed_in_the_middle_of_the_heap_is_released() {
        // Many small blocks, one in 64 kept: the freed ones cannot be trimmed from the top.
        let mut blocks: Vec<Vec<u8>> = (0..200_000).map(|i| vec![i as u8; 200]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
        drop(std::hint::black_box(blocks));
        assert!(super::release_free_memory(), "nothing was released");
        assert_eq!(std::hint::black_box(kept).len(), 200_000_usize.div_ceil(64));
    }
}
