//! Multi-batch encoding (spec §5.2) and request body validation (spec §5.6).

use proptest::prelude::*;
use tally_wire::{
    decode_multi_batch, trailer_size, validate_request_body, BodyError, MultiBatchEncodeError,
    MultiBatchEncoder, MultiBatchError, Operation, BATCH_COUNT_MAX, BATCH_SIZE_LIMIT_MAX,
    MESSAGE_BODY_SIZE_MAX,
};

fn encode(element_size: usize, counts: &[usize]) -> Vec<u8> {
    let mut encoder = MultiBatchEncoder::new(element_size);
    for (batch, count) in counts.iter().enumerate() {
        encoder
            .push_batch(&vec![batch as u8; count * element_size])
            .expect("fits");
    }
    encoder.finish()
}

#[test]
fn spec_examples_encode_to_the_captured_trailers() {
    // One batch of two accounts: 256 bytes of payload, 128 of trailer ending `02 00 01 00`.
    let body = encode(128, &[2]);
    assert_eq!(body.len(), 384);
    assert!(body[256..380].iter().all(|byte| *byte == 0xff));
    assert_eq!(body[380..], [2, 0, 1, 0]);
    // Two results: 32 bytes and a 16-byte trailer.
    let body = encode(16, &[2]);
    assert_eq!(
        body[32..],
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 1, 0]
    );
    // Five batches of two transfers.
    let body = encode(128, &[2; 5]);
    assert_eq!(body.len(), 1280 + 128);
    assert_eq!(
        body[1280 + 114..],
        [0xff, 0xff, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 5, 0]
    );
}

#[test]
fn every_malformed_trailer_is_a_typed_error() {
    let valid = encode(16, &[2, 1]);
    assert!(decode_multi_batch(&valid, 16).is_ok());

    assert_eq!(
        decode_multi_batch(&[], 16),
        Err(MultiBatchError::BodyTooSmall { body_size: 0 })
    );
    assert_eq!(
        decode_multi_batch(&[1], 16),
        Err(MultiBatchError::BodyTooSmall { body_size: 1 })
    );
    assert_eq!(
        decode_multi_batch(&[0; 16], 16),
        Err(MultiBatchError::BatchCountZero)
    );
    assert_eq!(
        decode_multi_batch(&[0xff; 16], 16),
        Err(MultiBatchError::BatchCountPadding)
    );

    // Eight batches need a 32-byte trailer.
    let mut body = [0xffu8; 16];
    body[14..].copy_from_slice(&8u16.to_le_bytes());
    assert_eq!(
        decode_multi_batch(&body, 16),
        Err(MultiBatchError::TrailerTooLarge {
            trailer_size: 32,
            body_size: 16
        })
    );

    let mut padding = valid.clone();
    padding[48] = 0xfe;
    assert_eq!(
        decode_multi_batch(&padding, 16),
        Err(MultiBatchError::Padding {
            offset: 48,
            byte: 0xfe
        })
    );

    // Counts claim 3 + 1 elements, the payload holds 3.
    let mut counts = valid.clone();
    let count_0 = counts.len() - 4;
    counts[count_0] = 3;
    assert_eq!(
        decode_multi_batch(&counts, 16),
        Err(MultiBatchError::PayloadSize {
            payload_size: 48,
            counted_size: 64
        })
    );

    // A body that is not a whole number of elements.
    let mut ragged = vec![0u8];
    ragged.extend_from_slice(&valid);
    assert_eq!(
        decode_multi_batch(&ragged, 16),
        Err(MultiBatchError::PayloadSize {
            payload_size: 49,
            counted_size: 48
        })
    );
}

