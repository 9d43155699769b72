//! Multi-batch bodies (spec §5.2): several independent batches of one operation in one body.
//!
//! ```text
//! [ batch 0 elements ][ batch 1 elements ] ... [ batch N-1 elements ][ trailer ]
//! trailer = [ 0xFFFF padding ... ][ count(N-1) ] ... [ count(1) ][ count(0) ][ N ]
//! ```
//!
//! Every trailer item is a u16 LE. The trailer is stored backwards from the end of the body:
//! the last u16 is the batch count `N` (the postamble), before it the element count of batch 0,
//! then batch 1, and so on. Its size is `2N + 2` rounded up to a multiple of the element size
//! `E`, the unused leading bytes being `0xFF`, so the body length is always a multiple of `E`.
//! `1 ≤ N ≤ 65,534` (0xFFFF is the padding value); a batch may be empty. Requests use the event
//! size as `E`, replies the result size, and a reply has as many batches as its request.

use crate::{BATCH_COUNT_MAX, MESSAGE_BODY_SIZE_MAX};

/// Size of one trailer item and of the postamble.
const ITEM_SIZE: usize = 2;

/// The item value that fills the unused front of a trailer.
const PADDING_BYTE: u8 = 0xFF;

/// Why a body is not a multi-batch encoding. TigerBeetle evicts the client with
/// `invalid_request_body` for any of these (spec §5.2, §5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultiBatchError {
    /// The body is shorter than the 2-byte postamble.
    #[error("body of {body_size} bytes has no room for the batch count")]
    BodyTooSmall {
        /// The body's length in bytes.
        body_size: usize,
    },
    /// The postamble says there are no batches; a multi-batch has at least one.
    #[error("batch count is 0")]
    BatchCountZero,
    /// The postamble is `0xFFFF`, which is reserved for padding.
    #[error("batch count is 0xFFFF, the padding value")]
    BatchCountPadding,
    /// The trailer the batch count implies is longer than the body.
    #[error("trailer of {trailer_size} bytes does not fit a body of {body_size} bytes")]
    TrailerTooLarge {
        /// The implied trailer size in bytes, padding included.
        trailer_size: usize,
        /// The body's length in bytes.
        body_size: usize,
    },
    /// A byte of the trailer's leading padding is not `0xFF`.
    #[error("trailer padding byte at body offset {offset} is {byte:#04x}, not 0xff")]
    Padding {
        /// Offset of the byte from the start of the body.
        offset: usize,
        /// The byte found there.
        byte: u8,
    },
    /// The element counts do not account for exactly the bytes before the trailer.
    #[error("payload of {payload_size} bytes, but the counts add up to {counted_size} bytes")]
    PayloadSize {
        /// Bytes before the trailer.
        payload_size: usize,
        /// Sum of the counts times the element size, in bytes.
        counted_size: u64,
    },
}

/// Why a batch cannot be added to a [`MultiBatchEncoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultiBatchEncodeError {
    /// The encoder already holds `BATCH_COUNT_MAX` batches.
    #[error("already {BATCH_COUNT_MAX} batches")]
    BatchCount,
    /// The batch's length is not a multiple of the element size.
    #[error("batch of {size} bytes is not a whole number of {element_size}-byte elements")]
    ElementSize {
        /// The batch's length in bytes.
        size: usize,
        /// The encoder's element size in bytes.
        element_size: usize,
    },
    /// The batch has more than 65,535 elements, the most a trailer item can count.
    #[error("batch of {count} elements does not fit a u16 count")]
    ElementCount {
        /// Elements in the batch.
        count: usize,
    },
    /// With this batch the body would exceed `MESSAGE_BODY_SIZE_MAX`; the encoder is unchanged.
    #[error("body would be {body_size} bytes, more than a message can carry")]
    BodySize {
        /// The body size the batch would have led to, trailer included.
        body_size: usize,
    },
}

/// Bytes taken by the trailer of `batch_count` batches of `element_size`-byte elements.
pub fn trailer_size(batch_count: u16, element_size: usize) -> usize {
    assert!(element_size > 0);
    let unpadded = ITEM_SIZE * (batch_count as usize + 1);
    unpadded.div_ceil(element_size) * element_size
}

/// A decoded multi-batch body; borrows the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiBatch<'a> {
    body: &'a [u8],
    element_size: usize,
    batch_count: u16,
    payload_size: usize,
}

/// Decodes and checks a multi-batch body; every malformed case is a [`MultiBatchError`].
pub fn decode_multi_batch(
    body: &[u8],
    element_size: usize,
) -> Result<MultiBatch<'_>, MultiBatchError> {
    decode_multi_batch_aligned(body, element_size, element_size)
}

