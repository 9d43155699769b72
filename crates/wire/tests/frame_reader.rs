//! The frame splitter on arbitrary input (spec §1.2–1.3): it never panics, never grows, and
//! returns exactly the messages that were sent, however the stream is cut into segments.

use proptest::prelude::*;
use tally_wire::{
    encode_eviction, encode_ping_client, encode_reply, encode_request, EvictionHeader,
    EvictionReason, FrameError, FrameReader, PingClientHeader, Release, ReplyParams, RequestParams,
    HEADER_SIZE, MESSAGE_SIZE_MAX,
};

const CLUSTER: u128 = 0x5eed;

/// One valid message of a kind picked by `kind`, with a body of `body_size` bytes where the
/// command has a body.
fn message(kind: u8, body_size: usize, seed: u8) -> Vec<u8> {
    let body = vec![seed; body_size];
    let release = Release::new(0, 17, 9);
    match kind % 4 {
        0 => encode_request(
            &RequestParams {
                cluster: CLUSTER,
                view: 0,
                release,
                parent: seed as u128,
                client: 1 + seed as u128,
                session: 1,
                timestamp: 0,
                request: 1,
                operation: 140,
                previous_request_latency: 0,
            },
            &body,
        ),
        1 => encode_reply(
            &ReplyParams {
                cluster: CLUSTER,
                view: 0,
                release,
                request_checksum: seed as u128,
                client: 1,
                op: 1 + seed as u64,
                timestamp: 1,
                request: 1,
                operation: 140,
            },
            &body,
        ),
        2 => encode_ping_client(&PingClientHeader {
            cluster: CLUSTER,
            view: 0,
            release,
            client: 1,
            ping_timestamp_monotonic: seed as u64,
            session: 0,
        })
        .to_vec(),
        _ => encode_eviction(&EvictionHeader {
            cluster: CLUSTER,
            view: 0,
            release,
            client: 1,
            reason: EvictionReason::NoSession,
        })
        .to_vec(),
    }
}

/// Feeds `stream` in segments of the given sizes (cycled), draining after each; returns the
/// messages and the error the reader stopped at, if any.
fn split(stream: &[u8], segment_sizes: &[usize]) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut reader = FrameReader::new(CLUSTER);
    let mut messages = Vec::new();
    let mut rest = stream;
    // Bounded: every round consumes at least one byte or ends.
    for segment in 0..=stream.len() {
        if rest.is_empty() {
            break;
        }
        let size = segment_sizes[segment % segment_sizes.len()].clamp(1, rest.len());
        let taken = reader.feed(&rest[..size]);
        assert!(taken > 0, "a drained reader always has room");
        rest = &rest[taken..];
        loop {
            match reader.next_message() {
                Ok(Some(message)) => messages.push(message.to_vec()),
                Ok(None) => break,
                Err(error) => {
                    // Final: asking again gives the same error.
                    assert_eq!(reader.next_message().err(), Some(error));
                    return (messages, Some(error));
                }
            }
        }
        assert!(reader.buffered_size() <= MESSAGE_SIZE_MAX);
    }
    (messages, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(
        stream in proptest::collection::vec(any::<u8>(), 0..4096),
        segment_sizes in proptest::collection::vec(1usize..700, 1..8),
    ) {
        let (messages, _) = split(&stream, &segment_sizes);
        // Random bytes almost never carry a valid checksum; if they do, they are a message.
        prop_assert!(messages.iter().all(|message| message.len() >= HEADER_SIZE));
    }

    #[test]
    fn valid_streams_split_back_into_their_messages(
        specs in proptest::collection::vec((any::<u8>(), 0usize..600, any::<u8>()), 0..12),
        segment_sizes in proptest::collection::vec(1usize..900, 1..8),
    ) {
        let sent: Vec<Vec<u8>> = specs
            .iter()
            .map(|(kind, body_size, seed)| message(*kind, *body_size, *seed))
            .collect();
        let stream = sent.concat();
        let (received, error) = split(&stream, &segment_sizes);
        prop_assert_eq!(error, None);
        prop_assert_eq!(received, sent);
    }

    /// Messages before a corrupted byte all come out; the corruption stops the stream.
    #[test]
    fn corruption_stops_the_stream_after_the_good_messages(
        specs in proptest::collection::vec((any::<u8>(), 0usize..300, any::<u8>()), 1..8),
        victim in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        segment_sizes in proptest::collection::vec(1usize..900, 1..8),
    ) {
        let sent: Vec<Vec<u8>> = specs
            .iter()
            .map(|(kind, body_size, seed)| message(*kind, *body_size, *seed))
            .collect();
        let mut stream = sent.concat();
        let position = victim.index(stream.len());
        stream[position] ^= flip;
        let (received, error) = split(&stream, &segment_sizes);
        let mut start = 0;
        let intact = sent
            .iter()
            .take_while(|message| {
                start += message.len();
                start <= position
            })
            .count();
        prop_assert!(error.is_some());
        prop_assert_eq!(&received[..], &sent[..intact]);
    }
}
