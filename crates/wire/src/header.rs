//! The 256-byte message header (spec §2, §3).
//!
//! [`Header`] is a safe view over `[u8; 256]`: no transmute, every field read and written
//! little-endian at its spec offset. The first 128 bytes are the same for every command (the
//! "frame", spec §2.1); the last 128 bytes are laid out per command (spec §3).
//!
//! [`Header::parse`] applies the validity rules ("`header.invalid()`" in TigerBeetle, spec §2.6
//! and the rule paragraphs of §3) and yields a typed header for the five commands of the client
//! protocol. A header that fails them is dropped silently by its receiver; the connection stays
//! open. The rules run only after the checksums and the cluster were verified ([`crate::frame`]).
//!
//! The `encode_*` functions build whole messages with correct checksums. Every message they
//! build passes [`Header::parse`]: the official client silently ignores a message that breaks
//! the rules and then retries forever (spec §2.6), so a bad builder would hang clients rather
//! than fail loudly; the encoders therefore assert their inputs.

use std::fmt;

use tally_checksum::{checksum, CHECKSUM_EMPTY};

use crate::protocol::{Command, EvictionReason, Operation, Release};
use crate::{
    BATCH_SIZE_LIMIT_MAX, HEADER_SIZE, MESSAGE_BODY_SIZE_MAX, MESSAGE_SIZE_MAX, PROTOCOL,
    REGISTER_REQUEST_SIZE, REGISTER_RESULT_SIZE,
};

/// Field offsets (spec §2.1 and §3). Sizes follow from the field types, except for byte
/// arrays, whose sizes are given next to them.
mod offset {
    pub(super) const CHECKSUM: usize = 0;
    pub(super) const CHECKSUM_PADDING: usize = 16;
    pub(super) const CHECKSUM_BODY: usize = 32;
    pub(super) const CHECKSUM_BODY_PADDING: usize = 48;
    pub(super) const NONCE_RESERVED: usize = 64;
    pub(super) const CLUSTER: usize = 80;
    pub(super) const SIZE: usize = 96;
    pub(super) const EPOCH: usize = 100;
    pub(super) const VIEW: usize = 104;
    pub(super) const RELEASE: usize = 108;
    pub(super) const PROTOCOL: usize = 112;
    pub(super) const COMMAND: usize = 114;
    pub(super) const REPLICA: usize = 115;
    pub(super) const RESERVED_FRAME: usize = 116;
    pub(super) const RESERVED_FRAME_SIZE: usize = 12;

    /// Everything the `checksum` field covers starts here (spec §2.3).
    pub(super) const CHECKSUMMED: usize = 16;

    pub(super) const REQUEST_PARENT: usize = 128;
    pub(super) const REQUEST_PARENT_PADDING: usize = 144;
    pub(super) const REQUEST_CLIENT: usize = 160;
    pub(super) const REQUEST_SESSION: usize = 176;
    pub(super) const REQUEST_TIMESTAMP: usize = 184;
    pub(super) const REQUEST_REQUEST: usize = 192;
    pub(super) const REQUEST_OPERATION: usize = 196;
    pub(super) const REQUEST_LATENCY_PADDING: usize = 197;
    pub(super) const REQUEST_LATENCY_PADDING_SIZE: usize = 3;
    pub(super) const REQUEST_LATENCY: usize = 200;
    pub(super) const REQUEST_RESERVED: usize = 204;

    pub(super) const REPLY_REQUEST_CHECKSUM: usize = 128;
    pub(super) const REPLY_REQUEST_CHECKSUM_PADDING: usize = 144;
    pub(super) const REPLY_CONTEXT: usize = 160;
    pub(super) const REPLY_CONTEXT_PADDING: usize = 176;
    pub(super) const REPLY_CLIENT: usize = 192;
    pub(super) const REPLY_OP: usize = 208;
    pub(super) const REPLY_COMMIT: usize = 216;
    pub(super) const REPLY_TIMESTAMP: usize = 224;
    pub(super) const REPLY_REQUEST: usize = 232;
    pub(super) const REPLY_OPERATION: usize = 236;
    pub(super) const REPLY_RESERVED: usize = 237;

    pub(super) const PING_CLIENT: usize = 128;
    pub(super) const PING_TIMESTAMP_MONOTONIC: usize = 144;
    pub(super) const PING_SESSION: usize = 152;
    pub(super) const PING_RESERVED: usize = 160;

    pub(super) const PONG_TIMESTAMP_MONOTONIC: usize = 128;
    pub(super) const PONG_RESERVED: usize = 136;

    pub(super) const EVICTION_CLIENT: usize = 128;
    pub(super) const EVICTION_RESERVED: usize = 144;
    pub(super) const EVICTION_REASON: usize = 255;
}

