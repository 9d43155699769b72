//! The process's allocator: jemalloc for everything below `LARGE_BYTES_MIN`, the system's
//! malloc from there up.
//!
//! jemalloc, because under the Admin API a request allocates hundreds of small objects on one
//! thread and frees many on another, and the core thread's heap grows with the payments domain:
//! glibc spent 17% of the tokio workers' samples in malloc and free and extended the core's
//! arena a page at a time (`docs/benchmarks.md`, issue 8).
//!
//! The system's malloc for large blocks, because the core relies on what glibc does with them:
//! it maps each one fresh, so a zeroed table is backed only where it is written (the id index
//! writes a growing table's pages a few per batch, `tally_ledger::id_table`), and it grows a
//! mapped block with `mremap`, without copying, where jemalloc copies whatever it cannot extend
//! in place (a vector of a domain's transfers doubling past 100 MB would stop the core for tens
//! of ms). Large blocks are few, so their allocator's speed does not matter.

use std::alloc::{GlobalAlloc, Layout, System};

use tikv_jemallocator::Jemalloc;

/// Blocks of at least this many bytes come from the system's malloc.
pub const LARGE_BYTES_MIN: usize = 1 << 20;

/// Routes each block by its size: the size `dealloc` and `realloc` are given is the one the
/// block was allocated (or last reallocated) with, so a block is always freed by the allocator
/// that made it.
pub struct SplitAllocator;

fn is_large(size: usize) -> bool {
    size >= LARGE_BYTES_MIN
}

// SAFETY: every method forwards to an allocator that upholds `GlobalAlloc`'s contract, chosen by
// the block's size, which is the same for a block's allocation and its release (see
// `SplitAllocator`); a `realloc` that crosses `LARGE_BYTES_MIN` moves the block between the two
// with a fresh allocation, a copy of the bytes both sizes hold, and a release.
unsafe impl GlobalAlloc for SplitAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe {
            if is_large(layout.size()) {
                System.alloc(layout)
            } else {
                Jemalloc.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe {
            if is_large(layout.size()) {
                System.alloc_zeroed(layout)
            } else {
                Jemalloc.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated with `layout` by this allocator, so by the one its size
        // routes to.
        unsafe {
            if is_large(layout.size()) {
                System.dealloc(ptr, layout);
            } else {
                Jemalloc.dealloc(ptr, layout);
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (is_large(layout.size()), is_large(new_size)) {
            // SAFETY: the block is the system's, and stays with it.
            (true, true) => unsafe { System.realloc(ptr, layout, new_size) },
            // SAFETY: the block is jemalloc's, and stays with it.
            (false, false) => unsafe { Jemalloc.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: `realloc`'s contract makes `new_size` with the old alignment a valid
                // layout.
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                // SAFETY: a non-zero size (the block crosses `LARGE_BYTES_MIN`, so one of the
                // two sizes is at least that and the other is non-zero by `realloc`'s contract).
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks are valid for the bytes both sizes hold, and distinct.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `size` bytes filled with a pattern, grows or shrinks the block through every
    /// size of `sizes`, and checks that the bytes kept each time survived.
    fn walk(sizes: &[usize]) {
        let allocator = SplitAllocator;
        let align = 16;
        let pattern = |i: usize| (i % 251) as u8;
        let mut size = sizes[0];
        let layout = Layout::from_size_align(size, align).expect("layout");
        // SAFETY: a non-zero layout; every pointer used below is the live block, of `size`
        // bytes, released once at the end with its current layout.
        unsafe {
            let mut ptr = allocator.alloc(layout);
            assert!(!ptr.is_null());
            for i in 0..size {
                *ptr.add(i) = pattern(i);
            }
            for &new_size in &sizes[1..] {
                let layout = Layout::from_size_align(size, align).expect("layout");
                ptr = allocator.realloc(ptr, layout, new_size);
                assert!(!ptr.is_null());
                assert_eq!(ptr as usize % align, 0);
                let kept = size.min(new_size);
                for i in (0..kept).step_by(4093).chain(kept.checked_sub(1)) {
                    assert_eq!(
                        *ptr.add(i),
                        pattern(i),
                        "byte {i} after {size} -> {new_size}"
                    );
                }
                for i in kept..new_size {
                    *ptr.add(i) = pattern(i);
                }
                size = new_size;
            }
            allocator.dealloc(ptr, Layout::from_size_align(size, align).expect("layout"));
        }
    }

    #[test]
    fn blocks_keep_their_bytes_across_the_threshold() {
        let large = LARGE_BYTES_MIN;
        walk(&[
            64,
            4096,
            large - 1,
            large,
            3 * large,
            large + 1,
            100,
            large * 2,
            8,
        ]);
        walk(&[large, large - 8, large * 4, 1]);
    }

    #[test]
    fn zeroed_blocks_are_zero_on_both_sides() {
        let allocator = SplitAllocator;
        for size in [
            24,
            LARGE_BYTES_MIN - 1,
            LARGE_BYTES_MIN,
            5 * LARGE_BYTES_MIN,
        ] {
            let layout = Layout::from_size_align(size, 8).expect("layout");
            // SAFETY: a non-zero layout; the block is read within its size and released once.
            unsafe {
                let ptr = allocator.alloc_zeroed(layout);
                assert!(!ptr.is_null());
                assert!((0..size).step_by(511).all(|i| *ptr.add(i) == 0));
                assert_eq!(*ptr.add(size - 1), 0);
                allocator.dealloc(ptr, layout);
            }
        }
    }
}
