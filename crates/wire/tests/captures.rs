//! The codec and the session table against real traffic between the official client 0.17.9
//! and a real TigerBeetle (`shared/tools/tbwire/captures`, spec §7 and §10).

mod common;

use std::collections::{BTreeMap, VecDeque};

use common::{examples, read_capture_file, Capture, Direction, Frame};
use tally_checksum::checksum;
use tally_wire::{
    decode_multi_batch, encode_eviction, encode_ping_client, encode_pong_client,
    encode_register_reply, encode_reply, encode_request, validate_request_body, Command,
    DropReason, EvictionHeader, EvictionReason, FrameError, FrameReader, Header, MultiBatchEncoder,
    Operation, ParsedHeader, PingDecision, PongClientHeader, Release, ReplyParams, RequestDecision,
    RequestHeader, SessionConfig, SessionTable, HEADER_SIZE, MESSAGE_BODY_SIZE_MAX,
    MESSAGE_SIZE_MAX, REGISTER_REQUEST_SIZE, REGISTER_RESULT_SIZE,
};

/// The release of the TigerBeetle development build the captures were taken from.
const TIGERBEETLE_RELEASE: Release = Release::new(65535, 0, 0);
/// TigerBeetle 0.17's `release_client_min` (spec §2.7).
const TIGERBEETLE_RELEASE_CLIENT_MIN: Release = Release::new(0, 16, 4);
/// Client id of the official-client session in spec §7.
const CLIENT_SPEC_7: u128 = 196263563538989801841547273792746691754;
/// TigerBeetle `--development`: 32 KiB requests.
const BATCH_SIZE_LIMIT_DEVELOPMENT: u32 = 32_512;

/// The one message in a single-frame capture, through the frame reader.
fn single_frame(bytes: &[u8]) -> (Header, Vec<u8>) {
    let mut reader = FrameReader::new(0);
    assert_eq!(reader.feed(bytes), bytes.len());
    let message = reader
        .next_message()
        .expect("verifies")
        .expect("whole message");
    let frame = (message.header.clone(), message.body.to_vec());
    assert_eq!(reader.next_message(), Ok(None));
    assert_eq!(reader.buffered_size(), 0);
    frame
}

/// Re-encodes a parsed message from the fields its sender chose.
fn encode(parsed: &ParsedHeader, body: &[u8]) -> Vec<u8> {
    match parsed {
        ParsedHeader::Request(request) => encode_request(&request.params(), body),
        ParsedHeader::Reply(reply) => encode_reply(&reply.params(), body),
        ParsedHeader::PingClient(ping) => encode_ping_client(ping).to_vec(),
        ParsedHeader::PongClient(pong) => encode_pong_client(pong).to_vec(),
        ParsedHeader::Eviction(eviction) => encode_eviction(eviction).to_vec(),
    }
}

/// Decodes a request or reply body by operation and re-encodes it batch by batch; the bytes
/// must come out the same. Returns the batch counts (empty for non-multi-batch bodies).
fn body_round_trip(operation: u8, body: &[u8], reply: bool) -> Vec<u16> {
    let operation = Operation::from_u8(operation).expect("captured operations are known");
    if operation == Operation::Register {
        let size_expected = if reply {
            REGISTER_RESULT_SIZE
        } else {
            REGISTER_REQUEST_SIZE
        };
        assert_eq!(body.len(), size_expected);
        assert!(body[4..].iter().all(|byte| *byte == 0));
        return Vec::new();
    }
    let element_size = if reply {
        operation.result_size()
    } else {
        operation.event_size()
    }
    .expect("state-machine operation");
    if !operation.is_multi_batch() {
        assert_eq!(body.len() % element_size, 0);
        return Vec::new();
    }
    let multi_batch = decode_multi_batch(body, element_size).expect("captured bodies decode");
    let mut encoder = MultiBatchEncoder::new(element_size);
    for batch in multi_batch.batches() {
        encoder.push_batch(batch).expect("fits");
    }
    assert_eq!(encoder.finish(), body);
    (0..multi_batch.batch_count())
        .map(|batch| multi_batch.count(batch))
        .collect()
}

