//! The forward pass's transformed weights, kept from one call to the next and reused while
//! the weight is unchanged.
//!
//! Winograd's weight transform writes 5.3 MB at each of AlexNet's 7x7 layers, 1-1.5 ms per
//! call on two cores: about 4 ms of a batch-32 inference pass of 40, and the same result on
//! every call of an evaluation, where the weights do not change. A cached transform is
//! served only when the weight equals the copy it was made from byte for byte, so a weight
//! changed in any way (by every training step, in place) is transformed again: in training
//! each layer pays a failed comparison (it stops at the first changed value) and a copy of
//! its weight (1.3 MB at the largest layer), about 0.1 ms.
//!
//! The cache is per thread (the forward pass looks it up on the thread that calls the op), so
//! threads never wait on each other for it and what one finds does not depend on another.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::sync::Arc;

use candle_core::WithDType;

/// Layers whose transformed weights are kept: AlexNet has five convolutions, all by Winograd.
const ENTRIES: usize = 8;

/// One layer's transform `what`, the weight (as given) it was made from, and the result.
struct Entry<T, K> {
    what: K,
    weight: Vec<T>,
    transformed: Arc<Vec<T>>,
}

/// Where a weight lives: its element type, address and length (one entry per layer, whose
/// weight stays at one address while training updates it in place).
#[derive(PartialEq, Eq)]
struct Key {
    dtype: TypeId,
    address: usize,
    len: usize,
}

thread_local! {
    /// This thread's entries, most recently stored last.
    static CACHE: RefCell<Vec<(Key, Box<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

/// `transform(weight)`, the transform described by `what` (everything it depends on besides
/// the weight), from the cache when the cached transform at this weight's address is the
/// same `what` and was made from the same weight value for value; else computed and stored.
pub(crate) fn transformed<T: WithDType, K: PartialEq + 'static>(
    what: K,
    weight: &[T],
    transform: impl FnOnce(&[T]) -> Vec<T>,
) -> Arc<Vec<T>> {
    let key = Key { dtype: TypeId::of::<T>(), address: weight.as_ptr() as usize, len: weight.len() };
    CACHE.with_borrow_mut(|cache| {
        let found = cache.iter().position(|(k, _)| *k == key);
        if let Some(entry) = found.and_then(|i| cache[i].1.downcast_ref::<Entry<T, K>>()) {
            if entry.what == what && bytes(&entry.weight) == bytes(weight) {
                return entry.transformed.clone();
            }
        }
        // The stale entry goes before the transform runs, so that the allocator can hand its
        // memory to the new transform (measured: computed into fresh memory with the stale one
        // still held, a miss cost 0.4-0.6 ms more at the 7x7 layers than no cache at all); its
        // weight buffer takes the new copy.
        let stale = match found {
            Some(i) => cache.remove(i).1.downcast::<Entry<T, K>>().ok(),
            None if cache.len() == ENTRIES => {
                cache.remove(0);
                None
            }
            None => None,
        };
        let mut copy = stale.map(|entry| entry.weight).unwrap_or_default();
        copy.clear();
        copy.extend_from_slice(weight);
        let transformed = Arc::new(transform(weight));
        cache.push((key, Box::new(Entry { what, weight: copy, transformed: transformed.clone() })));
        transformed
    })
}

/// The bytes of `values`, so that equality is bitwise (a NaN equals itself, 0.0 differs from
/// -0.0).
fn bytes<T: WithDType>(values: &[T]) -> &[u8] {
    // SAFETY: Candle's element types are plain numbers without padding bytes; the slice covers
    // exactly the memory of `values` and lives as long as it.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_transform_is_reused_only_for_the_same_weight_value_for_value() {
        let calls = AtomicUsize::new(0);
        let double = |w: &[f32]| {
            calls.fetch_add(1, Ordering::SeqCst);
            w.iter().map(|v| 2.0 * v).collect::<Vec<f32>>()
        };
        let mut weight = vec![1.0f32, -0.0, f32::NAN, 3.0];
        let first = transformed("double", &weight, double);
        let again = transformed("double", &weight, double);
        assert!(Arc::ptr_eq(&first, &again), "an unchanged weight must reuse its transform");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Changed in place, as an optimizer step changes it: transformed again.
        weight[3] = 3.5;
        assert_eq!(transformed("double", &weight, double)[3], 7.0);
        // A sign of zero is a change too.
        weight[1] = 0.0;
        transformed("double", &weight, double);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Another transform of the same weight replaces the entry, and back.
        let other = transformed("triple", &weight, |w| w.iter().map(|v| 3.0 * v).collect());
        assert_eq!(other[0], 3.0);
        assert_eq!(transformed("double", &weight, double)[0], 2.0);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn the_cache_keeps_a_bounded_number_of_layers() {
        let weights: Vec<Vec<f64>> = (0..2 * ENTRIES).map(|i| vec![i as f64; 4]).collect();
        for w in &weights {
            transformed("copy", w, |w| w.to_vec());
        }
        assert_eq!(CACHE.with_borrow(Vec::len), ENTRIES);
    }
}
