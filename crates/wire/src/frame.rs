//! Framing: from a TCP byte stream to verified messages (spec §1.2–1.4, §2.3).
//!
//! Messages follow each other back to back; the header's `size` (offset 96) is the whole
//! message length, header included. The receiver procedure is TigerBeetle's message buffer:
//! wait for 256 bytes, verify the header checksum before trusting any field, check
//! `256 ≤ size ≤ 1 MiB`, wait for the body, verify `checksum_body`, check the cluster. A failure
//! of any of these means the stream cannot be trusted any more: the connection is closed
//! without an answer. The same holds for a command byte outside TigerBeetle's enum (TigerBeetle
//! crashes on it on purpose; spec §1.3).
//!
//! [`FrameReader`] does this inside one buffer that costs what the connection uses: nothing
//! while nothing is buffered, `READ_BUFFER_SIZE_MIN` bytes while a header arrives, and exactly
//! the announced message size (at most `MESSAGE_SIZE_MAX`) while a larger message's body does.
//! An idle connection holds no buffer, so a server's memory does not grow with the connections
//! it keeps open.

use tally_checksum::checksum;

use crate::header::Header;
use crate::protocol::Command;
use crate::{HEADER_SIZE, MESSAGE_SIZE_MAX};

/// A broken stream: the receiver must close the connection (spec §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header's `checksum` does not cover its bytes: no field of it can be trusted.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// The header's `size` is below a header or above `MESSAGE_SIZE_MAX`.
    #[error("size {size} outside [256, 1048576]")]
    Size {
        /// The announced message size in bytes, header included.
        size: u32,
    },
    /// The message belongs to another cluster.
    #[error("cluster {cluster} is not this server's cluster")]
    Cluster {
        /// The cluster the header names.
        cluster: u128,
    },
    /// The command byte is not one of TigerBeetle's commands.
    #[error("command byte {command} is outside TigerBeetle's command enum")]
    CommandUnknown {
        /// The byte at the command offset.
        command: u8,
    },
    /// The body's length differs from what the header's `size` announces.
    #[error("body of {body_size} bytes for a message of size {size}")]
    BodySize {
        /// The announced message size in bytes, header included.
        size: u32,
        /// The body's actual length in bytes.
        body_size: usize,
    },
    /// The header's `checksum_body` does not cover the body.
    #[error("body checksum mismatch")]
    BodyChecksum,
}

/// Checks a received header before any field is trusted: checksum first, then size bounds,
/// cluster and the command byte. The validity rules come later, in [`Header::parse`].
pub fn verify_header(bytes: &[u8; HEADER_SIZE], cluster: u128) -> Result<Header, FrameError> {
    let header = Header::from_bytes(*bytes);
    if !header.checksum_valid() {
        return Err(FrameError::HeaderChecksum);
    }
    let size = header.size();
    if (size as usize) < HEADER_SIZE || size as usize > MESSAGE_SIZE_MAX {
        return Err(FrameError::Size { size });
    }
    if header.cluster() != cluster {
        return Err(FrameError::Cluster {
            cluster: header.cluster(),
        });
    }
    if Command::from_u8(header.command_byte()).is_none() {
        return Err(FrameError::CommandUnknown {
            command: header.command_byte(),
        });
    }
    Ok(header)
}

/// Checks that `body` is exactly the body `header` announces: its length, then its checksum.
pub fn verify_body(header: &Header, body: &[u8]) -> Result<(), FrameError> {
    if header.body_size() != Some(body.len()) {
        return Err(FrameError::BodySize {
            size: header.size(),
            body_size: body.len(),
        });
    }
    if header.checksum_body() != checksum(body) {
        return Err(FrameError::BodyChecksum);
    }
    Ok(())
}

/// A verified message: checksums, size and cluster are right. Its validity rules are not yet
/// checked ([`Header::parse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The verified header.
    pub header: Header,
    /// Exactly `header.size() - 256` bytes, matching `checksum_body`.
    pub body: &'a [u8],
}

impl Message<'_> {
    /// The message as it was on the wire.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_SIZE + self.body.len());
        bytes.extend_from_slice(self.header.as_bytes());
        bytes.extend_from_slice(self.body);
        bytes
    }
}

