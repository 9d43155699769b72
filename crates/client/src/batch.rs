//! Packing calls into multi-batch request bodies (spec §5.2, §5.5).
//!
//! Each call's events are copied once, straight into the body of a pending request; when the
//! request is sent, the trailer is appended in place. Body buffers are recycled, so the steady
//! state allocates nothing per event and nothing per request body.

use bytes::Bytes;
use tally_wire::{trailer_size, Operation, BATCH_COUNT_MAX, MESSAGE_BODY_SIZE_MAX};
use tokio::sync::oneshot;

use crate::error::ClientError;

/// Fill byte of the unused front of a trailer.
const PADDING_BYTE: u8 = 0xFF;

/// What a call gets back: its own batch's result bytes (whole results).
pub(crate) type CallResult = Result<Bytes, ClientError>;

/// One call waiting for its batch's results.
pub(crate) struct Waiter {
    /// Events in this call's batch.
    pub events: u16,
    /// Most results the batch can get (creates: exactly this many).
    pub results_max: u32,
    /// Creates: one result per event, exactly.
    pub exact: bool,
    pub sender: oneshot::Sender<CallResult>,
}

impl Waiter {
    pub(crate) fn fail(self, error: ClientError) {
        // The caller may have stopped waiting; nothing to do then.
        let _ = self.sender.send(Err(error));
    }
}

/// The shape of a call: how much request and reply space it needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallSize {
    pub event_bytes: usize,
    pub events: usize,
    pub results_max: u64,
}

/// A request being assembled: batches of one operation, not yet sent.
pub(crate) struct Pending {
    pub operation: Operation,
    event_size: usize,
    result_size: usize,
    /// The batches' events, back to back; the trailer is added by [`Pending::finish`].
    pub body: Vec<u8>,
    pub waiters: Vec<Waiter>,
    results_max: u64,
}

/// Sizes of an operation's events and results (only multi-batch operations are called).
pub(crate) fn element_sizes(operation: Operation) -> (usize, usize) {
    match (operation.event_size(), operation.result_size()) {
        (Some(event_size), Some(result_size)) => (event_size, result_size),
        // Unreachable for the operations the client sends; sizes of 1 keep arithmetic safe.
        _ => (1, 1),
    }
}

/// Whether a request holding `batches` batches with `payload` event bytes and `results_max`
/// possible results fits the server's request limit and the reply message limit.
fn request_fits(
    batches: usize,
    payload: usize,
    results_max: u64,
    event_size: usize,
    result_size: usize,
    batch_size_limit: u32,
) -> bool {
    if batches > BATCH_COUNT_MAX as usize {
        return false;
    }
    // Cast: bounded by BATCH_COUNT_MAX just above.
    let batches = batches as u16;
    let body_size = payload + trailer_size(batches, event_size);
    let reply_size =
        results_max.saturating_mul(result_size as u64) + trailer_size(batches, result_size) as u64;
    body_size <= batch_size_limit as usize && reply_size <= MESSAGE_BODY_SIZE_MAX as u64
}

/// Whether a call fits in a request of its own (else the call fails with `TooMuchData`).
pub(crate) fn call_fits(operation: Operation, call: CallSize, batch_size_limit: u32) -> bool {
    let (event_size, result_size) = element_sizes(operation);
    call.events <= u16::MAX as usize
        && request_fits(
            1,
            call.event_bytes,
            call.results_max,
            event_size,
            result_size,
            batch_size_limit,
        )
}

impl Pending {
    pub(crate) fn new(operation: Operation, mut body: Vec<u8>) -> Pending {
        let (event_size, result_size) = element_sizes(operation);
        body.clear();
        Pending {
            operation,
            event_size,
            result_size,
            body,
            waiters: Vec::new(),
            results_max: 0,
        }
    }

    /// Whether `call` can join this request as one more batch.
    pub(crate) fn fits(&self, call: CallSize, batch_size_limit: u32) -> bool {
        request_fits(
            self.waiters.len() + 1,
            self.body.len() + call.event_bytes,
            self.results_max + call.results_max,
            self.event_size,
            self.result_size,
            batch_size_limit,
        )
    }

    /// Records one batch whose events the caller has just appended to `body`; the caller
    /// checked [`Pending::fits`] (or that the request is empty and [`call_fits`]).
    pub(crate) fn push(&mut self, waiter: Waiter) {
        self.results_max += u64::from(waiter.results_max);
        self.waiters.push(waiter);
    }

    /// Appends the trailer: `0xFF` padding, the counts from the last batch to the first, the
    /// batch count (spec §5.2). Returns the body.
    pub(crate) fn finish(&mut self) -> &[u8] {
        finish_body(
            &mut self.body,
            self.waiters.iter().map(|waiter| waiter.events),
            self.event_size,
        );
        &self.body
    }

    pub(crate) fn result_size(&self) -> usize {
        self.result_size
    }
}