/// Why a header fails the validity rules. The receiver drops such a message silently and
/// keeps the connection (spec §1.3, §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHeader {
    /// `checksum_padding` (bytes 16–31) is not zero.
    #[error("checksum_padding != 0")]
    ChecksumPadding,
    /// `checksum_body_padding` (bytes 48–63) is not zero.
    #[error("checksum_body_padding != 0")]
    ChecksumBodyPadding,
    /// `nonce_reserved` (bytes 64–79) is not zero.
    #[error("nonce_reserved != 0")]
    NonceReserved,
    /// `size` is below a header or above `MESSAGE_SIZE_MAX`.
    #[error("size {size} outside [256, 1048576]")]
    Size {
        /// The announced message size in bytes, header included.
        size: u32,
    },
    /// `epoch` is not zero.
    #[error("epoch != 0")]
    Epoch,
    /// The frame's reserved bytes (116–127) are not zero.
    #[error("reserved_frame != 0")]
    ReservedFrame,
    /// `protocol` is not `PROTOCOL`.
    #[error("protocol {protocol} != 0")]
    Protocol {
        /// The protocol field found.
        protocol: u16,
    },
    /// The command byte is outside TigerBeetle's enum.
    #[error("command byte {command} is not a command")]
    CommandUnknown {
        /// The command byte found.
        command: u8,
    },
    /// A command outside the client protocol (replica-to-replica, reserved or deprecated).
    #[error("command {command:?} is not part of the client protocol")]
    CommandNotClientProtocol {
        /// The command found.
        command: Command,
    },
    /// `release` is 0.
    #[error("release == 0")]
    ReleaseZero,
    /// `client` is 0.
    #[error("client == 0")]
    ClientZero,
    /// The command's reserved or padding bytes are not zero.
    #[error("command-specific reserved bytes != 0")]
    Reserved,
    /// A request's `parent_padding` is not zero.
    #[error("parent_padding != 0")]
    ParentPadding,
    /// A session request's `replica` is not 0.
    #[error("replica {replica} != 0")]
    Replica {
        /// The replica byte found.
        replica: u8,
    },
    /// A request's operation byte can never be requested (0, 1, 4, 5 or 7–127).
    #[error("operation {operation} cannot be requested")]
    Operation {
        /// The operation byte found.
        operation: u8,
    },
    /// A register request has a `parent`.
    #[error("register: parent != 0")]
    RegisterParent,
    /// A register request has a `session`.
    #[error("register: session != 0")]
    RegisterSession,
    /// A register request, or the reply to one, has a request number other than 0.
    #[error("register: request != 0")]
    RegisterRequest,
    /// A register request is neither a bare header nor header plus `RegisterRequest`.
    #[error("register: size {size} is neither 256 nor 512")]
    RegisterSize {
        /// The message size found, in bytes.
        size: u32,
    },
    /// A noop request has a body.
    #[error("noop: size {size} != 256")]
    NoopSize {
        /// The message size found, in bytes.
        size: u32,
    },
    /// A session request has no session.
    #[error("session == 0")]
    SessionZero,
    /// A session request, or its reply, has request number 0.
    #[error("request == 0")]
    RequestZero,
    /// A ping, pong or eviction has a body.
    #[error("size {size} != 256 for a command without body")]
    BodyNotEmpty {
        /// The message size found, in bytes.
        size: u32,
    },
    /// A reply's `request_checksum_padding` is not zero.
    #[error("request_checksum_padding != 0")]
    RequestChecksumPadding,
    /// A reply's `context_padding` is not zero.
    #[error("context_padding != 0")]
    ContextPadding,
    /// A reply's `op` and `commit` differ.
    #[error("op {op} != commit {commit}")]
    OpNotCommit {
        /// The reply's `op`.
        op: u64,
        /// The reply's `commit`.
        commit: u64,
    },
    /// A reply's `commit` is 0.
    #[error("commit == 0")]
    CommitZero,
    /// A reply's `timestamp` is 0.
    #[error("timestamp == 0")]
    TimestampZero,
    /// A register reply's body is not exactly a `RegisterResult`.
    #[error("register reply: size {size} != 320")]
    RegisterReplySize {
        /// The message size found, in bytes.
        size: u32,
    },
    /// An eviction's reason byte is not 1–8.
    #[error("eviction reason {reason} is not a reason")]
    EvictionReason {
        /// The reason byte found.
        reason: u8,
    },
}

/// A 256-byte header. Construct from received bytes, then check with
/// [`crate::verify_header`] (checksum, size, cluster) and [`Header::parse`] (validity).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; HEADER_SIZE],
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("command", &self.command_byte())
            .field("size", &self.size())
            .field("checksum", &format_args!("{:#034x}", self.checksum()))
            .finish_non_exhaustive()
    }
}

fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut array = [0u8; N];
    array.copy_from_slice(&bytes[offset..offset + N]);
    array
}

impl Header {
    /// All 256 bytes zero: the start of a header being built (not a valid header).
    pub const fn zeroed() -> Header {
        Header {
            bytes: [0; HEADER_SIZE],
        }
    }

    /// The header made of `bytes`, unchecked: verify before trusting any field.
    pub const fn from_bytes(bytes: [u8; HEADER_SIZE]) -> Header {
        Header { bytes }
    }

    /// The header at the start of `bytes`, or `None` if fewer than 256 bytes are given.
    pub fn from_prefix(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER_SIZE {
            return None;
        }
        Some(Header {
            bytes: array_at(bytes, 0),
        })
    }

    /// The 256 wire bytes.
    pub const fn as_bytes(&self) -> &[u8; HEADER_SIZE] {
        &self.bytes
    }

    fn u8_at(&self, offset: usize) -> u8 {
        self.bytes[offset]
    }

    fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes(array_at(&self.bytes, offset))
    }

    fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes(array_at(&self.bytes, offset))
    }

    fn u64_at(&self, offset: usize) -> u64 {
        u64::from_le_bytes(array_at(&self.bytes, offset))
    }

    fn u128_at(&self, offset: usize) -> u128 {
        u128::from_le_bytes(array_at(&self.bytes, offset))
    }

    fn zero_from(&self, offset: usize, size: usize) -> bool {
        self.bytes[offset..offset + size]
            .iter()
            .all(|byte| *byte == 0)
    }

    fn put_u8(&mut self, offset: usize, value: u8) {
        self.bytes[offset] = value;
    }

    fn put_u16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u64(&mut self, offset: usize, value: u64) {
        self.bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u128(&mut self, offset: usize, value: u128) {
        self.bytes[offset..offset + 16].copy_from_slice(&value.to_le_bytes());
    }

    /// `checksum`: AEGIS-128L over bytes 16–255 of the header (spec §2.3).
    pub fn checksum(&self) -> u128 {
        self.u128_at(offset::CHECKSUM)
    }

    /// `checksum_body`: the checksum of the body (`CHECKSUM_EMPTY` for none).
    pub fn checksum_body(&self) -> u128 {
        self.u128_at(offset::CHECKSUM_BODY)
    }

    /// The cluster id; a message of another cluster closes the connection.
    pub fn cluster(&self) -> u128 {
        self.u128_at(offset::CLUSTER)
    }

    /// Total message size in bytes, header included.
    pub fn size(&self) -> u32 {
        self.u32_at(offset::SIZE)
    }

    /// Body size in bytes, or `None` if `size` is below the header size.
    pub fn body_size(&self) -> Option<usize> {
        (self.size() as usize).checked_sub(HEADER_SIZE)
    }

    /// The sender's view: the client's highest seen view, or the server's constant view.
    pub fn view(&self) -> u32 {
        self.u32_at(offset::VIEW)
    }

    /// The sender's release (for a reply: the release of the request it answers).
    pub fn release(&self) -> Release {
        Release(self.u32_at(offset::RELEASE))
    }

    /// The raw command byte, which may be outside [`Command`].
    pub fn command_byte(&self) -> u8 {
        self.u8_at(offset::COMMAND)
    }

    /// The command, or `None` for a byte outside TigerBeetle's enum.
    pub fn command(&self) -> Option<Command> {
        Command::from_u8(self.command_byte())
    }

    /// The replica index of the sender; 0 in every message of the client protocol.
    pub fn replica(&self) -> u8 {
        self.u8_at(offset::REPLICA)
    }

    /// The checksum this header should carry: over bytes `[16, 256)` (spec §2.3).
    pub fn checksum_calculate(&self) -> u128 {
        checksum(&self.bytes[offset::CHECKSUMMED..])
    }

    /// Whether `checksum` matches the header's bytes; nothing else is trusted before.
    pub fn checksum_valid(&self) -> bool {
        self.checksum() == self.checksum_calculate()
    }

    /// `checksum_body` first, because `checksum` covers it (spec §2.3).
    fn set_checksums(&mut self, body: &[u8]) {
        self.put_u128(offset::CHECKSUM_BODY, checksum(body));
        self.put_u128(offset::CHECKSUM, self.checksum_calculate());
    }

    /// Frame fields shared by every message a Tally component builds.
    fn frame(cluster: u128, size: usize, view: u32, release: Release, command: Command) -> Header {
        assert!(size >= HEADER_SIZE);
        assert!(size <= MESSAGE_SIZE_MAX);
        assert_ne!(release.0, 0);
        let mut header = Header::zeroed();
        header.put_u128(offset::CLUSTER, cluster);
        // Cast: size ≤ MESSAGE_SIZE_MAX (asserted) fits a u32.
        header.put_u32(offset::SIZE, size as u32);
        header.put_u32(offset::VIEW, view);
        header.put_u32(offset::RELEASE, release.0);
        header.put_u16(offset::PROTOCOL, PROTOCOL);
        header.put_u8(offset::COMMAND, command as u8);
        header
    }

    /// The validity rules (spec §2.6, §3), then the typed header of a client-protocol command.
    pub fn parse(&self) -> Result<ParsedHeader, InvalidHeader> {
        self.validate_frame()?;
        let command = self.command().ok_or(InvalidHeader::CommandUnknown {
            command: self.command_byte(),
        })?;
        match command {
            Command::Request => self.parse_request().map(ParsedHeader::Request),
            Command::Reply => self.parse_reply().map(ParsedHeader::Reply),
            Command::PingClient => self.parse_ping_client().map(ParsedHeader::PingClient),
            Command::PongClient => self.parse_pong_client().map(ParsedHeader::PongClient),
            Command::Eviction => self.parse_eviction().map(ParsedHeader::Eviction),
            Command::Reserved
            | Command::Ping
            | Command::Pong
            | Command::Prepare
            | Command::PrepareOk
            | Command::Commit
            | Command::ExitView
            | Command::JoinView
            | Command::Deprecated12
            | Command::GetView
            | Command::GetHeaders
            | Command::GetPrepare
            | Command::GetReply
            | Command::Headers
            | Command::GetBlocks
            | Command::Block
            | Command::Deprecated21
            | Command::Deprecated22
            | Command::Deprecated23
            | Command::View => Err(InvalidHeader::CommandNotClientProtocol { command }),
        }
    }

    fn validate_frame(&self) -> Result<(), InvalidHeader> {
        if self.u128_at(offset::CHECKSUM_PADDING) != 0 {
            return Err(InvalidHeader::ChecksumPadding);
        }
        if self.u128_at(offset::CHECKSUM_BODY_PADDING) != 0 {
            return Err(InvalidHeader::ChecksumBodyPadding);
        }
        if self.u128_at(offset::NONCE_RESERVED) != 0 {
            return Err(InvalidHeader::NonceReserved);
        }
        let size = self.size();
        if (size as usize) < HEADER_SIZE || size as usize > MESSAGE_SIZE_MAX {
            return Err(InvalidHeader::Size { size });
        }
        if self.u32_at(offset::EPOCH) != 0 {
            return Err(InvalidHeader::Epoch);
        }
        if !self.zero_from(offset::RESERVED_FRAME, offset::RESERVED_FRAME_SIZE) {
            return Err(InvalidHeader::ReservedFrame);
        }
        let protocol = self.u16_at(offset::PROTOCOL);
        if protocol != PROTOCOL {
            return Err(InvalidHeader::Protocol { protocol });
        }
        if self.release().0 == 0 {
            return Err(InvalidHeader::ReleaseZero);
        }
        Ok(())
    }

    /// A command whose message never has a body (ping, pong, eviction).
    fn validate_body_empty(&self) -> Result<(), InvalidHeader> {
        let size = self.size();
        if size as usize != HEADER_SIZE {
            return Err(InvalidHeader::BodyNotEmpty { size });
        }
        Ok(())
    }

    fn parse_request(&self) -> Result<RequestHeader, InvalidHeader> {
        let request = RequestHeader {
            checksum: self.checksum(),
            checksum_body: self.checksum_body(),
            cluster: self.cluster(),
            size: self.size(),
            view: self.view(),
            release: self.release(),
            replica: self.replica(),
            parent: self.u128_at(offset::REQUEST_PARENT),
            client: self.u128_at(offset::REQUEST_CLIENT),
            session: self.u64_at(offset::REQUEST_SESSION),
            timestamp: self.u64_at(offset::REQUEST_TIMESTAMP),
            request: self.u32_at(offset::REQUEST_REQUEST),
            operation: self.u8_at(offset::REQUEST_OPERATION),
            previous_request_latency: self.u32_at(offset::REQUEST_LATENCY),
        };
        if self.u128_at(offset::REQUEST_PARENT_PADDING) != 0 {
            return Err(InvalidHeader::ParentPadding);
        }
        if !self.zero_from(
            offset::REQUEST_LATENCY_PADDING,
            offset::REQUEST_LATENCY_PADDING_SIZE,
        ) || !self.zero_from(
            offset::REQUEST_RESERVED,
            HEADER_SIZE - offset::REQUEST_RESERVED,
        ) {
            return Err(InvalidHeader::Reserved);
        }
        if request.client == 0 {
            return Err(InvalidHeader::ClientZero);
        }
        request.validate_operation()?;
        Ok(request)
    }

    fn parse_reply(&self) -> Result<ReplyHeader, InvalidHeader> {
        let reply = ReplyHeader {
            checksum: self.checksum(),
            checksum_body: self.checksum_body(),
            cluster: self.cluster(),
            size: self.size(),
            view: self.view(),
            release: self.release(),
            replica: self.replica(),
            request_checksum: self.u128_at(offset::REPLY_REQUEST_CHECKSUM),
            context: self.u128_at(offset::REPLY_CONTEXT),
            client: self.u128_at(offset::REPLY_CLIENT),
            op: self.u64_at(offset::REPLY_OP),
            commit: self.u64_at(offset::REPLY_COMMIT),
            timestamp: self.u64_at(offset::REPLY_TIMESTAMP),
            request: self.u32_at(offset::REPLY_REQUEST),
            operation: self.u8_at(offset::REPLY_OPERATION),
        };
        if self.u128_at(offset::REPLY_REQUEST_CHECKSUM_PADDING) != 0 {
            return Err(InvalidHeader::RequestChecksumPadding);
        }
        if self.u128_at(offset::REPLY_CONTEXT_PADDING) != 0 {
            return Err(InvalidHeader::ContextPadding);
        }
        if !self.zero_from(offset::REPLY_RESERVED, HEADER_SIZE - offset::REPLY_RESERVED) {
            return Err(InvalidHeader::Reserved);
        }
        if reply.client == 0 {
            return Err(InvalidHeader::ClientZero);
        }
        if reply.op != reply.commit {
            return Err(InvalidHeader::OpNotCommit {
                op: reply.op,
                commit: reply.commit,
            });
        }
        if reply.commit == 0 {
            return Err(InvalidHeader::CommitZero);
        }
        if reply.timestamp == 0 {
            return Err(InvalidHeader::TimestampZero);
        }
        if reply.operation == Operation::Register.as_u8() {
            let size_expected = HEADER_SIZE + REGISTER_RESULT_SIZE;
            if reply.size as usize != size_expected {
                return Err(InvalidHeader::RegisterReplySize { size: reply.size });
            }
            if reply.request != 0 {
                return Err(InvalidHeader::RegisterRequest);
            }
        } else if reply.request == 0 {
            return Err(InvalidHeader::RequestZero);
        }
        Ok(reply)
    }

    fn parse_ping_client(&self) -> Result<PingClientHeader, InvalidHeader> {
        self.validate_body_empty()?;
        if !self.zero_from(offset::PING_RESERVED, HEADER_SIZE - offset::PING_RESERVED) {
            return Err(InvalidHeader::Reserved);
        }
        let ping = PingClientHeader {
            cluster: self.cluster(),
            view: self.view(),
            release: self.release(),
            client: self.u128_at(offset::PING_CLIENT),
            ping_timestamp_monotonic: self.u64_at(offset::PING_TIMESTAMP_MONOTONIC),
            session: self.u64_at(offset::PING_SESSION),
        };
        if ping.client == 0 {
            return Err(InvalidHeader::ClientZero);
        }
        Ok(ping)
    }

    fn parse_pong_client(&self) -> Result<PongClientHeader, InvalidHeader> {
        self.validate_body_empty()?;
        if !self.zero_from(offset::PONG_RESERVED, HEADER_SIZE - offset::PONG_RESERVED) {
            return Err(InvalidHeader::Reserved);
        }
        Ok(PongClientHeader {
            cluster: self.cluster(),
            view: self.view(),
            release: self.release(),
            ping_timestamp_monotonic: self.u64_at(offset::PONG_TIMESTAMP_MONOTONIC),
        })
    }

    fn parse_eviction(&self) -> Result<EvictionHeader, InvalidHeader> {
        self.validate_body_empty()?;
        if !self.zero_from(
            offset::EVICTION_RESERVED,
            offset::EVICTION_REASON - offset::EVICTION_RESERVED,
        ) {
            return Err(InvalidHeader::Reserved);
        }
        let client = self.u128_at(offset::EVICTION_CLIENT);
        if client == 0 {
            return Err(InvalidHeader::ClientZero);
        }
        let reason_byte = self.u8_at(offset::EVICTION_REASON);
        let reason = EvictionReason::from_u8(reason_byte).ok_or(InvalidHeader::EvictionReason {
            reason: reason_byte,
        })?;
        Ok(EvictionHeader {
            cluster: self.cluster(),
            view: self.view(),
            release: self.release(),
            client,
            reason,
        })
    }
}

