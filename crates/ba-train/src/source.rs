//! Where a [`crate::Learner`] takes its batches from.

use crate::trainer::BatchResult;

/// A data set seen in epochs of a fixed number of batches, any epoch from any batch on (so
/// that a run stopped mid-epoch continues with the very batches it would have seen).
pub trait EpochSource {
    /// What fails when a batch cannot be made.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Batches in every epoch.
    fn batches_per_epoch(&self) -> usize;

    /// The batches of epoch `epoch` (from 0), as `(images, targets)`, after its first `skip`.
    fn batches(&self, epoch: usize, skip: usize) -> impl Iterator<Item = BatchResult<Self::Error>> + '_;
}

/// ba-data's loader: shuffled, augmented and mixed per epoch by its seeds.
#[cfg(feature = "ba-data")]
impl EpochSource for ba_data::Loader {
    type Error = ba_data::DataError;

    fn batches_per_epoch(&self) -> usize {
        ba_data::Loader::batches_per_epoch(self)
    }

    fn batches(&self, epoch: usize, skip: usize) -> impl Iterator<Item = BatchResult<Self::Error>> + '_ {
        self.epoch_from(epoch, skip).map(|batch| batch.map(|b| (b.images, b.targets)))
    }
}
