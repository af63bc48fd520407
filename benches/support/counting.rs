//! A counting wrapper around the system allocator, for the benchmarks' memory figures: the heap
//! in use now and its peak. Shared by the benches with `#[path]`. The only unsafe code in the
//! project (product code denies it: Cargo.toml [lints]); it forwards every call unchanged.
//!
//! Counting costs two atomic read-modify-writes per allocation, which a throughput figure must
//! not carry (the product runs on the plain system allocator): `ON` switches it, and a bench
//! that times code turns it off for the timing and on for its memory figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

pub struct Counting;
/// Whether allocations are counted now.
pub static ON: AtomicBool = AtomicBool::new(true);
/// Bytes allocated less bytes freed while counting (negative when counting began after an
/// allocation it then saw freed).
pub static CURRENT: AtomicIsize = AtomicIsize::new(0);
pub static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grow(by: usize) {
    if ON.load(Ordering::Relaxed) {
        let now = CURRENT.fetch_add(by as isize, Ordering::Relaxed) + by as isize;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

fn shrink(by: usize) {
    if ON.load(Ordering::Relaxed) {
        CURRENT.fetch_sub(by as isize, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to `System` unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    // Forwarded too (the default would allocate, copy and free where the system grows in place).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        shrink(layout.size());
        grow(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