#[test]
fn every_example_frame_verifies_parses_and_re_encodes_byte_for_byte() {
    let examples = examples();
    assert_eq!(examples.len(), 26, "the examples directory lists 26 frames");
    for (name, bytes) in &examples {
        let (header, body) = single_frame(bytes);
        let parsed = header
            .parse()
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(&encode(&parsed, &body), bytes, "{name}");
        match parsed {
            ParsedHeader::Request(request) => {
                assert!(name.contains("request"), "{name}");
                body_round_trip(request.operation, &body, false);
                let operation = Operation::from_u8(request.operation).expect("known");
                if operation != Operation::Register {
                    validate_request_body(operation, &body, BATCH_SIZE_LIMIT_DEVELOPMENT)
                        .unwrap_or_else(|error| panic!("{name}: {error}"));
                }
            }
            ParsedHeader::Reply(reply) => {
                assert!(name.contains("reply"), "{name}");
                body_round_trip(reply.operation, &body, true);
            }
            ParsedHeader::PingClient(_) => assert!(name.contains("ping_client"), "{name}"),
            ParsedHeader::PongClient(_) => assert!(name.contains("pong_client"), "{name}"),
            ParsedHeader::Eviction(eviction) => {
                let expected = format!("raw_eviction_reason{}.bin", eviction.reason.as_u8());
                assert_eq!(name, &expected);
            }
        }
    }
}

#[test]
fn register_reply_built_from_its_inputs_matches_tigerbeetle() {
    let (request, _) = single_frame(&read_capture_file("examples/register_request.bin"));
    assert_eq!(request.checksum(), 0xc48fe173165a8f69d8802ac29775df90);
    let reply = encode_register_reply(
        &ReplyParams {
            cluster: 0,
            view: 1,
            release: Release::new(0, 17, 9),
            request_checksum: request.checksum(),
            client: CLIENT_SPEC_7,
            op: 2,
            timestamp: 1795481541602871850,
            request: 0,
            operation: Operation::Register.as_u8(),
        },
        BATCH_SIZE_LIMIT_DEVELOPMENT,
    );
    assert_eq!(reply, read_capture_file("examples/register_reply.bin"));
    let Ok(ParsedHeader::Reply(header)) = Header::from_prefix(&reply).expect("320 bytes").parse()
    else {
        panic!("a reply");
    };
    assert_eq!(header.context, 0xab5e07ddfda3cf5e125e443132886f1d);
    assert_eq!(header.checksum, 0x2a5bacc90437a6abca4bdcb8ed53ffdd);
}

#[test]
fn create_accounts_reply_built_from_its_results_matches_tigerbeetle() {
    let (request, body) = single_frame(&read_capture_file("examples/create_accounts_request.bin"));
    // Spec §7.3: accounts 0x1001 and 0x1002, user_data_64 7, ledger 700, code 10, history.
    let accounts = decode_multi_batch(&body, 128).expect("decodes");
    assert_eq!(accounts.batch_count(), 1);
    for (index, account) in accounts.payload().chunks(128).enumerate() {
        assert_eq!(
            u128::from_le_bytes(account[0..16].try_into().expect("16")),
            0x1001 + index as u128
        );
        let user_data_64_expected = if index == 0 { 7 } else { 0 };
        assert_eq!(
            u64::from_le_bytes(account[96..104].try_into().expect("8")),
            user_data_64_expected
        );
        assert_eq!(
            u32::from_le_bytes(account[112..116].try_into().expect("4")),
            700
        );
        assert_eq!(
            u16::from_le_bytes(account[116..118].try_into().expect("2")),
            10
        );
        assert_eq!(
            u16::from_le_bytes(account[118..120].try_into().expect("2")),
            0x0008
        );
    }

    let mut results = Vec::new();
    for timestamp in [1795481541607215189u64, 1795481541607215190] {
        results.extend_from_slice(&timestamp.to_le_bytes());
        results.extend_from_slice(&u32::MAX.to_le_bytes()); // created
        results.extend_from_slice(&0u32.to_le_bytes());
    }
    let mut encoder = MultiBatchEncoder::new(16);
    encoder.push_batch(&results).expect("fits");
    let reply = encode_reply(
        &ReplyParams {
            cluster: 0,
            view: 1,
            release: Release::new(0, 17, 9),
            request_checksum: request.checksum(),
            client: CLIENT_SPEC_7,
            op: 3,
            timestamp: 1795481541607215190,
            request: 1,
            operation: Operation::CreateAccounts.as_u8(),
        },
        &encoder.finish(),
    );
    assert_eq!(
        reply,
        read_capture_file("examples/create_accounts_reply.bin")
    );
}

