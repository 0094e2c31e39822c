//! CIFAR-10 held in memory as u8 images and labels.

/// Number of classes.
pub const NUM_CLASSES: usize = 10;
/// Side of a CIFAR-10 image.
pub const IMAGE_SIDE: usize = 32;
/// Bytes of one image: three 32x32 planes, red, green, blue.
pub const IMAGE_BYTES: usize = 3 * IMAGE_SIDE * IMAGE_SIDE;
/// Class names in label order.
pub const CLASS_NAMES: [&str; NUM_CLASSES] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The training and test images of CIFAR-10 (or of a sample of it).
#[derive(Debug, Clone)]
pub struct Cifar10 {
    /// The training split, in file order.
    pub train: Split,
    /// The test split, in file order.
    pub test: Split,
    /// Class names in label order.
    pub classes: Vec<String>,
}

/// Images (N, 3, 32, 32) as u8 planes and their labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    images: Vec<u8>,
    labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label of image `i`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// All labels in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Image `i` as 3,072 bytes: the red, green and blue 32x32 planes.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Appends one image (`IMAGE_BYTES` bytes) with its label.
    pub fn push(&mut self, label: u8, image: &[u8]) {
        assert_eq!(image.len(), IMAGE_BYTES, "a CIFAR-10 image has {IMAGE_BYTES} bytes");
        self.labels.push(label);
        self.images.extend_from_slice(image);
    }

    /// The first `per_class` images of each class, in file order: their indices.
    pub fn first_per_class(&self, per_class: usize) -> Vec<usize> {
        let mut taken = [0usize; NUM_CLASSES];
        (0..self.len())
            .filter(|&i| {
                let c = &mut taken[self.labels[i] as usize];
                *c += 1;
                *c <= per_class
            })
            .collect()
    }

    /// Images per class.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}
