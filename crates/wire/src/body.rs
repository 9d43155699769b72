//! Request body validation (spec §5.6; TigerBeetle's `input_valid`). A body that fails it gets
//! the eviction `invalid_request_body` (spec §4.5 step 6). Filter *contents* are not checked
//! here: an invalid filter is a valid request that returns nothing.

use crate::multi_batch::{decode_multi_batch, trailer_size, MultiBatch, MultiBatchError};
use crate::protocol::{BatchShape, Operation};
use crate::{CHANGE_EVENTS_FILTER_SIZE, MESSAGE_BODY_SIZE_MAX};

/// Why a request body is invalid. Every variant has the same consequence (the client is
/// evicted with `invalid_request_body`); the detail is for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The multi-batch trailer is malformed (spec §5.2).
    #[error("multi-batch encoding: {0}")]
    MultiBatch(#[from] MultiBatchError),
    /// A create or lookup batch holds more events than [`event_max`] allows.
    #[error("batch {batch} has {count} events, more than {event_max}")]
    BatchEvents {
        /// Index of the offending batch in the multi-batch.
        batch: u16,
        /// Events in that batch.
        count: u16,
        /// The most a batch may hold for this operation and `batch_size_limit`.
        event_max: usize,
    },
    /// A query batch does not hold exactly one filter.
    #[error("batch {batch} has {count} filters instead of exactly one")]
    BatchFilters {
        /// Index of the offending batch in the multi-batch.
        batch: u16,
        /// Filters in that batch.
        count: u16,
    },
    /// The largest reply the request could produce (every event answered, every filter at its
    /// `limit`) would not fit in one message.
    #[error("the reply could take {reply_size} bytes, more than a message body can carry")]
    ReplySize {
        /// That reply's body size in bytes, trailer included.
        reply_size: u64,
    },
    /// A `get_change_events` body (not multi-batch) is not exactly one 64-byte filter.
    #[error("body of {body_size} bytes is not exactly one change-events filter")]
    ChangeEventsFilter {
        /// The body's size in bytes.
        body_size: usize,
    },
}

/// Largest number of events in one batch of a create or lookup operation: what fits in a
/// request body of `batch_size_limit` bytes and what fits in a reply, each with the smallest
/// trailer (one element) (spec §5.5). 8,189 for both with the default limit.
pub fn event_max(operation: Operation, batch_size_limit: u32) -> usize {
    assert_eq!(operation.batch_shape(), Some(BatchShape::Events));
    // Unwrap: every operation with a batch shape has event and result sizes (protocol tests).
    let event_size = operation.event_size().expect("events have a size");
    let result_size = operation.result_size().expect("events have results");
    let request_max = (batch_size_limit as usize).saturating_sub(event_size) / event_size;
    let reply_max = result_max(result_size);
    request_max.min(reply_max)
}

/// Most results of `result_size` bytes one reply batch can carry next to a minimal trailer.
fn result_max(result_size: usize) -> usize {
    (MESSAGE_BODY_SIZE_MAX - result_size) / result_size
}

/// Checks the body of a request for a supported state-machine operation (not `register`,
/// whose body is checked by size alone: spec §4.5 step 7).
pub fn validate_request_body(
    operation: Operation,
    body: &[u8],
    batch_size_limit: u32,
) -> Result<(), BodyError> {
    assert!(operation.is_supported());
    assert_ne!(operation, Operation::Register);
    if !operation.is_multi_batch() {
        assert_eq!(operation, Operation::GetChangeEvents);
        if body.len() != CHANGE_EVENTS_FILTER_SIZE {
            return Err(BodyError::ChangeEventsFilter {
                body_size: body.len(),
            });
        }
        return Ok(());
    }
    // Unwrap: multi-batch operations are state-machine operations, which have sizes and shapes.
    let event_size = operation.event_size().expect("state-machine operation");
    let result_size = operation.result_size().expect("state-machine operation");
    let shape = operation.batch_shape().expect("state-machine operation");

    let multi_batch = decode_multi_batch(body, event_size)?;
    let results_max = match shape {
        BatchShape::Events => {
            events_results_max(&multi_batch, event_max(operation, batch_size_limit))?
        }
        BatchShape::Filter { limit_offset } => {
            filters_results_max(&multi_batch, limit_offset, result_max(result_size))?
        }
    };
    let reply_size = results_max * result_size as u64
        + trailer_size(multi_batch.batch_count(), result_size) as u64;
    if reply_size > MESSAGE_BODY_SIZE_MAX as u64 {
        return Err(BodyError::ReplySize { reply_size });
    }
    Ok(())
}

/// Creates and lookups: each batch holds at most `event_max` events, one result at most each.
fn events_results_max(multi_batch: &MultiBatch<'_>, event_max: usize) -> Result<u64, BodyError> {
    let mut results_max: u64 = 0;
    for batch in 0..multi_batch.batch_count() {
        let count = multi_batch.count(batch);
        if count as usize > event_max {
            return Err(BodyError::BatchEvents {
                batch,
                count,
                event_max,
            });
        }
        results_max += count as u64;
    }
    Ok(results_max)
}

/// Queries: each batch is exactly one filter, answered with at most `min(limit, result_max)`
/// results.
fn filters_results_max(
    multi_batch: &MultiBatch<'_>,
    limit_offset: usize,
    result_max: usize,
) -> Result<u64, BodyError> {
    let mut results_max: u64 = 0;
    for (batch, filter) in (0..multi_batch.batch_count()).zip(multi_batch.batches()) {
        let count = multi_batch.count(batch);
        if count != 1 {
            return Err(BodyError::BatchFilters { batch, count });
        }
        let limit_bytes = [
            filter[limit_offset],
            filter[limit_offset + 1],
            filter[limit_offset + 2],
            filter[limit_offset + 3],
        ];
        let limit = u32::from_le_bytes(limit_bytes) as u64;
        results_max += limit.min(result_max as u64);
    }
    Ok(results_max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BATCH_SIZE_LIMIT_MAX;

    #[test]
    fn event_max_matches_spec_limits() {
        assert_eq!(
            event_max(Operation::CreateAccounts, BATCH_SIZE_LIMIT_MAX),
            8189
        );
        assert_eq!(
            event_max(Operation::CreateTransfers, BATCH_SIZE_LIMIT_MAX),
            8189
        );
        assert_eq!(
            event_max(Operation::LookupAccounts, BATCH_SIZE_LIMIT_MAX),
            8189
        );
        // TigerBeetle --development: 32 KiB requests.
        assert_eq!(event_max(Operation::CreateAccounts, 32_512), 253);
        assert_eq!(event_max(Operation::LookupAccounts, 32_512), 2031);
        assert_eq!(result_max(128), 8189);
        assert_eq!(result_max(384), 2729);
    }
}