#[test]
fn pong_and_evictions_built_from_their_inputs_match_tigerbeetle() {
    let (ping, _) = single_frame(&read_capture_file("examples/ping_client.bin"));
    let Ok(ParsedHeader::PingClient(ping)) = ping.parse() else {
        panic!("a ping")
    };
    let pong = encode_pong_client(&PongClientHeader {
        cluster: 0,
        view: 1,
        release: TIGERBEETLE_RELEASE,
        ping_timestamp_monotonic: ping.ping_timestamp_monotonic,
    });
    assert_eq!(pong.to_vec(), read_capture_file("examples/pong_client.bin"));

    for reason_byte in 1..=8u8 {
        let captured = read_capture_file(&format!("examples/raw_eviction_reason{reason_byte}.bin"));
        let client = u128::from_le_bytes(captured[128..144].try_into().expect("16 bytes"));
        let eviction = encode_eviction(&EvictionHeader {
            cluster: 0,
            view: 1,
            release: TIGERBEETLE_RELEASE,
            client,
            reason: EvictionReason::from_u8(reason_byte).expect("1..=8"),
        });
        assert_eq!(eviction.to_vec(), captured, "reason {reason_byte}");
    }
}

#[test]
fn multi_batch_examples_have_the_spec_counts() {
    let cases: [(&str, bool, Vec<u16>); 6] = [
        ("create_transfers_multibatch_request.bin", false, vec![2; 5]),
        ("create_transfers_multibatch_reply.bin", true, vec![2; 5]),
        ("lookup_accounts_multibatch_request.bin", false, vec![2, 0]),
        ("lookup_accounts_multibatch_reply.bin", true, vec![2, 0]),
        ("query_accounts_request.bin", false, vec![1]),
        ("get_account_transfers_reply.bin", true, vec![1]),
    ];
    for (name, reply, counts) in cases {
        let (header, body) = single_frame(&read_capture_file(&format!("examples/{name}")));
        let operation = match header.parse().expect("valid") {
            ParsedHeader::Request(request) => request.operation,
            ParsedHeader::Reply(reply) => reply.operation,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(body_round_trip(operation, &body, reply), counts, "{name}");
    }
    let (_, body) = single_frame(&read_capture_file(
        "examples/lookup_accounts_multibatch_request.bin",
    ));
    assert_eq!(
        body[32..],
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0, 2, 0]
    );
}

/// All frames of a capture, every stream split by the frame reader segment by segment.
struct Streams {
    requests: Vec<Frame>,
    answers: BTreeMap<u32, VecDeque<Frame>>,
    frame_errors: BTreeMap<u32, FrameError>,
}

fn streams(capture: &Capture) -> Streams {
    let mut streams = Streams {
        requests: Vec::new(),
        answers: BTreeMap::new(),
        frame_errors: BTreeMap::new(),
    };
    for connection in capture.connections() {
        let inbound = capture.split(connection, Direction::ClientToServer, 0);
        if let Some(error) = inbound.error {
            streams.frame_errors.insert(connection, error);
        } else {
            assert_eq!(
                inbound.remainder_size, 0,
                "conn{connection}: whole messages only"
            );
        }
        streams.requests.extend(inbound.frames);
        let outbound = capture.split(connection, Direction::ServerToClient, 0);
        assert_eq!(
            outbound.error, None,
            "conn{connection}: TigerBeetle's frames verify"
        );
        assert_eq!(outbound.remainder_size, 0);
        streams.answers.insert(connection, outbound.frames.into());
    }
    // Frames of one connection keep their order (stable sort); connections interleave by time.
    streams.requests.sort_by(|a, b| {
        a.time
            .total_cmp(&b.time)
            .then(a.connection.cmp(&b.connection))
    });
    streams
}