/// A header that passed the validity rules, by command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParsedHeader {
    /// A valid `request`.
    Request(RequestHeader),
    /// A valid `reply`.
    Reply(ReplyHeader),
    /// A valid `ping_client`.
    PingClient(PingClientHeader),
    /// A valid `pong_client`.
    PongClient(PongClientHeader),
    /// A valid `eviction`.
    Eviction(EvictionHeader),
}

/// `request` (command 5), client → server (spec §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// The header's `checksum`; identifies the message (a resend has the same).
    pub checksum: u128,
    /// The body's checksum.
    pub checksum_body: u128,
    /// The cluster id.
    pub cluster: u128,
    /// Message size in bytes, header included.
    pub size: u32,
    /// The highest view the client has seen (0 before its first reply or pong).
    pub view: u32,
    /// The client's release.
    pub release: Release,
    /// 0 for every request but register (checked).
    pub replica: u8,
    /// The `context` of the reply to the previous request; 0 for register. Chains requests so that
    /// a reply to an older request cannot be mistaken for the current one (spec §4.4).
    pub parent: u128,
    /// The client's id, chosen at random by the client; never 0.
    pub client: u128,
    /// The session number from the register reply; 0 for register.
    pub session: u64,
    /// 0 from every official client; the server drops a request with any other value.
    pub timestamp: u64,
    /// The request number: 0 for register, then 1, 2, 3 …
    pub request: u32,
    /// The wire byte: values that are no [`Operation`] still pass the header rules when ≥ 128
    /// and are then evicted by the session rules (spec §4.5 step 5).
    pub operation: u8,
    /// Microseconds the previous request took (0.17 clients); informational only.
    pub previous_request_latency: u32,
}