/// Appends the multi-batch trailer for `counts` to `body` (which holds the payload).
pub(crate) fn finish_body<I>(body: &mut Vec<u8>, counts: I, element_size: usize)
where
    I: DoubleEndedIterator<Item = u16> + ExactSizeIterator,
{
    let batch_count = counts.len();
    // Cast: a request holds at most BATCH_COUNT_MAX batches (request_fits).
    let trailer = trailer_size(batch_count as u16, element_size);
    let padding = trailer - 2 * (batch_count + 1);
    body.reserve(trailer);
    body.resize(body.len() + padding, PADDING_BYTE);
    for count in counts.rev() {
        body.extend_from_slice(&count.to_le_bytes());
    }
    body.extend_from_slice(&(batch_count as u16).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_wire::{decode_multi_batch, MultiBatchEncoder, BATCH_SIZE_LIMIT_MAX};

    #[test]
    fn trailer_matches_the_wire_encoder() {
        for element_size in [16usize, 64, 128] {
            for counts in [
                vec![0u16],
                vec![2],
                vec![2, 0],
                vec![1; 70],
                vec![3, 0, 5, 1],
            ] {
                let mut encoder = MultiBatchEncoder::new(element_size);
                let mut body = Vec::new();
                for (index, count) in counts.iter().enumerate() {
                    let events = vec![index as u8; *count as usize * element_size];
                    encoder.push_batch(&events).expect("fits");
                    body.extend_from_slice(&events);
                }
                finish_body(&mut body, counts.iter().copied(), element_size);
                assert_eq!(body, encoder.finish());
                let decoded = decode_multi_batch(&body, element_size).expect("valid");
                assert_eq!(decoded.batch_count() as usize, counts.len());
            }
        }
    }

    #[test]
    fn limits_match_the_spec() {
        let size = |events: usize| CallSize {
            event_bytes: events * 128,
            events,
            results_max: events as u64,
        };
        let limit = BATCH_SIZE_LIMIT_MAX;
        assert!(call_fits(Operation::CreateTransfers, size(8189), limit));
        assert!(!call_fits(Operation::CreateTransfers, size(8190), limit));
        // TigerBeetle --development: 32,512-byte bodies hold 253 creates.
        assert!(call_fits(Operation::CreateAccounts, size(253), 32_512));
        assert!(!call_fits(Operation::CreateAccounts, size(254), 32_512));
        let lookups = |events: usize| CallSize {
            event_bytes: events * 16,
            events,
            results_max: events as u64,
        };
        assert!(call_fits(Operation::LookupAccounts, lookups(8189), limit));
        assert!(!call_fits(Operation::LookupAccounts, lookups(8190), limit));
        assert!(call_fits(Operation::LookupAccounts, lookups(2031), 32_512));
        assert!(!call_fits(Operation::LookupAccounts, lookups(2032), 32_512));
        let query = |limit: u64| CallSize {
            event_bytes: 64,
            events: 1,
            results_max: limit,
        };
        assert!(call_fits(Operation::QueryTransfers, query(8189), limit));
        assert!(!call_fits(Operation::QueryTransfers, query(8190), limit));
        assert!(call_fits(Operation::CreateAccounts, size(0), limit));
    }

    #[test]
    fn packing_respects_body_and_reply_limits() {
        let (sender, _receiver) = oneshot::channel();
        let mut pending = Pending::new(Operation::CreateTransfers, Vec::new());
        let call = CallSize {
            event_bytes: 4000 * 128,
            events: 4000,
            results_max: 4000,
        };
        pending.body.extend_from_slice(&vec![0; call.event_bytes]);
        pending.push(Waiter {
            events: 4000,
            results_max: 4000,
            exact: true,
            sender,
        });
        assert!(pending.fits(
            CallSize {
                event_bytes: 4189 * 128,
                events: 4189,
                results_max: 4189
            },
            BATCH_SIZE_LIMIT_MAX
        ));
        assert!(!pending.fits(
            CallSize {
                event_bytes: 4190 * 128,
                events: 4190,
                results_max: 4190
            },
            BATCH_SIZE_LIMIT_MAX
        ));
        // Lookups are bound by the reply: 128-byte results for 16-byte ids.
        let mut lookups = Pending::new(Operation::LookupAccounts, Vec::new());
        let (sender, _receiver) = oneshot::channel();
        lookups.body.extend_from_slice(&[0; 8000 * 16]);
        lookups.push(Waiter {
            events: 8000,
            results_max: 8000,
            exact: false,
            sender,
        });
        let more = |events: usize| CallSize {
            event_bytes: events * 16,
            events,
            results_max: events as u64,
        };
        assert!(lookups.fits(more(189), BATCH_SIZE_LIMIT_MAX));
        assert!(!lookups.fits(more(190), BATCH_SIZE_LIMIT_MAX));
    }
}
