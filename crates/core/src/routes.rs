//! Where the core sends each TigerBeetle client's replies: the newest open connection the
//! client spoke on (wire spec §1.5).
//!
//! A route exists only while its client has a session or a request executing, and only while
//! its connection is open. So the table is bounded by the session table (`clients_max` sessions
//! plus `in_flight_max` requests, 128 entries by default), however many client ids connect:
//! a ping, an evicted request or a closed connection leaves nothing behind. A client without a
//! route is answered on the connection its message came on, and a reply to a client whose
//! connection closed is dropped: the client resends, which the protocol makes safe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tally_wire::SessionTable;
use tokio::sync::mpsc;

/// A message for a connection's writer.
#[derive(Debug)]
pub struct Outbound {
    /// The bytes to write.
    pub message: Vec<u8>,
    /// For a reply to a request: when the core saw its record durable, so that the writer
    /// can count the reply stage (`tally_core_stage_duration_seconds{stage="reply"}`).
    pub durable: Option<Instant>,
}

/// Where to send a connection's outgoing messages.
#[derive(Clone)]
pub struct Connection {
    /// Unique per connection while the server runs.
    pub id: u64,
    /// The connection's writer.
    pub outbox: mpsc::Sender<Outbound>,
    /// How many clients the core routes replies to this connection: each has a session or a
    /// request executing. The listener spares a connection with any from its idle timeout and
    /// from eviction at the connection limit.
    pub routed_clients: Arc<AtomicUsize>,
}

impl Connection {
    /// A connection with nothing routed to it yet.
    pub fn new(id: u64, outbox: mpsc::Sender<Outbound>) -> Connection {
        Connection {
            id,
            outbox,
            routed_clients: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether the connection's writer is gone (the connection closed).
    fn closed(&self) -> bool {
        self.outbox.is_closed()
    }
}

/// A client's route, counted in its connection's `routed_clients` for as long as it exists:
/// whichever way a route leaves the table, the count follows.
struct Route {
    connection: Connection,
}

impl Route {
    fn new(connection: &Connection) -> Route {
        connection.routed_clients.fetch_add(1, Ordering::Relaxed);
        Route {
            connection: connection.clone(),
        }
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        let before = self
            .connection
            .routed_clients
            .fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "a route was counted when it was made");
    }
}

/// Each client's newest connection, for the clients the session table knows.
#[derive(Default)]
pub(crate) struct Routes {
    routes: HashMap<u128, Route>,
}

impl Routes {
    /// Records that `client` spoke on `connection`, if the client has a session or a request
    /// executing (decided after the session checks): a reply may later have to find it. Any
    /// other client is answered at once on `connection`, so it needs no route.
    pub(crate) fn update(
        &mut self,
        client: u128,
        connection: &Connection,
        sessions: &SessionTable,
    ) {
        if !known(client, sessions) || connection.closed() {
            return;
        }
        let current = self.routes.get(&client);
        if current.is_some_and(|route| route.connection.id == connection.id) {
            return;
        }
        self.routes.insert(client, Route::new(connection));
    }

    /// The connection to send `client`'s reply to, if it has an open one.
    pub(crate) fn connection(&self, client: u128) -> Option<&Connection> {
        self.routes
            .get(&client)
            .map(|route| &route.connection)
            .filter(|connection| !connection.closed())
    }

    /// Drops the routes of clients that lost their session (evicted) or finished without one,
    /// and of connections that closed. Run after each turn: it keeps the table within the
    /// session table's bounds.
    pub(crate) fn prune(&mut self, sessions: &SessionTable) {
        self.routes
            .retain(|&client, route| known(client, sessions) && !route.connection.closed());
        // Pair with `update`: every route's client is in the session table.
        assert!(self.routes.len() <= sessions.sessions().len() + sessions.in_flight_count());
    }

    /// Routes kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.routes.len()
    }
}