impl RequestHeader {
    /// Rules that depend on the operation (spec §3.1).
    fn validate_operation(&self) -> Result<(), InvalidHeader> {
        let invalid = InvalidHeader::Operation {
            operation: self.operation,
        };
        let Some(operation) = Operation::from_u8(self.operation) else {
            // 148–255 are left to the session rules (eviction); 7–127 are no operation at all.
            if self.operation >= Operation::STATE_MACHINE_FIRST {
                return self.validate_session_request();
            }
            return Err(invalid);
        };
        match operation {
            Operation::Register => self.validate_register(),
            // Pulse and upgrade require client = 0, which no client header has (checked
            // before); reserved and root are never requests.
            Operation::Reserved | Operation::Root | Operation::VsrPulse | Operation::Upgrade => {
                Err(invalid)
            }
            Operation::Noop => {
                if self.size as usize != HEADER_SIZE {
                    return Err(InvalidHeader::NoopSize { size: self.size });
                }
                self.validate_session_request()
            }
            Operation::Reconfigure
            | Operation::Pulse
            | Operation::DeprecatedCreateAccountsUnbatched
            | Operation::DeprecatedCreateTransfersUnbatched
            | Operation::DeprecatedLookupAccountsUnbatched
            | Operation::DeprecatedLookupTransfersUnbatched
            | Operation::DeprecatedGetAccountTransfersUnbatched
            | Operation::DeprecatedGetAccountBalancesUnbatched
            | Operation::DeprecatedQueryAccountsUnbatched
            | Operation::DeprecatedQueryTransfersUnbatched
            | Operation::GetChangeEvents
            | Operation::DeprecatedCreateAccountsSparse
            | Operation::DeprecatedCreateTransfersSparse
            | Operation::LookupAccounts
            | Operation::LookupTransfers
            | Operation::GetAccountTransfers
            | Operation::GetAccountBalances
            | Operation::QueryAccounts
            | Operation::QueryTransfers
            | Operation::CreateAccounts
            | Operation::CreateTransfers => self.validate_session_request(),
        }
    }

    fn validate_register(&self) -> Result<(), InvalidHeader> {
        if self.parent != 0 {
            return Err(InvalidHeader::RegisterParent);
        }
        if self.session != 0 {
            return Err(InvalidHeader::RegisterSession);
        }
        if self.request != 0 {
            return Err(InvalidHeader::RegisterRequest);
        }
        let size = self.size as usize;
        if size != HEADER_SIZE && size != HEADER_SIZE + REGISTER_REQUEST_SIZE {
            return Err(InvalidHeader::RegisterSize { size: self.size });
        }
        Ok(())
    }

    /// Every request of an established session: anything but register.
    fn validate_session_request(&self) -> Result<(), InvalidHeader> {
        if self.replica != 0 {
            return Err(InvalidHeader::Replica {
                replica: self.replica,
            });
        }
        if self.session == 0 {
            return Err(InvalidHeader::SessionZero);
        }
        if self.request == 0 {
            return Err(InvalidHeader::RequestZero);
        }
        Ok(())
    }

    /// The fields a sender chooses; encoding them with the same body gives the same bytes.
    pub fn params(&self) -> RequestParams {
        RequestParams {
            cluster: self.cluster,
            view: self.view,
            release: self.release,
            parent: self.parent,
            client: self.client,
            session: self.session,
            timestamp: self.timestamp,
            request: self.request,
            operation: self.operation,
            previous_request_latency: self.previous_request_latency,
        }
    }
}

/// `reply` (command 8), server → client (spec §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The header's `checksum`; identifies the message (a resend has the same).
    pub checksum: u128,
    /// The body's checksum.
    pub checksum_body: u128,
    /// The cluster id.
    pub cluster: u128,
    /// Message size in bytes, header included.
    pub size: u32,
    /// The server's view.
    pub view: u32,
    /// The release of the request answered.
    pub release: Release,
    /// The replying replica; 0.
    pub replica: u8,
    /// The `checksum` of the request answered.
    pub request_checksum: u128,
    /// This reply's checksum as computed with `context` zero; the next request's `parent`.
    pub context: u128,
    /// The client's id, from the request.
    pub client: u128,
    /// The op number the server assigned the request (global, increasing).
    pub op: u64,
    /// Equal to `op` (checked).
    pub commit: u64,
    /// The op's timestamp, in nanoseconds; never 0.
    pub timestamp: u64,
    /// The request number answered.
    pub request: u32,
    /// The operation answered, as its wire byte.
    pub operation: u8,
}

impl ReplyHeader {
    /// The fields a sender chooses; encoding them with the same body gives the same bytes.
    pub fn params(&self) -> ReplyParams {
        ReplyParams {
            cluster: self.cluster,
            view: self.view,
            release: self.release,
            request_checksum: self.request_checksum,
            client: self.client,
            op: self.op,
            timestamp: self.timestamp,
            request: self.request,
            operation: self.operation,
        }
    }
}

/// `ping_client` (command 3), client → server, no body (spec §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingClientHeader {
    /// The cluster id.
    pub cluster: u128,
    /// Always 0 from official clients.
    pub view: u32,
    /// The client's release.
    pub release: Release,
    /// The client's id; never 0.
    pub client: u128,
    /// The client's monotonic clock in nanoseconds; the pong echoes it.
    pub ping_timestamp_monotonic: u64,
    /// 0 before registration and for clients older than 0.17.6.
    pub session: u64,
}