#[test]
fn encoder_refuses_what_cannot_be_encoded() {
    let mut encoder = MultiBatchEncoder::new(128);
    assert_eq!(
        encoder.push_batch(&[0; 100]),
        Err(MultiBatchEncodeError::ElementSize {
            size: 100,
            element_size: 128
        })
    );
    // 8,190 accounts and a trailer exceed the largest body; 8,189 fit exactly.
    assert_eq!(
        encoder.push_batch(&vec![0; 8190 * 128]),
        Err(MultiBatchEncodeError::BodySize {
            body_size: 8191 * 128
        })
    );
    encoder
        .push_batch(&vec![0; 8189 * 128])
        .expect("fits exactly");
    assert_eq!(encoder.body_size(), MESSAGE_BODY_SIZE_MAX);
    assert_eq!(
        encoder.push_batch(&[0; 128]),
        Err(MultiBatchEncodeError::BodySize {
            body_size: MESSAGE_BODY_SIZE_MAX + 128
        })
    );
    assert_eq!(encoder.finish().len(), MESSAGE_BODY_SIZE_MAX);

    let mut encoder = MultiBatchEncoder::new(8);
    assert_eq!(
        encoder.push_batch(&vec![0; 65_536 * 8]),
        Err(MultiBatchEncodeError::ElementCount { count: 65_536 })
    );

    let mut encoder = MultiBatchEncoder::new(128);
    for _ in 0..BATCH_COUNT_MAX {
        encoder.push_batch(&[]).expect("empty batches fit");
    }
    assert_eq!(
        encoder.push_batch(&[]),
        Err(MultiBatchEncodeError::BatchCount)
    );
    let body = encoder.finish();
    assert_eq!(body.len(), trailer_size(BATCH_COUNT_MAX, 128));
    let decoded = decode_multi_batch(&body, 128).expect("decodes");
    assert_eq!(decoded.batch_count(), BATCH_COUNT_MAX);
    assert!(decoded.batches().all(|batch| batch.is_empty()));
}

fn filter(size: usize, limit_offset: usize, limit: u32) -> Vec<u8> {
    let mut filter = vec![0u8; size];
    filter[limit_offset..limit_offset + 4].copy_from_slice(&limit.to_le_bytes());
    filter
}

fn filters(size: usize, limit_offset: usize, limits: &[u32], per_batch: usize) -> Vec<u8> {
    let mut encoder = MultiBatchEncoder::new(size);
    for limit in limits {
        encoder
            .push_batch(&filter(size, limit_offset, *limit).repeat(per_batch))
            .expect("fits");
    }
    encoder.finish()
}

#[test]
fn request_bodies_are_validated_as_tigerbeetle_does() {
    let default = BATCH_SIZE_LIMIT_MAX;
    let development = 32_512;
    let valid = |operation, body: &[u8], limit| validate_request_body(operation, body, limit);

    assert_eq!(
        valid(Operation::CreateAccounts, &encode(128, &[8189]), default),
        Ok(())
    );
    assert_eq!(
        valid(
            Operation::CreateTransfers,
            &encode(128, &[254]),
            development
        ),
        Err(BodyError::BatchEvents {
            batch: 0,
            count: 254,
            event_max: 253
        })
    );
    assert_eq!(
        valid(
            Operation::CreateTransfers,
            &encode(128, &[253, 0, 1]),
            development
        ),
        Ok(())
    );
    assert_eq!(
        valid(Operation::LookupAccounts, &encode(16, &[1, 8190]), default),
        Err(BodyError::BatchEvents {
            batch: 1,
            count: 8190,
            event_max: 8189
        })
    );
    // Each batch fits, but their results together would not fit one reply.
    assert_eq!(
        valid(Operation::LookupTransfers, &encode(16, &[8189, 1]), default),
        Err(BodyError::ReplySize {
            reply_size: 8190 * 128 + 128
        })
    );

    // Queries: exactly one filter per batch; results bounded by min(limit, 8,189).
    let query = |limits: &[u32], per_batch| filters(64, 56, limits, per_batch);
    assert_eq!(
        valid(Operation::QueryAccounts, &query(&[u32::MAX], 1), default),
        Ok(())
    );
    assert_eq!(
        valid(Operation::QueryAccounts, &query(&[1, 1], 2), default),
        Err(BodyError::BatchFilters { batch: 0, count: 2 })
    );
    assert_eq!(
        valid(Operation::QueryTransfers, &query(&[1, 2], 0), default),
        Err(BodyError::BatchFilters { batch: 0, count: 0 })
    );
    assert_eq!(
        valid(Operation::QueryTransfers, &query(&[8189, 1], 1), default),
        Err(BodyError::ReplySize {
            reply_size: 8190 * 128 + 128
        })
    );
    assert_eq!(
        valid(Operation::QueryTransfers, &query(&[8188, 1], 1), default),
        Ok(())
    );
    // Account filters keep their limit at offset 120.
    let account_filters = filters(128, 120, &[4_000, 4_189], 1);
    assert_eq!(
        valid(Operation::GetAccountTransfers, &account_filters, default),
        Ok(())
    );
    let account_filters = filters(128, 120, &[4_000, 4_190], 1);
    assert_eq!(
        valid(Operation::GetAccountBalances, &account_filters, default),
        Err(BodyError::ReplySize {
            reply_size: 8190 * 128 + 128
        })
    );

    // get_change_events: one plain 64-byte filter.
    assert_eq!(valid(Operation::GetChangeEvents, &[0; 64], default), Ok(()));
    for size in [0, 63, 65, 128] {
        assert_eq!(
            valid(Operation::GetChangeEvents, &vec![0; size], default),
            Err(BodyError::ChangeEventsFilter { body_size: size })
        );
    }

    assert_eq!(
        valid(Operation::CreateAccounts, &[0xff; 128], default),
        Err(BodyError::MultiBatch(MultiBatchError::BatchCountPadding))
    );
}