/// Whether the session table holds `client`: a session, or a request executing (a register
/// among them).
fn known(client: u128, sessions: &SessionTable) -> bool {
    sessions.get(client).is_some() || sessions.in_flight(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_wire::{
        encode_register_reply, encode_request, Header, ParsedHeader, ReplyParams, RequestHeader,
        RequestParams, SessionConfig, BATCH_SIZE_LIMIT_MAX, RELEASE,
    };

    fn register(client: u128) -> RequestHeader {
        let message = encode_request(
            &RequestParams {
                cluster: 0,
                view: 0,
                release: RELEASE,
                parent: 0,
                client,
                session: 0,
                timestamp: 0,
                request: 0,
                operation: 2,
                previous_request_latency: 0,
            },
            &[0; 256],
        );
        match Header::from_prefix(&message).expect("a header").parse() {
            Ok(ParsedHeader::Request(request)) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn commit_register(sessions: &mut SessionTable, request: &RequestHeader, op: u64) {
        let reply = encode_register_reply(
            &ReplyParams {
                cluster: 0,
                view: 0,
                release: request.release,
                client: request.client,
                request_checksum: request.checksum,
                request: 0,
                op,
                timestamp: op,
                operation: 2,
            },
            BATCH_SIZE_LIMIT_MAX,
        );
        sessions.commit_register(request.client, request.release, request.checksum, op, reply);
    }

    fn connection(id: u64) -> (Connection, mpsc::Receiver<Outbound>) {
        let (outbox, receiver) = mpsc::channel(1);
        (Connection::new(id, outbox), receiver)
    }

    fn routed(connection: &Connection) -> usize {
        connection.routed_clients.load(Ordering::Relaxed)
    }

    #[test]
    fn only_clients_the_session_table_knows_get_a_route() {
        let config = SessionConfig {
            clients_max: 2,
            ..SessionConfig::default()
        };
        let mut sessions = SessionTable::new(config);
        let mut routes = Routes::default();
        let (a, _a) = connection(1);
        // Unknown clients (pings, evicted requests) leave nothing behind.
        for client in 100..1_100 {
            routes.update(client, &a, &sessions);
        }
        assert_eq!((routes.len(), routed(&a)), (0, 0));

        // A register executing, then its session, keep a route; a newer connection takes it.
        let first = register(1);
        sessions.begin_request(&first);
        routes.update(1, &a, &sessions);
        assert_eq!((routes.len(), routed(&a)), (1, 1));
        commit_register(&mut sessions, &first, 1);
        routes.prune(&sessions);
        let (b, _b) = connection(2);
        routes.update(1, &b, &sessions);
        assert_eq!((routed(&a), routed(&b)), (0, 1));
        assert_eq!(routes.connection(1).map(|c| c.id), Some(2));

        // Two more registers evict client 1 (LRU, clients_max 2): its route goes with it.
        for (client, op) in [(2, 2), (3, 3)] {
            let request = register(client);
            sessions.begin_request(&request);
            routes.update(client, &a, &sessions);
            commit_register(&mut sessions, &request, op);
        }
        routes.prune(&sessions);
        assert!(sessions.get(1).is_none());
        assert_eq!((routes.len(), routed(&a), routed(&b)), (2, 2, 0));
    }

    #[test]
    fn a_closed_connection_loses_its_routes() {
        let mut sessions = SessionTable::new(SessionConfig::default());
        let mut routes = Routes::default();
        let (a, a_receiver) = connection(1);
        let request = register(7);
        sessions.begin_request(&request);
        routes.update(7, &a, &sessions);
        commit_register(&mut sessions, &request, 1);
        assert_eq!(routes.connection(7).map(|c| c.id), Some(1));
        drop(a_receiver);
        assert!(
            routes.connection(7).is_none(),
            "no reply goes to a closed connection"
        );
        routes.prune(&sessions);
        assert_eq!((routes.len(), routed(&a)), (0, 0));
        // A closed connection gets no new route either.
        routes.update(7, &a, &sessions);
        assert_eq!(routes.len(), 0);
    }
}