/// `pong_client` (command 4), server → client, no body (spec §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PongClientHeader {
    /// The cluster id.
    pub cluster: u128,
    /// The server's view; the client adopts it if higher than what it has seen.
    pub view: u32,
    /// The server's release.
    pub release: Release,
    /// Copied from the ping.
    pub ping_timestamp_monotonic: u64,
}

/// `eviction` (command 18), server → client, no body (spec §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictionHeader {
    /// The cluster id.
    pub cluster: u128,
    /// The server's view; a client ignores evictions with a lower view than it has seen.
    pub view: u32,
    /// The server's release.
    pub release: Release,
    /// The evicted client's id; other clients ignore the message.
    pub client: u128,
    /// Why the session ended.
    pub reason: EvictionReason,
}

/// What a client chooses for a request (spec §3.1); checksums and size are derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestParams {
    /// The cluster id.
    pub cluster: u128,
    /// The highest view the client has seen.
    pub view: u32,
    /// The client's release; must stay the same for the whole session.
    pub release: Release,
    /// The previous reply's `context`; 0 for register.
    pub parent: u128,
    /// The client's id; never 0.
    pub client: u128,
    /// The session number; 0 for register.
    pub session: u64,
    /// 0 in every request of an official client; the server drops others (spec §4.5 step 10).
    pub timestamp: u64,
    /// The request number: 0 for register, then one more per request.
    pub request: u32,
    /// The operation's wire byte (a raw byte, so that tests can send non-operations).
    pub operation: u8,
    /// Microseconds the previous request took; informational only.
    pub previous_request_latency: u32,
}

/// What a server chooses for a reply (spec §3.2); checksums, size, `commit` (= `op`) and
/// `context` are derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyParams {
    /// The cluster id.
    pub cluster: u128,
    /// The server's view.
    pub view: u32,
    /// Must be the release of the request answered: the client aborts otherwise (spec §2.7).
    pub release: Release,
    /// The `checksum` of the request answered.
    pub request_checksum: u128,
    /// The client's id, from the request.
    pub client: u128,
    /// The op number assigned to the request; also written as `commit`.
    pub op: u64,
    /// The op's timestamp, in nanoseconds; never 0.
    pub timestamp: u64,
    /// The request number, from the request.
    pub request: u32,
    /// The operation, from the request.
    pub operation: u8,
}

fn message(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER_SIZE + body.len());
    message.extend_from_slice(header.as_bytes());
    message.extend_from_slice(body);
    message
}

/// A whole request message. Does not enforce the validity rules, so that tests and probes can
/// build invalid requests; [`Header::parse`] tells whether the result is valid.
pub fn encode_request(params: &RequestParams, body: &[u8]) -> Vec<u8> {
    let mut header = Header::frame(
        params.cluster,
        HEADER_SIZE + body.len(),
        params.view,
        params.release,
        Command::Request,
    );
    header.put_u128(offset::REQUEST_PARENT, params.parent);
    header.put_u128(offset::REQUEST_CLIENT, params.client);
    header.put_u64(offset::REQUEST_SESSION, params.session);
    header.put_u64(offset::REQUEST_TIMESTAMP, params.timestamp);
    header.put_u32(offset::REQUEST_REQUEST, params.request);
    header.put_u8(offset::REQUEST_OPERATION, params.operation);
    header.put_u32(offset::REQUEST_LATENCY, params.previous_request_latency);
    header.set_checksums(body);
    message(&header, body)
}

/// A whole reply message, with `commit = op` and the `context` rule of spec §3.2: `context` is
/// the checksum of the header as it is with `context = 0` and every other field final, then
/// `checksum` is computed over the header with `context` in place.
pub fn encode_reply(params: &ReplyParams, body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= MESSAGE_BODY_SIZE_MAX);
    assert_ne!(params.client, 0);
    assert_ne!(params.op, 0);
    assert_ne!(params.timestamp, 0);
    let register = params.operation == Operation::Register.as_u8();
    assert_eq!(register, params.request == 0);

    let mut header = Header::frame(
        params.cluster,
        HEADER_SIZE + body.len(),
        params.view,
        params.release,
        Command::Reply,
    );
    header.put_u128(offset::REPLY_REQUEST_CHECKSUM, params.request_checksum);
    header.put_u128(offset::REPLY_CLIENT, params.client);
    header.put_u64(offset::REPLY_OP, params.op);
    header.put_u64(offset::REPLY_COMMIT, params.op);
    header.put_u64(offset::REPLY_TIMESTAMP, params.timestamp);
    header.put_u32(offset::REPLY_REQUEST, params.request);
    header.put_u8(offset::REPLY_OPERATION, params.operation);
    header.put_u128(offset::CHECKSUM_BODY, checksum(body));
    let context = header.checksum_calculate();
    header.put_u128(offset::REPLY_CONTEXT, context);
    header.put_u128(offset::CHECKSUM, header.checksum_calculate());
    debug_assert!(matches!(header.parse(), Ok(ParsedHeader::Reply(_))));
    message(&header, body)
}

/// The reply to `register`: body `RegisterResult { batch_size_limit, reserved: 0 }` (spec §4.2).
/// The session number the client adopts is `params.op`.
pub fn encode_register_reply(params: &ReplyParams, batch_size_limit: u32) -> Vec<u8> {
    assert_eq!(params.operation, Operation::Register.as_u8());
    assert_eq!(params.request, 0);
    // The client aborts on 0 or on more than it can ever send (spec §4.2).
    assert!(batch_size_limit > 0);
    assert!(batch_size_limit <= BATCH_SIZE_LIMIT_MAX);
    let mut body = [0u8; REGISTER_RESULT_SIZE];
    body[0..4].copy_from_slice(&batch_size_limit.to_le_bytes());
    encode_reply(params, &body)
}

/// A `ping_client` message (no body).
pub fn encode_ping_client(ping: &PingClientHeader) -> [u8; HEADER_SIZE] {
    let mut header = Header::frame(
        ping.cluster,
        HEADER_SIZE,
        ping.view,
        ping.release,
        Command::PingClient,
    );
    header.put_u128(offset::PING_CLIENT, ping.client);
    header.put_u64(
        offset::PING_TIMESTAMP_MONOTONIC,
        ping.ping_timestamp_monotonic,
    );
    header.put_u64(offset::PING_SESSION, ping.session);
    header.set_checksums(&[]);
    debug_assert_eq!(header.checksum_body(), CHECKSUM_EMPTY);
    header.bytes
}

