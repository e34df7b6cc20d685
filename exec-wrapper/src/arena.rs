//! The wrapper's allocator: a bump arena in `.bss`.
//!
//! The wrapper lives for one request and allocates a few kilobytes. musl's
//! allocator, which the static build links, takes them from the kernel a
//! page at a time (`brk`, `mmap`) and hands them back (`munmap`): about ten
//! system calls of the twenty-five the wrapper makes before the command's
//! execve. Here memory comes from a zeroed static block that costs nothing
//! until touched and is never handed back; a request that does not fit
//! goes to the system allocator, which also frees it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The alignment every allocation gets at least, as from `malloc`: code
/// written against C's allocator relies on it (nix, for one, lays a
/// `cmsghdr` over a byte buffer it allocated).
const MIN_ALIGN: usize = 16;

/// Far more than one request needs (its arguments, environment and one
/// frame); what an escalated wrapper allocates per forwarded signal fits
/// thousands of times over.
const ARENA_BYTES: usize = 256 * 1024;

#[repr(C, align(4096))]
struct Block(UnsafeCell<[u8; ARENA_BYTES]>);

/// A bump allocator over a static block, with the system allocator behind
/// it. Use as the `#[global_allocator]` of a short-lived process.
pub struct Arena {
    block: Block,
    /// Bytes of the block handed out so far.
    used: AtomicUsize,
}

// SAFETY: the block is only reached through `alloc`, which gives every
// caller a disjoint range (claimed with an atomic compare-and-swap).
unsafe impl Sync for Arena {}

impl Arena {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Arena {
        Arena {
            block: Block(UnsafeCell::new([0; ARENA_BYTES])),
            used: AtomicUsize::new(0),
        }
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        let start = self.block.0.get() as usize;
        (start..start + ARENA_BYTES).contains(&(ptr as usize))
    }
}

// SAFETY: `alloc` returns either a range of the block no live allocation
// overlaps, aligned as asked, or what the system allocator returns;
// `realloc` moves the block's end only for its last allocation; `dealloc`
// passes the system's memory back to it and keeps the block's.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.block.0.get().cast::<u8>();
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let address = base as usize + used;
            let align = layout.align().max(MIN_ALIGN);
            let start = used + (address.next_multiple_of(align) - address);
            let end = match start.checked_add(layout.size()) {
                Some(end) if end <= ARENA_BYTES => end,
                // SAFETY: the caller's layout, passed on.
                _ => return unsafe { System.alloc(layout) },
            };
            match self
                .used
                .compare_exchange_weak(used, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                // SAFETY: `start..end` lies within the block and was just
                // claimed by this call alone.
                Ok(_) => return unsafe { base.add(start) },
                Err(now) => used = now,
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.owns(ptr) {
            // The block's last allocation grows or shrinks where it is (a
            // growing Vec would otherwise leave a copy behind each time).
            let offset = ptr as usize - self.block.0.get() as usize;
            if let Some(new_end) = offset.checked_add(new_size) {
                if new_end <= ARENA_BYTES
                    && self
                        .used
                        .compare_exchange(
                            offset + layout.size(),
                            new_end,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    return ptr;
                }
            }
            if new_size <= layout.size() {
                return ptr;
            }
        }
        // SAFETY: the caller's layout with the new size, which the caller
        // guarantees is valid for it.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size (the caller's contract); the old block
        // holds `layout.size()` initialized bytes and is freed once copied.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.owns(ptr) {
            // SAFETY: not ours, so the system allocator returned it, with
            // this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_disjoint_and_fall_back_when_full() {
        static ARENA: Arena = Arena::new();
        let mut taken: Vec<(usize, usize)> = Vec::new();
        // (size, align): odd sizes between aligned ones, and a page.
        let layouts = [
            (1, 1),
            (24, 8),
            (3, 1),
            (16, 16),
            (4096, 4096),
            (7, 2),
            (64, 64),
        ];
        for (size, align) in layouts.iter().cycle().take(70) {
            let layout = Layout::from_size_align(*size, *align).unwrap();
            // SAFETY: a non-zero size.
            let ptr = unsafe { ARENA.alloc(layout) };
            assert!(!ptr.is_null());
            // At least malloc's alignment, whatever was asked.
            assert_eq!(ptr as usize % align.max(&16), 0, "{layout:?}");
            assert!(ARENA.owns(ptr));
            let range = (ptr as usize, ptr as usize + size);
            assert!(
                taken.iter().all(|(s, e)| range.1 <= *s || range.0 >= *e),
                "{range:?} overlaps"
            );
            taken.push(range);
        }
        // More than is left: the system allocator's, and freed there.
        let big = Layout::from_size_align(ARENA_BYTES, 8).unwrap();
        // SAFETY: a non-zero size; freed with the same layout.
        unsafe {
            let ptr = ARENA.alloc(big);
            assert!(!ptr.is_null() && !ARENA.owns(ptr));
            ptr.write_bytes(1, ARENA_BYTES);
            ARENA.dealloc(ptr, big);
        }
        // What fits still comes from the block.
        let small = Layout::from_size_align(8, 8).unwrap();
        // SAFETY: a non-zero size.
        assert!(ARENA.owns(unsafe { ARENA.alloc(small) }));
        // An alignment above the block's own.
        let paged = Layout::from_size_align(16, 8192).unwrap();
        // SAFETY: a non-zero size.
        assert_eq!(unsafe { ARENA.alloc(paged) } as usize % 8192, 0);
    }

    #[test]
    fn the_last_allocation_grows_in_place_and_others_move_with_their_bytes() {
        static ARENA: Arena = Arena::new();
        let layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: non-zero sizes, each block used within its layout and
        // passed back with it.
        unsafe {
            let first = ARENA.alloc(layout);
            first.write_bytes(7, 16);
            let grown = ARENA.realloc(first, layout, 64);
            assert_eq!(grown, first, "the last allocation grows in place");
            let second = ARENA.alloc(layout);
            let moved = ARENA.realloc(grown, Layout::from_size_align(64, 8).unwrap(), 128);
            assert_ne!(moved, grown);
            assert!(
                moved as usize >= second as usize + 16,
                "no overlap with the second"
            );
            assert_eq!(std::slice::from_raw_parts(moved, 16), [7; 16]);
            // Up to the block's very end, then past it into the system's.
            let used = ARENA.used.load(Ordering::Relaxed);
            let rest = Layout::from_size_align(ARENA_BYTES - used, 1).unwrap();
            let last = ARENA.alloc(rest);
            assert!(ARENA.owns(last));
            let out = ARENA.realloc(last, rest, ARENA_BYTES);
            assert!(!ARENA.owns(out));
            ARENA.dealloc(out, Layout::from_size_align(ARENA_BYTES, 1).unwrap());
        }
    }
}