/// Bytes a reader asks for while no header is complete: room for a few small messages per
/// read, and all that a connection trickling a partial frame holds.
pub const READ_BUFFER_SIZE_MIN: usize = 4096;

const _: () = assert!(READ_BUFFER_SIZE_MIN >= HEADER_SIZE);
const _: () = assert!(READ_BUFFER_SIZE_MIN <= MESSAGE_SIZE_MAX);

/// Splits a byte stream into verified messages inside a buffer that grows to the message being
/// read (at most `MESSAGE_SIZE_MAX`) and is freed whenever nothing is buffered.
///
/// Use: write received bytes into [`FrameReader::spare_capacity`] and report them with
/// [`FrameReader::advance`] (or copy them in with [`FrameReader::feed`]), then call
/// [`FrameReader::next_message`] until it returns `Ok(None)`. Before waiting for more input,
/// [`FrameReader::release`] frees the buffer if it holds nothing. An `Err` is final: the reader
/// returns the same error from then on, and the connection must be closed.
pub struct FrameReader {
    cluster: u128,
    /// Empty (not allocated) while nothing is buffered and the reader was released;
    /// `READ_BUFFER_SIZE_MIN` bytes while no header is complete; grown to the message size once
    /// a header announcing a larger message is verified.
    buffer: Vec<u8>,
    /// Received bytes not yet returned as messages are `buffer[start..end]`.
    start: usize,
    end: usize,
    /// The header at `start`, once verified, while its body is still arriving: verify once.
    header_verified: Option<Header>,
    error: Option<FrameError>,
}

impl FrameReader {
    /// An empty reader for a connection of `cluster`: messages of other clusters are errors.
    /// Allocates nothing until bytes are to be received.
    pub fn new(cluster: u128) -> FrameReader {
        FrameReader {
            cluster,
            buffer: Vec::new(),
            start: 0,
            end: 0,
            header_verified: None,
            error: None,
        }
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered_size(&self) -> usize {
        self.end - self.start
    }

    /// Bytes the reader holds allocated now: what an idle connection costs.
    pub fn buffer_size(&self) -> usize {
        self.buffer.len()
    }

    /// Where to put newly received bytes: the buffer holds at most `READ_BUFFER_SIZE_MIN`
    /// bytes or the message being read, whichever is larger, so a read never takes bytes of
    /// the message after a large one. Empty only when [`FrameReader::next_message`] has a
    /// message or an error to return: drain it first.
    pub fn spare_capacity(&mut self) -> &mut [u8] {
        if self.start > 0 {
            // Move the incomplete tail to the front so that a whole message fits behind it.
            // Each byte moves at most once per message it belongs to.
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == 0 && self.buffer.len() > READ_BUFFER_SIZE_MIN {
            // The large message is gone: give its memory back rather than keep it for a
            // connection that may never send another.
            self.buffer = Vec::new();
        }
        self.header_check();
        if self.error.is_some() {
            return &mut [];
        }
        let wanted = match &self.header_verified {
            // Cast: verify_header bounded size to MESSAGE_SIZE_MAX.
            Some(header) => (header.size() as usize).max(READ_BUFFER_SIZE_MIN),
            None => READ_BUFFER_SIZE_MIN,
        };
        if self.buffer.len() < wanted {
            self.buffer.resize(wanted, 0);
        }
        assert!(self.buffer.len() <= MESSAGE_SIZE_MAX);
        assert!(self.end <= self.buffer.len());
        &mut self.buffer[self.end..]
    }

    /// Reports `size` bytes written at the front of [`FrameReader::spare_capacity`].
    pub fn advance(&mut self, size: usize) {
        assert_eq!(self.start, 0, "advance follows spare_capacity");
        assert!(size <= self.buffer.len() - self.end);
        self.end += size;
    }

    /// Copies as much of `bytes` as fits; returns how many bytes were taken.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let spare = self.spare_capacity();
        let size = spare.len().min(bytes.len());
        spare[..size].copy_from_slice(&bytes[..size]);
        self.advance(size);
        size
    }

    /// Frees the buffer if it holds no received bytes; call before waiting for input, so that
    /// a connection that sends nothing holds nothing. The next
    /// [`FrameReader::spare_capacity`] allocates again.
    pub fn release(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.buffer = Vec::new();
        }
    }