#[test]
fn official_session_frames_chain_and_re_encode() {
    let capture = Capture::from_dir("official_vs_tb");
    assert_eq!(capture.connections(), vec![0, 1]);
    let mut frames_count = 0;
    for connection in capture.connections() {
        let requests = capture.split(connection, Direction::ClientToServer, 0);
        let answers = capture.split(connection, Direction::ServerToClient, 0);
        assert_eq!((requests.error, answers.error), (None, None));
        assert_eq!(
            requests.frames.len(),
            answers.frames.len(),
            "one answer per message"
        );
        frames_count += requests.frames.len() + answers.frames.len();
        let mut context_previous = None;
        for (inbound, outbound) in requests.frames.iter().zip(&answers.frames) {
            let inbound_parsed = inbound.header.parse().expect("valid");
            let outbound_parsed = outbound.header.parse().expect("valid");
            assert_eq!(encode(&inbound_parsed, inbound.body()), inbound.bytes);
            assert_eq!(encode(&outbound_parsed, outbound.body()), outbound.bytes);
            match (inbound_parsed, outbound_parsed) {
                (ParsedHeader::Request(request), ParsedHeader::Reply(reply)) => {
                    assert_eq!(reply.request_checksum, request.checksum);
                    assert_eq!(reply.release, request.release);
                    assert_eq!(reply.request, request.request);
                    assert_eq!(reply.operation, request.operation);
                    assert_eq!(reply.client, request.client);
                    if let Some(context) = context_previous {
                        assert_eq!(request.parent, context, "the hash chain");
                    }
                    context_previous = Some(reply.context);
                    body_round_trip(request.operation, inbound.body(), false);
                    body_round_trip(reply.operation, outbound.body(), true);
                }
                (ParsedHeader::PingClient(ping), ParsedHeader::PongClient(pong)) => {
                    assert_eq!(pong.ping_timestamp_monotonic, ping.ping_timestamp_monotonic);
                }
                other => panic!("unexpected pair {other:?}"),
            }
        }
    }
    assert_eq!(frames_count, 34, "spec §10: 34 frames");
}

/// What TigerBeetle did that Tally deliberately does differently (docs/wire.md).
#[derive(Debug, Default, PartialEq, Eq)]
struct Deviations {
    /// TigerBeetle executes a client's `noop`; Tally evicts it (spec §4.5 step 5).
    noop_executed: usize,
    /// Connections TigerBeetle closed unanswered because of its connection limit (spec §1.9).
    connection_limit: usize,
}

/// Tally's decisions, replayed over a capture, for the assertions of each test.
#[derive(Debug, Default)]
struct Replay {
    executed: usize,
    resent: usize,
    pongs: usize,
    drops: Vec<DropReason>,
    evictions: Vec<EvictionReason>,
    /// Messages failing the validity rules (dropped, connection kept).
    invalid: usize,
    /// Connections closed for carrying a second client id (spec §1.5).
    client_switches: usize,
    deviations: Deviations,
}

/// Tally's answer to one client message, before it is compared with TigerBeetle's.
enum Answer {
    Execute,
    Bytes(Vec<u8>),
    Silence,
}

/// Runs every client message of a TigerBeetle capture through [`SessionTable`] and checks that
/// Tally answers exactly what TigerBeetle answered, byte for byte: replies are taken from
/// TigerBeetle (Tally has no ledger here) and committed, resends must equal the stored reply,
/// and pongs and evictions are built here and compared. Drops must match silence.
fn replay(capture: &Capture, config: SessionConfig) -> (Replay, Streams) {
    let mut streams = streams(capture);
    let mut table = SessionTable::new(config);
    let mut replay = Replay::default();
    let mut commit_op = 0;
    let mut bound_clients: BTreeMap<u32, u128> = BTreeMap::new();
    let mut closed: Vec<u32> = Vec::new();
    let requests = std::mem::take(&mut streams.requests);
    for frame in &requests {
        let connection = frame.connection;
        if closed.contains(&connection) {
            continue;
        }
        let Ok(parsed) = frame.header.parse() else {
            replay.invalid += 1;
            continue;
        };
        let client = match parsed {
            ParsedHeader::Request(request) => request.client,
            ParsedHeader::PingClient(ping) => ping.client,
            other => panic!("conn{connection}: clients send requests and pings only: {other:?}"),
        };
        if *bound_clients.entry(connection).or_insert(client) != client {
            replay.client_switches += 1;
            closed.push(connection);
            continue;
        }
        let (answer, outcome) = decide(&table, &parsed, frame.body(), commit_op);
        if matches!(answer, Answer::Silence) {
            replay.record(outcome);
            continue;
        }
        if capture
            .stream(connection, Direction::ServerToClient)
            .is_empty()
        {
            // TigerBeetle accepted the connection and closed it at once: its connection limit.
            replay.deviations.connection_limit += 1;
            closed.push(connection);
            continue;
        }
        let answers = streams
            .answers
            .get_mut(&connection)
            .expect("both directions");
        let captured = answers
            .pop_front()
            .unwrap_or_else(|| panic!("conn{connection}: TigerBeetle did not answer {parsed:?}"));
        match (answer, parsed) {
            (Answer::Execute, ParsedHeader::Request(request)) => {
                let Ok(ParsedHeader::Reply(reply)) = captured.header.parse() else {
                    panic!("conn{connection}: TigerBeetle did not execute {request:?}");
                };
                assert_eq!(reply.request_checksum, request.checksum);
                commit(&mut table, &request, reply.op, captured.bytes);
                commit_op = reply.op;
                replay.record(outcome);
            }
            (Answer::Bytes(_), ParsedHeader::Request(request))
                if request.operation == Operation::Noop.as_u8()
                    && captured.header.command() == Some(Command::Reply) =>
            {
                let Ok(ParsedHeader::Reply(reply)) = captured.header.parse() else {
                    panic!("conn{connection}: a valid reply");
                };
                assert!(matches!(
                    outcome,
                    Outcome::Evicted(EvictionReason::InvalidRequestOperation)
                ));
                commit_op = reply.op;
                replay.deviations.noop_executed += 1;
            }
            (Answer::Bytes(bytes), _) => {
                assert_eq!(captured.bytes, bytes, "conn{connection}: {parsed:?}");
                replay.record(outcome);
            }
            (Answer::Execute | Answer::Silence, _) => unreachable!("pings are answered"),
        }
    }
    for (connection, answers) in &streams.answers {
        assert!(
            answers.is_empty(),
            "conn{connection}: TigerBeetle said more than Tally would: {:?}",
            answers.front().map(|frame| frame.header.parse())
        );
    }
    streams.requests = requests;
    (replay, streams)
}