/// Decodes a multi-batch body whose trailer is padded to a multiple of `trailer_alignment`
/// rather than of the element size (a body written by [`MultiBatch::repad`]); the same checks
/// otherwise. With `trailer_alignment == element_size` this is [`decode_multi_batch`].
pub fn decode_multi_batch_aligned(
    body: &[u8],
    element_size: usize,
    trailer_alignment: usize,
) -> Result<MultiBatch<'_>, MultiBatchError> {
    assert!(element_size > 0);
    assert!(trailer_alignment > 0);
    let body_size = body.len();
    if body_size < ITEM_SIZE {
        return Err(MultiBatchError::BodyTooSmall { body_size });
    }
    let batch_count = item_at(body, body_size - ITEM_SIZE);
    if batch_count == 0 {
        return Err(MultiBatchError::BatchCountZero);
    }
    if batch_count > BATCH_COUNT_MAX {
        return Err(MultiBatchError::BatchCountPadding);
    }
    let trailer_size = trailer_size(batch_count, trailer_alignment);
    if trailer_size > body_size {
        return Err(MultiBatchError::TrailerTooLarge {
            trailer_size,
            body_size,
        });
    }
    let payload_size = body_size - trailer_size;
    let items_start = body_size - ITEM_SIZE * (batch_count as usize + 1);
    if let Some(offset) = (payload_size..items_start).find(|offset| body[*offset] != PADDING_BYTE) {
        return Err(MultiBatchError::Padding {
            offset,
            byte: body[offset],
        });
    }
    let multi_batch = MultiBatch {
        body,
        element_size,
        batch_count,
        payload_size,
    };
    // u64: at most 65,534 counts of at most 65,535 elements of a few hundred bytes.
    let counted_size: u64 = (0..batch_count)
        .map(|batch| multi_batch.count(batch) as u64 * element_size as u64)
        .sum();
    if counted_size != payload_size as u64 {
        return Err(MultiBatchError::PayloadSize {
            payload_size,
            counted_size,
        });
    }
    Ok(multi_batch)
}

fn item_at(body: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([body[offset], body[offset + 1]])
}

impl<'a> MultiBatch<'a> {
    /// Number of batches, `1..=BATCH_COUNT_MAX`.
    pub fn batch_count(&self) -> u16 {
        self.batch_count
    }

    /// Size of one element in bytes, as given to [`decode_multi_batch`].
    pub fn element_size(&self) -> usize {
        self.element_size
    }

    /// Number of elements in batch `batch`.
    pub fn count(&self, batch: u16) -> u16 {
        assert!(batch < self.batch_count);
        // count(0) sits just before the postamble, count(1) before it, and so on.
        let offset = self.body.len() - ITEM_SIZE * (batch as usize + 2);
        item_at(self.body, offset)
    }

    /// All batches' elements, concatenated in batch order.
    pub fn payload(&self) -> &'a [u8] {
        &self.body[..self.payload_size]
    }

    /// Appends the same batches to `out` with the trailer padded to a multiple of
    /// `trailer_alignment` (at least the 2-byte items) instead of the element size: a 1-event
    /// body of 128-byte events takes 144 bytes instead of 256. `decode_multi_batch_aligned`
    /// with the same alignment reads it back to the same payload and counts.
    pub fn repad(&self, trailer_alignment: usize, out: &mut Vec<u8>) {
        let start = out.len();
        let items_size = ITEM_SIZE * (self.batch_count as usize + 1);
        let trailer_size = trailer_size(self.batch_count, trailer_alignment);
        out.extend_from_slice(self.payload());
        out.resize(out.len() + trailer_size - items_size, PADDING_BYTE);
        out.extend_from_slice(&self.body[self.body.len() - items_size..]);
        // Pair: what was written is the payload and the trailer, no more.
        assert_eq!(out.len() - start, self.payload_size + trailer_size);
    }

    /// The batches in order, each as its elements' bytes.
    pub fn batches(&self) -> Batches<'a> {
        Batches {
            multi_batch: *self,
            batch: 0,
            offset: 0,
        }
    }
}

/// Iterator over the batches of a [`MultiBatch`].
pub struct Batches<'a> {
    multi_batch: MultiBatch<'a>,
    batch: u16,
    offset: usize,
}

impl<'a> Iterator for Batches<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.batch == self.multi_batch.batch_count {
            return None;
        }
        let size = self.multi_batch.count(self.batch) as usize * self.multi_batch.element_size;
        let elements = &self.multi_batch.payload()[self.offset..self.offset + size];
        self.batch += 1;
        self.offset += size;
        Some(elements)
    }
}

/// Builds a multi-batch body batch by batch; refuses batches that would make the body larger
/// than a message can carry.
#[derive(Clone, Debug)]
pub struct MultiBatchEncoder {
    element_size: usize,
    payload: Vec<u8>,
    counts: Vec<u16>,
}

