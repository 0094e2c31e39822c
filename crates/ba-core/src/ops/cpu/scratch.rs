//! Scratch buffers kept for reuse and handed out again without clearing.
//!
//! A convolution's group scratch (Winograd's transformed input and output, im2col's columns,
//! the gradient of block images) is megabytes, and every value of it is written before it is
//! read. Allocated with `vec![0; n]` on every call (once per thread), its clearing takes 5% of
//! a batch-32 inference profile (`memset`, docs/benchmarks.md). Here a dropped buffer goes
//! back to a short list of free buffers, and the next request of no more bytes takes it as it
//! is. The list is shared by all threads: a buffer taken on a worker thread is often dropped
//! on another (a parallel fold's running sums are merged and dropped by the caller), and
//! lists per thread emptied the workers' and filled the caller's.
//!
//! Every buffer's values start on a cache line ([`CACHE_LINE`]).
//!
//! In this crate's unit tests every buffer handed out is filled with NaN first, so that a
//! read before a write fails the ops' tests instead of passing on zeros.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use candle_core::WithDType;

/// Buffers of 8-byte words (the widest alignment of Candle's element types) free for reuse.
struct FreeList(Vec<Vec<u64>>);

impl FreeList {
    /// Removes and returns the smallest buffer of at least `words` words, if any.
    fn take(&mut self, words: usize) -> Option<Vec<u64>> {
        let buffers = &mut self.0;
        let best = (0..buffers.len()).filter(|&i| buffers[i].len() >= words).min_by_key(|&i| buffers[i].len());
        best.map(|i| buffers.swap_remove(i))
    }

    /// Adds `buffer`; beyond `kept_at_most` buffers, removes and returns the smallest.
    fn give(&mut self, buffer: Vec<u64>, kept_at_most: usize) -> Option<Vec<u64>> {
        let buffers = &mut self.0;
        buffers.push(buffer);
        if buffers.len() <= kept_at_most {
            return None;
        }
        let smallest = (0..buffers.len()).min_by_key(|&i| buffers[i].len())?;
        Some(buffers.swap_remove(smallest))
    }
}

/// Bytes of a cache line, where every buffer's values start: a vector of 16 f32 at any
/// multiple of 16 values from the start (a whole block of channels) is then one line, not two.
/// (glibc's `malloc` aligns to 16 bytes only.) The Winograd transforms move such blocks
/// between their scratch buffers; copying a tile's 36 blocks took 310 ns misaligned against
/// 130 aligned (a throwaway benchmark of the input transform's loads and stores at conv2's
/// shape), and every convolution layer of AlexNet ran 3-20% faster aligned (forward and
/// backward, batch 32 and 128, alternating in one process).
const CACHE_LINE: usize = 64;

/// Words a buffer holds beyond its values, so that they can start on a cache line.
const ALIGN_WORDS: usize = CACHE_LINE / size_of::<u64>() - 1;

/// The list [`scratch`] uses.
static FREE: Mutex<FreeList> = Mutex::new(FreeList(Vec::new()));

/// Runs `f` on `list`. A panic elsewhere while it was held left it consistent: each use is
/// one scan, push or removal.
fn with_list<R>(list: &Mutex<FreeList>, f: impl FnOnce(&mut FreeList) -> R) -> R {
    f(&mut list.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// Free buffers kept: two per thread of rayon's pool (a forward group's and a backward
/// group's) and two more.
fn kept_at_most() -> usize {
    2 * rayon::current_num_threads() + 2
}

/// `len` values of `T` whose contents are unspecified (left from an earlier use, or zero);
/// the storage goes back to the free list when dropped.
pub(crate) struct Scratch<T> {
    words: Vec<u64>,
    /// Words skipped at the start of `words` so that the values start on a cache line.
    offset: usize,
    len: usize,
    home: &'static Mutex<FreeList>,
    values: PhantomData<T>,
}

/// A scratch buffer of `len` values: the smallest free buffer that is large enough, or a new
/// one.
pub(crate) fn scratch<T: WithDType>(len: usize) -> Scratch<T> {
    scratch_from(&FREE, len)
}

/// [`scratch`] from the free list `home`.
fn scratch_from<T: WithDType>(home: &'static Mutex<FreeList>, len: usize) -> Scratch<T> {
    const { assert!(align_of::<T>() <= align_of::<u64>()) };
    let words_needed = (len * size_of::<T>()).div_ceil(size_of::<u64>()) + ALIGN_WORDS;
    let words = with_list(home, |free| free.take(words_needed)).unwrap_or_else(|| vec![0; words_needed]);
    let offset = (CACHE_LINE - words.as_ptr().addr() % CACHE_LINE) % CACHE_LINE / size_of::<u64>();
    let buffer = Scratch { words, offset, len, home, values: PhantomData };
    #[cfg(test)]
    let buffer = {
        let mut buffer = buffer;
        buffer.fill(T::from_f64(f64::NAN));
        buffer
    };
    buffer
}

impl<T> Deref for Scratch<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: past its first `offset` (at most `ALIGN_WORDS`) words, `words` holds at least
        // `len * size_of::<T>()` bytes, aligned for `T` (both ensured in `scratch_from`, the
        // only constructor, which also bounds `T` by Candle's element types), initialised, and
        // every bit pattern is a value of those types (integers and IEEE floats).
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().add(self.offset).cast(), self.len) }
    }
}