/// What Tally decided for one message, counted once the answer is known to be comparable.
enum Outcome {
    Executed,
    Resent,
    Pong,
    Dropped(DropReason),
    Evicted(EvictionReason),
}

impl Replay {
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Executed => self.executed += 1,
            Outcome::Resent => self.resent += 1,
            Outcome::Pong => self.pongs += 1,
            Outcome::Dropped(reason) => self.drops.push(reason),
            Outcome::Evicted(reason) => self.evictions.push(reason),
        }
    }
}

/// The session table's decision for one valid client message.
fn decide(
    table: &SessionTable,
    parsed: &ParsedHeader,
    body: &[u8],
    commit_op: u64,
) -> (Answer, Outcome) {
    let config = table.config();
    let eviction = |client, reason| {
        let eviction = EvictionHeader {
            cluster: 0,
            view: config.view,
            release: config.release,
            client,
            reason,
        };
        (
            Answer::Bytes(encode_eviction(&eviction).to_vec()),
            Outcome::Evicted(reason),
        )
    };
    match parsed {
        ParsedHeader::Request(request) => match table.check_request(request, body) {
            RequestDecision::Execute => (Answer::Execute, Outcome::Executed),
            RequestDecision::ResendReply(bytes) => (Answer::Bytes(bytes.to_vec()), Outcome::Resent),
            RequestDecision::Drop(reason) => (Answer::Silence, Outcome::Dropped(reason)),
            RequestDecision::Evict(reason) => eviction(request.client, reason),
        },
        ParsedHeader::PingClient(ping) => match table.check_ping(ping, commit_op) {
            PingDecision::Pong => {
                let pong = PongClientHeader {
                    cluster: 0,
                    view: config.view,
                    release: config.release,
                    ping_timestamp_monotonic: ping.ping_timestamp_monotonic,
                };
                (
                    Answer::Bytes(encode_pong_client(&pong).to_vec()),
                    Outcome::Pong,
                )
            }
            PingDecision::Evict(reason) => eviction(ping.client, reason),
        },
        ParsedHeader::Reply(_) | ParsedHeader::PongClient(_) | ParsedHeader::Eviction(_) => {
            unreachable!("rejected by the caller")
        }
    }
}

/// Executes `request` as the server does: in flight, then committed with TigerBeetle's reply.
fn commit(table: &mut SessionTable, request: &RequestHeader, op: u64, reply: Vec<u8>) {
    table.begin_request(request);
    assert_eq!(table.in_flight_count(), 1);
    if request.operation == Operation::Register.as_u8() {
        table.commit_register(request.client, request.release, request.checksum, op, reply);
    } else {
        table.commit_request(request.client, request.request, request.checksum, op, reply);
    }
    assert_eq!(table.in_flight_count(), 0);
}

fn tigerbeetle_config(view: u32, batch_size_limit: u32) -> SessionConfig {
    SessionConfig {
        view,
        release: TIGERBEETLE_RELEASE,
        release_client_min: TIGERBEETLE_RELEASE_CLIENT_MIN,
        batch_size_limit,
        ..SessionConfig::default()
    }
}