    /// The next whole, verified message, or `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, FrameError> {
        self.header_check();
        if let Some(error) = self.error {
            return Err(error);
        }
        let Some(header) = &self.header_verified else {
            return Ok(None);
        };
        // Cast: verify_header bounded size to MESSAGE_SIZE_MAX.
        let size = header.size() as usize;
        if self.buffered_size() < size {
            return Ok(None);
        }
        let body_start = self.start + HEADER_SIZE;
        let body_end = self.start + size;
        if let Err(error) = verify_body(header, &self.buffer[body_start..body_end]) {
            self.error = Some(error);
            return Err(error);
        }
        let header = self
            .header_verified
            .take()
            .expect("checked to be Some above");
        self.start = body_end;
        if self.start == self.end {
            // Nothing incomplete is left: start over at the front without moving bytes.
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(Message {
            header,
            body: &self.buffer[body_start..body_end],
        }))
    }

    /// Verifies the header at `start` once its 256 bytes are in, keeping it (or the error):
    /// its size tells how large the buffer must grow.
    fn header_check(&mut self) {
        if self.error.is_some()
            || self.header_verified.is_some()
            || self.buffered_size() < HEADER_SIZE
        {
            return;
        }
        let mut bytes = [0u8; HEADER_SIZE];
        bytes.copy_from_slice(&self.buffer[self.start..self.start + HEADER_SIZE]);
        match verify_header(&bytes, self.cluster) {
            Ok(header) => self.header_verified = Some(header),
            Err(error) => self.error = Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{encode_ping_client, encode_request, PingClientHeader, RequestParams};
    use crate::protocol::Release;

    fn ping(client: u128) -> [u8; HEADER_SIZE] {
        encode_ping_client(&PingClientHeader {
            cluster: 5,
            view: 0,
            release: Release::new(0, 17, 9),
            client,
            ping_timestamp_monotonic: 1,
            session: 0,
        })
    }

    #[test]
    fn splits_back_to_back_messages_byte_by_byte() {
        let request = encode_request(
            &RequestParams {
                cluster: 5,
                view: 0,
                release: Release::new(0, 17, 9),
                parent: 0,
                client: 1,
                session: 0,
                timestamp: 0,
                request: 0,
                operation: 2,
                previous_request_latency: 0,
            },
            &[0; 256],
        );
        let mut stream = ping(1).to_vec();
        stream.extend_from_slice(&request);
        stream.extend_from_slice(&ping(2));
        let mut reader = FrameReader::new(5);
        let mut messages = Vec::new();
        for byte in &stream {
            assert_eq!(reader.feed(std::slice::from_ref(byte)), 1);
            while let Some(message) = reader.next_message().expect("valid stream") {
                messages.push(message.to_vec());
            }
        }
        assert_eq!(messages, vec![ping(1).to_vec(), request, ping(2).to_vec()]);
        assert_eq!(reader.buffered_size(), 0);
    }

    #[test]
    fn errors_are_final() {
        let mut bytes = ping(1);
        bytes[200] ^= 1;
        let mut reader = FrameReader::new(5);
        reader.feed(&bytes);
        reader.feed(&ping(2));
        assert_eq!(reader.next_message(), Err(FrameError::HeaderChecksum));
        assert_eq!(reader.next_message(), Err(FrameError::HeaderChecksum));
    }

    #[test]
    fn wrong_cluster_closes() {
        let mut reader = FrameReader::new(6);
        reader.feed(&ping(1));
        assert_eq!(
            reader.next_message(),
            Err(FrameError::Cluster { cluster: 5 })
        );
    }

    #[test]
    fn bad_size_closes_before_the_body_arrives() {
        for size in [0u32, 255, MESSAGE_SIZE_MAX as u32 + 1, u32::MAX] {
            let mut header = Header::from_bytes(ping(1));
            let mut bytes = *header.as_bytes();
            bytes[96..100].copy_from_slice(&size.to_le_bytes());
            header = Header::from_bytes(bytes);
            bytes[0..16].copy_from_slice(&header.checksum_calculate().to_le_bytes());
            let mut reader = FrameReader::new(5);
            reader.feed(&bytes);
            assert_eq!(reader.next_message(), Err(FrameError::Size { size }));
        }
    }

    #[test]
    fn body_checksum_and_unknown_command_close() {
        let mut message = encode_request(
            &RequestParams {
                cluster: 5,
                view: 0,
                release: Release(1),
                parent: 0,
                client: 1,
                session: 1,
                timestamp: 0,
                request: 1,
                operation: 140,
                previous_request_latency: 0,
            },
            &[7; 32],
        );
        *message.last_mut().expect("32-byte body") ^= 1;
        let mut reader = FrameReader::new(5);
        reader.feed(&message);
        assert_eq!(reader.next_message(), Err(FrameError::BodyChecksum));

        let mut bytes = ping(1);
        bytes[114] = 25;
        let sealed = Header::from_bytes(bytes).checksum_calculate();
        bytes[0..16].copy_from_slice(&sealed.to_le_bytes());
        let mut reader = FrameReader::new(5);
        reader.feed(&bytes);
        assert_eq!(
            reader.next_message(),
            Err(FrameError::CommandUnknown { command: 25 })
        );
    }

    #[test]
    fn buffer_grows_to_the_message_and_is_freed_when_drained() {
        let body = vec![0xA5; MESSAGE_SIZE_MAX - HEADER_SIZE];
        let message = encode_request(
            &RequestParams {
                cluster: 5,
                view: 0,
                release: Release(1),
                parent: 0,
                client: 1,
                session: 1,
                timestamp: 0,
                request: 1,
                operation: 146,
                previous_request_latency: 0,
            },
            &body,
        );
        let mut reader = FrameReader::new(5);
        assert_eq!(reader.buffer_size(), 0, "nothing allocated before input");
        // A ping and the start of the largest message: one small read window.
        let mut stream = ping(1).to_vec();
        stream.extend_from_slice(&message);
        let mut taken = reader.feed(&stream);
        assert_eq!(taken, READ_BUFFER_SIZE_MIN);
        assert_eq!(reader.buffer_size(), READ_BUFFER_SIZE_MIN);
        assert_eq!(
            reader
                .next_message()
                .expect("valid")
                .expect("whole")
                .to_vec(),
            ping(1).to_vec()
        );
        assert_eq!(reader.next_message(), Ok(None));
        // The large header is verified: the buffer grows to exactly its message, no further.
        while taken < stream.len() {
            taken += reader.feed(&stream[taken..]);
            assert!(reader.buffer_size() <= MESSAGE_SIZE_MAX);
        }
        assert_eq!(reader.buffer_size(), MESSAGE_SIZE_MAX);
        assert_eq!(reader.spare_capacity().len(), 0);
        let received = reader.next_message().expect("valid").expect("whole");
        assert_eq!(received.to_vec(), message);
        assert_eq!(reader.next_message(), Ok(None));
        // Drained: the next read window is small again, and release frees it.
        assert_eq!(reader.spare_capacity().len(), READ_BUFFER_SIZE_MIN);
        reader.release();
        assert_eq!(reader.buffer_size(), 0);
    }

    #[test]
    fn release_keeps_a_partial_frame() {
        let mut reader = FrameReader::new(5);
        assert_eq!(reader.feed(&ping(1)[..100]), 100);
        reader.release();
        assert_eq!(reader.buffered_size(), 100);
        assert_eq!(reader.feed(&ping(1)[100..]), HEADER_SIZE - 100);
        assert_eq!(
            reader
                .next_message()
                .expect("valid")
                .expect("whole")
                .to_vec(),
            ping(1).to_vec()
        );
    }

    #[test]
    fn an_error_leaves_no_room() {
        let mut bytes = ping(1);
        bytes[200] ^= 1;
        let mut reader = FrameReader::new(5);
        assert_eq!(reader.feed(&bytes), HEADER_SIZE);
        assert_eq!(
            reader.feed(&ping(2)),
            0,
            "the header is checked before more is read"
        );
        assert_eq!(reader.next_message(), Err(FrameError::HeaderChecksum));
    }
}