impl<T> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; the slice borrows `self` mutably.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().add(self.offset).cast(), self.len) }
    }
}

impl<T> Drop for Scratch<T> {
    fn drop(&mut self) {
        let words = std::mem::take(&mut self.words);
        let kept_at_most = kept_at_most();
        // Freed outside the lock.
        let dropped = with_list(self.home, |free| free.give(words, kept_at_most));
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(list: &FreeList) -> Vec<usize> {
        let mut sizes: Vec<usize> = list.0.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        sizes
    }

    #[test]
    fn the_smallest_buffer_that_fits_is_taken() {
        let mut list = FreeList([50, 10, 30].map(|n| vec![0; n]).into());
        assert_eq!(list.take(25).map(|b| b.len()), Some(30));
        assert_eq!(list.take(51), None);
        assert_eq!(list.take(10).map(|b| b.len()), Some(10));
        assert_eq!(sizes(&list), [50]);
    }

    #[test]
    fn beyond_the_bound_the_smallest_buffer_is_let_go() {
        let mut list = FreeList(Vec::new());
        for n in [50, 10, 30] {
            assert_eq!(list.give(vec![0; n], 3), None);
        }
        assert_eq!(list.give(vec![0; 20], 3).map(|b| b.len()), Some(10));
        assert_eq!(list.give(vec![0; 5], 3).map(|b| b.len()), Some(5));
        assert_eq!(sizes(&list), [20, 30, 50]);
    }

    #[test]
    fn a_dropped_buffer_is_handed_out_again_to_a_request_it_fits() {
        // A list of this test's own: the ops of the tests running beside it use the shared one.
        let home: &'static Mutex<FreeList> = Box::leak(Box::new(Mutex::new(FreeList(Vec::new()))));
        let first = scratch_from::<f32>(home, 1000);
        let address = first.as_ptr() as usize;
        drop(first);
        // 500 words of values and 7 to align them.
        assert_eq!(with_list(home, |list| sizes(list)), [507]);
        // A smaller request of another type takes the same storage; a larger one cannot.
        let second = scratch_from::<f64>(home, 400);
        assert_eq!((second.as_ptr() as usize, second.len()), (address, 400));
        let larger = scratch_from::<f32>(home, 1001);
        assert_ne!(larger.as_ptr() as usize, address);
        drop((second, larger));
        assert_eq!(with_list(home, |list| sizes(list)), [507, 508]);
    }

    #[test]
    fn every_buffer_starts_on_a_cache_line() {
        // Fresh allocations of these sizes start 16 bytes past a line as often as not.
        let home: &'static Mutex<FreeList> = Box::leak(Box::new(Mutex::new(FreeList(Vec::new()))));
        let buffers: Vec<Scratch<f32>> = (1..40).map(|n| scratch_from::<f32>(home, n * 37)).collect();
        for buffer in &buffers {
            assert_eq!(buffer.as_ptr().addr() % CACHE_LINE, 0, "a buffer of {} values", buffer.len());
        }
        drop(buffers);
        // Taken again from the list, a buffer of another type is aligned as well.
        let again = scratch_from::<f64>(home, 100);
        assert_eq!(again.as_ptr().addr() % CACHE_LINE, 0);
    }

    #[test]
    fn in_unit_tests_every_value_handed_out_is_nan() {
        let buffer = scratch::<f64>(37);
        assert_eq!(buffer.len(), 37);
        assert!(buffer.iter().all(|v| v.is_nan()));
    }
}