const ELEMENT_SIZES: [usize; 5] = [8, 16, 64, 128, 384];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_then_decode_gives_the_batches_back(
        element_size in proptest::sample::select(&ELEMENT_SIZES[..]),
        batches in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..4),
            1..40,
        ),
    ) {
        let mut encoder = MultiBatchEncoder::new(element_size);
        let batches: Vec<Vec<u8>> = batches
            .iter()
            .map(|seeds| seeds.iter().flat_map(|seed| vec![*seed; element_size]).collect())
            .collect();
        for batch in &batches {
            encoder.push_batch(batch).expect("small batches fit");
        }
        let body = encoder.finish();
        prop_assert_eq!(body.len() % element_size, 0);
        let payload_size: usize = batches.iter().map(Vec::len).sum();
        prop_assert_eq!(body.len(), payload_size + trailer_size(batches.len() as u16, element_size));
        let decoded = decode_multi_batch(&body, element_size).expect("round trip");
        prop_assert_eq!(decoded.batch_count() as usize, batches.len());
        let decoded: Vec<&[u8]> = decoded.batches().collect();
        let expected: Vec<&[u8]> = batches.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(decoded, expected);
    }

    /// Decoding never panics, and whatever decodes is canonical: it re-encodes to itself.
    #[test]
    fn decode_of_arbitrary_bytes_is_total_and_canonical(
        element_size in 1usize..400,
        body in proptest::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(2), Just(0xff), any::<u8>()],
            0..600,
        ),
    ) {
        if let Ok(decoded) = decode_multi_batch(&body, element_size) {
            let mut encoder = MultiBatchEncoder::new(element_size);
            for batch in decoded.batches() {
                encoder.push_batch(batch).expect("a decoded batch re-encodes");
            }
            prop_assert_eq!(encoder.finish(), body);
        }
    }

    #[test]
    fn body_validation_is_total(
        operation in proptest::sample::select(&[137u8, 140, 141, 142, 143, 144, 145, 146, 147][..]),
        body in proptest::collection::vec(any::<u8>(), 0..1200),
        batch_size_limit in 3840u32..=BATCH_SIZE_LIMIT_MAX,
    ) {
        let operation = Operation::from_u8(operation).expect("supported");
        let _ = validate_request_body(operation, &body, batch_size_limit);
    }
}