impl MultiBatchEncoder {
    /// An encoder with no batches yet, for elements of `element_size` bytes (the event size for
    /// a request, the result size for a reply).
    pub fn new(element_size: usize) -> MultiBatchEncoder {
        assert!(element_size > 0);
        MultiBatchEncoder {
            element_size,
            payload: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Batches pushed so far.
    pub fn batch_count(&self) -> u16 {
        // Cast: push_batch keeps the count at most BATCH_COUNT_MAX.
        self.counts.len() as u16
    }

    /// Size of the body [`MultiBatchEncoder::finish`] would return now.
    pub fn body_size(&self) -> usize {
        self.payload.len() + trailer_size(self.batch_count(), self.element_size)
    }

    /// Appends one batch (its elements' bytes; may be empty).
    pub fn push_batch(&mut self, elements: &[u8]) -> Result<(), MultiBatchEncodeError> {
        if self.counts.len() >= BATCH_COUNT_MAX as usize {
            return Err(MultiBatchEncodeError::BatchCount);
        }
        let element_size = self.element_size;
        if elements.len() % element_size != 0 {
            return Err(MultiBatchEncodeError::ElementSize {
                size: elements.len(),
                element_size,
            });
        }
        let count = elements.len() / element_size;
        let Ok(count_u16) = u16::try_from(count) else {
            return Err(MultiBatchEncodeError::ElementCount { count });
        };
        let body_size = self.payload.len()
            + elements.len()
            + trailer_size(self.batch_count() + 1, element_size);
        if body_size > MESSAGE_BODY_SIZE_MAX {
            return Err(MultiBatchEncodeError::BodySize { body_size });
        }
        self.payload.extend_from_slice(elements);
        self.counts.push(count_u16);
        Ok(())
    }

    /// The body: payload, padding, counts from the last batch to the first, batch count.
    pub fn finish(self) -> Vec<u8> {
        // A body without batches is invalid (N ≥ 1); every request has at least one, and a
        // reply has as many as its request.
        assert!(!self.counts.is_empty());
        let batch_count = self.batch_count();
        let trailer_size = trailer_size(batch_count, self.element_size);
        let padding_size = trailer_size - ITEM_SIZE * (self.counts.len() + 1);
        let mut body = self.payload;
        body.reserve_exact(trailer_size);
        body.resize(body.len() + padding_size, PADDING_BYTE);
        for count in self.counts.iter().rev() {
            body.extend_from_slice(&count.to_le_bytes());
        }
        body.extend_from_slice(&batch_count.to_le_bytes());
        assert_eq!(body.len() % self.element_size, 0);
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_sizes() {
        assert_eq!(trailer_size(1, 128), 128);
        assert_eq!(trailer_size(1, 16), 16);
        assert_eq!(trailer_size(7, 16), 16);
        assert_eq!(trailer_size(8, 16), 32);
        assert_eq!(trailer_size(63, 128), 128);
        assert_eq!(trailer_size(64, 128), 256);
        assert_eq!(trailer_size(BATCH_COUNT_MAX, 8), 131_072);
    }

    #[test]
    fn repadded_bodies_decode_to_the_same_batches() {
        for (counts, element_size) in [
            (vec![1u16], 128usize),
            (vec![3, 0, 2], 128),
            (vec![0], 128),
            ((0..70).map(|i| i % 3).collect(), 128),
            (vec![5, 1], 16),
        ] {
            let mut encoder = MultiBatchEncoder::new(element_size);
            for (batch, &count) in counts.iter().enumerate() {
                let elements = vec![batch as u8; count as usize * element_size];
                encoder.push_batch(&elements).unwrap();
            }
            let body = encoder.finish();
            let original = decode_multi_batch(&body, element_size).unwrap();
            let mut compact = Vec::new();
            original.repad(16, &mut compact);
            assert_eq!(compact.len() % 16, 0);
            let trailer = trailer_size(counts.len() as u16, 16);
            assert_eq!(compact.len(), original.payload().len() + trailer);
            let decoded = decode_multi_batch_aligned(&compact, element_size, 16).unwrap();
            assert_eq!(decoded.payload(), original.payload());
            assert!(decoded.batches().eq(original.batches()));
            // The aligned reading is as strict: a payload one element short is refused.
            let short = &compact[element_size.min(compact.len())..];
            if !original.payload().is_empty() {
                assert!(decode_multi_batch_aligned(short, element_size, 16).is_err());
            }
        }
        // One 128-byte transfer: 144 bytes instead of 256.
        let mut encoder = MultiBatchEncoder::new(128);
        encoder.push_batch(&[7; 128]).unwrap();
        let body = encoder.finish();
        assert_eq!(body.len(), 256);
        let mut compact = Vec::new();
        decode_multi_batch(&body, 128)
            .unwrap()
            .repad(16, &mut compact);
        assert_eq!(compact.len(), 144);
    }

    #[test]
    fn spec_example_lookup_two_batches() {
        let mut encoder = MultiBatchEncoder::new(16);
        encoder.push_batch(&[1; 32]).expect("fits");
        encoder.push_batch(&[]).expect("fits");
        let body = encoder.finish();
        assert_eq!(body.len(), 48);
        assert_eq!(
            body[32..],
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0, 2, 0]
        );
        let decoded = decode_multi_batch(&body, 16).expect("valid");
        assert_eq!(decoded.batch_count(), 2);
        assert_eq!(decoded.count(0), 2);
        assert_eq!(decoded.count(1), 0);
        let batches: Vec<&[u8]> = decoded.batches().collect();
        assert_eq!(batches, vec![&[1u8; 32][..], &[][..]]);
    }
}