/// A `pong_client` message (no body): size exactly 256, replica 0, the server's release.
pub fn encode_pong_client(pong: &PongClientHeader) -> [u8; HEADER_SIZE] {
    let mut header = Header::frame(
        pong.cluster,
        HEADER_SIZE,
        pong.view,
        pong.release,
        Command::PongClient,
    );
    header.put_u64(
        offset::PONG_TIMESTAMP_MONOTONIC,
        pong.ping_timestamp_monotonic,
    );
    header.set_checksums(&[]);
    debug_assert!(matches!(header.parse(), Ok(ParsedHeader::PongClient(_))));
    header.bytes
}

/// An `eviction` message (no body): the reason in the last header byte.
pub fn encode_eviction(eviction: &EvictionHeader) -> [u8; HEADER_SIZE] {
    assert_ne!(eviction.client, 0);
    let mut header = Header::frame(
        eviction.cluster,
        HEADER_SIZE,
        eviction.view,
        eviction.release,
        Command::Eviction,
    );
    header.put_u128(offset::EVICTION_CLIENT, eviction.client);
    header.put_u8(offset::EVICTION_REASON, eviction.reason.as_u8());
    header.set_checksums(&[]);
    debug_assert!(matches!(header.parse(), Ok(ParsedHeader::Eviction(_))));
    header.bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_params() -> RequestParams {
        RequestParams {
            cluster: 0,
            view: 1,
            release: Release::new(0, 17, 9),
            parent: 0xAB,
            client: 7,
            session: 2,
            timestamp: 0,
            request: 1,
            operation: Operation::CreateAccounts.as_u8(),
            previous_request_latency: 10,
        }
    }

    fn parse_request(message: &[u8]) -> Result<RequestHeader, InvalidHeader> {
        let header = Header::from_prefix(message).expect("encoders write whole headers");
        match header.parse()? {
            ParsedHeader::Request(request) => Ok(request),
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn request_round_trips_and_checksums() {
        let params = request_params();
        let body = [5u8; 128];
        let message = encode_request(&params, &body);
        assert_eq!(message.len(), 384);
        let header = Header::from_prefix(&message).expect("384 bytes");
        assert!(header.checksum_valid());
        assert_eq!(header.checksum_body(), checksum(&body));
        let request = parse_request(&message).expect("valid");
        assert_eq!(request.params(), params);
        assert_eq!(request.size, 384);
        assert_eq!(request.checksum, header.checksum());
    }

    #[test]
    fn request_rules() {
        let base = request_params();
        let cases: [(RequestParams, usize, InvalidHeader); 10] = [
            (
                RequestParams { client: 0, ..base },
                0,
                InvalidHeader::ClientZero,
            ),
            (
                RequestParams { session: 0, ..base },
                0,
                InvalidHeader::SessionZero,
            ),
            (
                RequestParams { request: 0, ..base },
                0,
                InvalidHeader::RequestZero,
            ),
            (
                RequestParams {
                    operation: 0,
                    ..base
                },
                0,
                InvalidHeader::Operation { operation: 0 },
            ),
            (
                RequestParams {
                    operation: 1,
                    ..base
                },
                0,
                InvalidHeader::Operation { operation: 1 },
            ),
            (
                RequestParams {
                    operation: 4,
                    ..base
                },
                0,
                InvalidHeader::Operation { operation: 4 },
            ),
            (
                RequestParams {
                    operation: 5,
                    ..base
                },
                0,
                InvalidHeader::Operation { operation: 5 },
            ),
            (
                RequestParams {
                    operation: 127,
                    ..base
                },
                0,
                InvalidHeader::Operation { operation: 127 },
            ),
            (
                RequestParams {
                    operation: 6,
                    ..base
                },
                16,
                InvalidHeader::NoopSize { size: 272 },
            ),
            (
                RequestParams {
                    operation: 2,
                    session: 0,
                    request: 0,
                    ..base
                },
                0,
                InvalidHeader::RegisterParent,
            ),
        ];
        for (params, body_size, expected) in cases {
            let message = encode_request(&params, &vec![0; body_size]);
            assert_eq!(parse_request(&message), Err(expected), "{params:?}");
        }
        let register = RequestParams {
            operation: 2,
            session: 0,
            request: 0,
            parent: 0,
            ..base
        };
        assert!(parse_request(&encode_request(&register, &[0; 256])).is_ok());
        assert!(parse_request(&encode_request(&register, &[])).is_ok());
        assert_eq!(
            parse_request(&encode_request(&register, &[0; 128])),
            Err(InvalidHeader::RegisterSize { size: 384 })
        );
        assert_eq!(
            parse_request(&encode_request(
                &RequestParams {
                    session: 1,
                    ..register
                },
                &[]
            )),
            Err(InvalidHeader::RegisterSession)
        );
        assert_eq!(
            parse_request(&encode_request(
                &RequestParams {
                    request: 1,
                    ..register
                },
                &[]
            )),
            Err(InvalidHeader::RegisterRequest)
        );
        // Unknown state-machine operations pass the header rules; the session rules evict.
        assert!(parse_request(&encode_request(
            &RequestParams {
                operation: 150,
                ..base
            },
            &[]
        ))
        .is_ok());
        assert!(parse_request(&encode_request(
            &RequestParams {
                operation: 3,
                ..base
            },
            &[]
        ))
        .is_ok());
    }

    /// Each frame rule, by corrupting one byte of a valid request and re-sealing the checksum.
    #[test]
    fn frame_rules() {
        let message = encode_request(&request_params(), &[]);
        let cases: [(usize, InvalidHeader); 10] = [
            (offset::CHECKSUM_PADDING, InvalidHeader::ChecksumPadding),
            (
                offset::CHECKSUM_BODY_PADDING + 15,
                InvalidHeader::ChecksumBodyPadding,
            ),
            (offset::NONCE_RESERVED, InvalidHeader::NonceReserved),
            (offset::EPOCH, InvalidHeader::Epoch),
            (offset::RESERVED_FRAME + 11, InvalidHeader::ReservedFrame),
            (offset::PROTOCOL, InvalidHeader::Protocol { protocol: 1 }),
            (offset::REPLICA, InvalidHeader::Replica { replica: 1 }),
            (offset::REQUEST_PARENT_PADDING, InvalidHeader::ParentPadding),
            (offset::REQUEST_LATENCY_PADDING, InvalidHeader::Reserved),
            (HEADER_SIZE - 1, InvalidHeader::Reserved),
        ];
        for (at, expected) in cases {
            let mut header = Header::from_prefix(&message).expect("256 bytes");
            header.bytes[at] = 1;
            header.put_u128(offset::CHECKSUM, header.checksum_calculate());
            assert_eq!(header.parse(), Err(expected), "byte {at}");
        }
        let mut header = Header::from_prefix(&message).expect("256 bytes");
        header.put_u32(offset::RELEASE, 0);
        assert_eq!(header.parse(), Err(InvalidHeader::ReleaseZero));
        header.put_u8(offset::COMMAND, 25);
        header.put_u32(offset::RELEASE, 1);
        assert_eq!(
            header.parse(),
            Err(InvalidHeader::CommandUnknown { command: 25 })
        );
        header.put_u8(offset::COMMAND, Command::Prepare as u8);
        assert_eq!(
            header.parse(),
            Err(InvalidHeader::CommandNotClientProtocol {
                command: Command::Prepare
            })
        );
    }

    #[test]
    fn reply_context_is_checksum_with_context_zero() {
        let params = ReplyParams {
            cluster: 9,
            view: 3,
            release: Release::new(0, 17, 9),
            request_checksum: 0x1234,
            client: 77,
            op: 12,
            timestamp: 99,
            request: 4,
            operation: Operation::LookupAccounts.as_u8(),
        };
        let message = encode_reply(&params, &[1, 2, 3]);
        let header = Header::from_prefix(&message).expect("259 bytes");
        let reply = match header.parse() {
            Ok(ParsedHeader::Reply(reply)) => reply,
            other => panic!("{other:?}"),
        };
        assert_eq!(reply.params(), params);
        assert_eq!(reply.commit, 12);
        let mut zeroed = header.clone();
        zeroed.put_u128(offset::REPLY_CONTEXT, 0);
        assert_eq!(reply.context, zeroed.checksum_calculate());
        assert!(header.checksum_valid());
    }

    #[test]
    fn reply_rules() {
        let params = ReplyParams {
            cluster: 0,
            view: 0,
            release: Release(1),
            request_checksum: 0,
            client: 5,
            op: 3,
            timestamp: 3,
            request: 1,
            operation: Operation::QueryAccounts.as_u8(),
        };
        let message = encode_reply(&params, &[]);
        let parse = |mutate: &dyn Fn(&mut Header)| {
            let mut header = Header::from_prefix(&message).expect("256 bytes");
            mutate(&mut header);
            header.parse().map(|_| ())
        };
        assert_eq!(parse(&|_| {}), Ok(()));
        assert_eq!(
            parse(&|h| h.put_u64(offset::REPLY_COMMIT, 4)),
            Err(InvalidHeader::OpNotCommit { op: 3, commit: 4 })
        );
        assert_eq!(
            parse(&|h| h.put_u64(offset::REPLY_TIMESTAMP, 0)),
            Err(InvalidHeader::TimestampZero)
        );
        assert_eq!(
            parse(&|h| h.put_u32(offset::REPLY_REQUEST, 0)),
            Err(InvalidHeader::RequestZero)
        );
        assert_eq!(
            parse(&|h| h.put_u128(offset::REPLY_CLIENT, 0)),
            Err(InvalidHeader::ClientZero)
        );
        assert_eq!(
            parse(&|h| h.put_u8(offset::REPLY_CONTEXT_PADDING, 1)),
            Err(InvalidHeader::ContextPadding)
        );
        assert_eq!(
            parse(&|h| h.put_u8(offset::REPLY_REQUEST_CHECKSUM_PADDING, 1)),
            Err(InvalidHeader::RequestChecksumPadding)
        );
        assert_eq!(
            parse(&|h| {
                h.put_u8(offset::REPLY_OPERATION, 2);
                h.put_u32(offset::REPLY_REQUEST, 0);
            }),
            Err(InvalidHeader::RegisterReplySize { size: 256 })
        );
    }

    #[test]
    fn bodyless_commands_round_trip() {
        let ping = PingClientHeader {
            cluster: 1,
            view: 0,
            release: Release::new(0, 17, 9),
            client: 3,
            ping_timestamp_monotonic: 44,
            session: 12,
        };
        let pong = PongClientHeader {
            cluster: 1,
            view: 2,
            release: Release::new(0, 17, 9),
            ping_timestamp_monotonic: 44,
        };
        let eviction = EvictionHeader {
            cluster: 1,
            view: 2,
            release: Release::new(0, 17, 9),
            client: 3,
            reason: EvictionReason::SessionTooLow,
        };
        assert_eq!(
            Header::from_bytes(encode_ping_client(&ping)).parse(),
            Ok(ParsedHeader::PingClient(ping))
        );
        assert_eq!(
            Header::from_bytes(encode_pong_client(&pong)).parse(),
            Ok(ParsedHeader::PongClient(pong))
        );
        let mut header = Header::from_bytes(encode_eviction(&eviction));
        assert_eq!(header.parse(), Ok(ParsedHeader::Eviction(eviction)));
        header.put_u8(offset::EVICTION_REASON, 9);
        assert_eq!(
            header.parse(),
            Err(InvalidHeader::EvictionReason { reason: 9 })
        );
        header.put_u8(offset::EVICTION_REASON, 0);
        assert_eq!(
            header.parse(),
            Err(InvalidHeader::EvictionReason { reason: 0 })
        );
        header.put_u32(offset::SIZE, 257);
        assert_eq!(
            header.parse(),
            Err(InvalidHeader::BodyNotEmpty { size: 257 })
        );
    }
}