#[test]
fn session_table_answers_the_official_session_as_tigerbeetle_did() {
    let capture = Capture::from_dir("official_vs_tb");
    let (replay, streams) = replay(
        &capture,
        tigerbeetle_config(1, BATCH_SIZE_LIMIT_DEVELOPMENT),
    );
    assert_eq!(streams.requests.len(), 17);
    assert_eq!(replay.executed, 16);
    assert_eq!(replay.pongs, 1);
    assert_eq!(
        replay.resent + replay.drops.len() + replay.evictions.len() + replay.invalid,
        0
    );
    assert_eq!(replay.deviations, Deviations::default());
}

/// `rawclient.py`'s probes (captures/raw_probes_results.txt): evictions for all eight reasons,
/// drops, duplicates, framing errors, 65 sessions and the connection limit.
#[test]
fn session_table_answers_the_raw_probes_as_tigerbeetle_did() {
    let capture = Capture::from_tar_gz("raw_probes_vs_tb.tar.gz");
    let (replay, streams) = replay(
        &capture,
        tigerbeetle_config(1, BATCH_SIZE_LIMIT_DEVELOPMENT),
    );

    // "ping_client cluster=1" and "bad checksum", in each of the two runs: closed unanswered.
    let frame_errors: Vec<FrameError> = streams.frame_errors.values().copied().collect();
    assert_eq!(
        frame_errors,
        vec![
            FrameError::Cluster { cluster: 1 },
            FrameError::HeaderChecksum,
            FrameError::Cluster { cluster: 1 },
            FrameError::HeaderChecksum,
        ]
    );
    // Run 2's ping with a reserved byte set: dropped, the connection kept.
    assert_eq!(replay.invalid, 1);
    // "...same connection, another client id: connection closed", in both runs.
    assert_eq!(replay.client_switches, 2);
    // Wrong parent, gap, view + 5, timestamp != 0.
    assert_eq!(
        replay.drops,
        vec![
            DropReason::ParentMismatch,
            DropReason::RequestAhead,
            DropReason::ViewAhead,
            DropReason::Timestamp,
        ]
    );
    let mut evictions = replay.evictions.clone();
    evictions.sort();
    evictions.dedup();
    assert_eq!(
        evictions.len(),
        8,
        "every eviction reason: {:?}",
        replay.evictions
    );
    // The oldest of 65 sessions got no_session, the second oldest was served (spec §4.9).
    assert_eq!(
        replay
            .evictions
            .iter()
            .filter(|reason| **reason == EvictionReason::NoSession)
            .count(),
        3
    );
    assert_eq!(
        replay.resent, 2,
        "duplicate register and duplicate request 1"
    );
    // 58 of the 66 simultaneous pings, and the 9th of the first registrations held open
    // (TigerBeetle --development accepts 8 client connections).
    let deviations = Deviations {
        noop_executed: 1,
        connection_limit: 59,
    };
    assert_eq!(replay.deviations, deviations);
    // The first ping; per framing run, the ping after the dropped or refused one, two pings
    // in one segment and one split across writes; the 8 connections TigerBeetle accepted.
    assert_eq!(replay.pongs, 1 + 2 * (1 + 2 + 1) + 8);
}

#[test]
fn session_table_answers_the_full_size_session_as_tigerbeetle_did() {
    let capture = Capture::from_tar_gz("official_fullsize_vs_tb.tar.gz");
    let (replay, streams) = replay(
        &capture,
        tigerbeetle_config(2, MESSAGE_BODY_SIZE_MAX as u32),
    );
    assert_eq!(replay.executed, 3);
    let sizes: Vec<usize> = streams
        .requests
        .iter()
        .map(|frame| frame.bytes.len())
        .collect();
    assert_eq!(sizes, vec![512, MESSAGE_SIZE_MAX, 131_296]);
    let create = &streams.requests[1];
    let Ok(ParsedHeader::Request(request)) = create.header.parse() else {
        panic!("request")
    };
    assert_eq!(
        body_round_trip(request.operation, create.body(), false),
        vec![8189]
    );
    // One more event would not fit the request: the client refuses it (spec §5.5).
    assert_eq!(
        tally_wire::event_max(Operation::CreateAccounts, MESSAGE_BODY_SIZE_MAX as u32),
        8189
    );
    assert_eq!(create.body().len() + HEADER_SIZE, MESSAGE_SIZE_MAX);
    assert_eq!(checksum(create.body()), create.header.checksum_body());
}
