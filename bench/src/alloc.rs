//! A counting global allocator: the system allocator plus two counters, live bytes and the peak
//! of live bytes. The counts are of requested sizes (`Layout::size`), not of what malloc really
//! reserves (its headers and size-class rounding are not seen), so they measure the data
//! structures rather than the allocator.
//!
//! Optionally (`set_huge_pages(true)`, the `--huge-pages` experiment) every allocation of 2 MiB
//! or more is advised `MADV_HUGEPAGE`, so that the big tables get transparent huge pages when the
//! system's THP mode is `madvise` (the default on many distributions, and on the reference
//! machine): it shows how much of the core's time is TLB misses.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting live bytes and their peak.
pub(crate) struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);
const HUGE_PAGE: usize = 2 << 20;

/// Advises `MADV_HUGEPAGE` for allocations of `HUGE_PAGE` bytes or more from now on.
pub(crate) fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, Relaxed);
}

/// Advises the whole 4 KiB pages inside `[pointer, pointer + size)` to use huge pages.
#[inline]
fn advise(pointer: *mut u8, size: usize) {
    if size < HUGE_PAGE || !HUGE_PAGES.load(Relaxed) {
        return;
    }
    const PAGE: usize = 4096;
    let start = (pointer as usize).next_multiple_of(PAGE);
    let end = (pointer as usize + size) / PAGE * PAGE;
    if end > start {
        // SAFETY: the range lies inside an allocation we own; MADV_HUGEPAGE only changes how the
        // kernel backs it, never its contents. A failure (THP disabled) is harmless.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

#[inline]
fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(live, Relaxed);
}

#[inline]
fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters have no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
            advise(pointer, layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            grew(layout.size());
            advise(pointer, layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(pointer, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            advise(moved, new_size);
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        moved
    }
}

/// Bytes currently allocated through the global allocator.
pub(crate) fn live_bytes() -> usize {
    LIVE.load(Relaxed)
}

/// The highest `live_bytes` since the last `reset_peak`.
pub(crate) fn peak_bytes() -> usize {
    PEAK.load(Relaxed)
}

/// Starts a new peak window at the current live bytes.
pub(crate) fn reset_peak() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}
