//! Webhook events (`rafiki-admin-api.md` §8.6): rows the ASE lists with the `webhookEvents`
//! query, and deliveries to its webhook URL. Delivery state is journaled like everything else:
//! the front's delivery worker reads the events that are due (`webhook_deliveries_due`), POSTs
//! them, and reports each result as a `WebhookDeliveryResult` command; the domain then forgets
//! a delivered event or schedules its next attempt with Rafiki's back-off, so that what is
//! owed survives restarts and nothing is delivered by two workers' choices at once.
//!
//! Event ids must be chosen deterministically inside apply: the command that creates events
//! carries a seed UUID chosen by the front (v7 now, time-ordered; v4 in older journals), and
//! event `i` of the command gets `event_id(seed, i)`, a mix of the seed and `i` stamped as a
//! UUID v4 (the ASE may use an event id as a transfer id, and transfer ids must be v4).

use std::sync::{Arc, Mutex, PoisonError};

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{Outcome, Success};
use crate::incoming_payments::{incoming_payment_data, IncomingPaymentView};
use crate::outgoing_payments::{outgoing_payment_data, OutgoingPaymentView};
use crate::page::{page, Page, PageRequest};
use crate::state::Payments;

/// The type of the event `triggerWalletAddressEvents` emits.
pub const WALLET_ADDRESS_WEB_MONETIZATION: &str = "wallet_address.web_monetization";

/// One webhook event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Derived from the creating command's seed (`event_id`).
    pub id: Uuid,
    /// Rafiki's event type, e.g. `wallet_address.web_monetization`.
    pub event_type: String,
    /// The event's `data` object.
    pub data: EventData,
    /// The creating command's timestamp (ns since the Unix epoch).
    pub created_at: u64,
    /// What the ASE should withdraw in response, if anything.
    pub withdrawal: Option<WebhookWithdrawal>,
}

/// Rafiki's `withdrawal*` columns of a webhook event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookWithdrawal {
    /// The ledger account to withdraw from (its owner's id).
    pub account_id: Uuid,
    /// The account's asset.
    pub asset_id: Uuid,
    /// Minor units.
    pub amount: u128,
}

/// An event's `data` object, as JSON text once anything reads it. A payment event keeps the
/// payment as it was when the event was created, and its text is written the first time it is
/// read or encoded: by a delivery or the `webhookEvents` list (in the front, on the clones the
/// core hands out), a checkpoint's encoder, or a digest; writing it in the apply was a quarter of
/// a payment's instructions there (callgrind). The text is a function of the kept view alone,
/// so it is the same bytes whenever and wherever it is written, and the checkpoint holds the
/// text, as it always did.
/// Clones share the one cell (a checkpoint's snapshot and the core's state hold the same
/// events), so that an event's text is written once.
#[derive(Clone)]
pub struct EventData(Arc<Mutex<EventDataForm>>);

enum EventDataForm {
    Text(Arc<str>),
    IncomingPayment(Box<IncomingPaymentView>),
    OutgoingPayment(Box<OutgoingPaymentView>),
}

impl EventData {
    fn of(form: EventDataForm) -> EventData {
        EventData(Arc::new(Mutex::new(form)))
    }

    /// Data already written as JSON text.
    pub(crate) fn text_of(text: String) -> EventData {
        EventData::of(EventDataForm::Text(text.into()))
    }

    /// `incoming_payment.*` data: the payment as `view` shows it.
    pub(crate) fn incoming_payment(view: IncomingPaymentView) -> EventData {
        EventData::of(EventDataForm::IncomingPayment(Box::new(view)))
    }

    /// `outgoing_payment.*` data: the payment as `view` shows it.
    pub(crate) fn outgoing_payment(view: OutgoingPaymentView) -> EventData {
        EventData::of(EventDataForm::OutgoingPayment(Box::new(view)))
    }

    /// The JSON text of the data, written now if it was not yet.
    pub fn text(&self) -> Arc<str> {
        // Writing the text cannot panic (plain data serializes), so a poisoned lock still holds
        // a whole form.
        let mut form = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let text: Arc<str> = match &*form {
            EventDataForm::Text(text) => return Arc::clone(text),
            EventDataForm::IncomingPayment(view) => incoming_payment_data(view).into(),
            EventDataForm::OutgoingPayment(view) => outgoing_payment_data(view).into(),
        };
        *form = EventDataForm::Text(Arc::clone(&text));
        text
    }
}

impl PartialEq for EventData {
    fn eq(&self, other: &EventData) -> bool {
        // One cell would be locked twice.
        Arc::ptr_eq(&self.0, &other.0) || self.text() == other.text()
    }
}

impl Eq for EventData {}

impl std::fmt::Debug for EventData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.text(), f)
    }
}

/// Encoded as the text, as when the data was a `String`.
impl Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for EventData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<EventData, D::Error> {
        String::deserialize(deserializer).map(EventData::text_of)
    }
}

/// The events, and their order of creation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WebhookEvents {
    /// Behind an `Arc`: a map node then holds 16-byte keys and pointers, so that an insertion
    /// shifts a few hundred bytes of its node rather than the events themselves (130 bytes
    /// each), and a node copied while a checkpoint's snapshot shares it counts references
    /// instead of cloning every event's strings. Encoded as the events themselves.
    events: OrdMap<Uuid, Arc<WebhookEvent>>,
    /// `(created_at, n)` → event, `n` counting the events of one command (they share its
    /// timestamp): the order of the `webhookEvents` list.
    created: OrdMap<(u64, u32), Uuid>,
}

impl WebhookEvents {
    /// Stores an event created by the command stamped `event.created_at`; returns its position
    /// among that command's events.
    pub(crate) fn insert(&mut self, event: WebhookEvent) -> u32 {
        let position = self
            .created
            .range((event.created_at, 0)..=(event.created_at, u32::MAX))
            .next_back()
            .map_or(0, |((_, position), _)| position + 1);
        let (id, created_at) = (event.id, event.created_at);
        let previous = self.events.insert(id, Arc::new(event));
        // Ids come from a fresh seed through a bijection: a repeat is a front bug (a reused
        // seed), not chance.
        assert!(previous.is_none(), "webhook event ids are unique");
        self.created.insert((created_at, position), id);
        assert_eq!(self.events.len(), self.created.len());
        position
    }

    fn key_of(&self, id: Uuid) -> Option<(u64, u32)> {
        let event = self.events.get(&id)?;
        self.created
            .range((event.created_at, 0)..=(event.created_at, u32::MAX))
            .find(|(_, other)| **other == id)
            .map(|(key, _)| *key)
    }
}

/// The id of event `index` of the command that carried `seed`. A v7 seed keeps its time in
/// front (`event_id_time_ordered`); any other (the v4 seeds of older journals, which replay
/// must give the ids they gave) goes whole through two Feistel rounds of SplitMix64's finalizer
/// over its halves, keyed by `index` (a bijection of 128 bits for each `index`), then stamped as
/// a UUID v4, which overwrites 6 bits. Two (seed, index) pairs share an id only by a 2^-122
/// chance, as two random v4 ids would.
pub fn event_id(seed: Uuid, index: u32) -> Uuid {
    if seed.get_version_num() == 7 {
        return event_id_time_ordered(seed, index);
    }
    let seed = seed.as_u128();
    let key = index_key(index);
    let mut high = (seed >> 64) as u64;
    let mut low = seed as u64;
    low ^= mix(high ^ key);
    high ^= mix(low ^ key.rotate_left(32));
    let bytes = ((u128::from(high) << 64) | u128::from(low)).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// `event_id` of a v7 seed: the seed's 48 bits of Unix milliseconds stay in front, so that the
/// ids of one moment's payments, events and transfers sort together as their seeds do (the
/// maps keyed by them then take inserts and recent lookups at their right edge, in cache,
/// instead of at random nodes); the seed's 74 random bits (v7's `rand_a` and `rand_b`) go
/// through two Feistel rounds keyed by `index`, a bijection for each `index`; the result is
/// stamped as a UUID v4 (Rafiki requires v4 of an id the ASE may post a withdrawal under).
fn event_id_time_ordered(seed: Uuid, index: u32) -> Uuid {
    let seed = seed.as_u128();
    let millis = seed >> 80;
    let key = index_key(index);
    let mut rand_a = (seed >> 64) as u64 & RAND_A_MASK;
    let mut rand_b = seed as u64 & RAND_B_MASK;
    rand_b ^= mix(rand_a ^ key) & RAND_B_MASK;
    rand_a ^= mix(rand_b ^ key.rotate_left(32)) & RAND_A_MASK;
    let id = (millis << 80)
        | (0x4 << 76)
        | (u128::from(rand_a) << 64)
        | (0b10 << 62)
        | u128::from(rand_b);
    Uuid::from_u128(id)
}

/// v7's 12 bits of `rand_a` (below the version) and 62 of `rand_b` (below the variant).
const RAND_A_MASK: u64 = (1 << 12) - 1;
const RAND_B_MASK: u64 = (1 << 62) - 1;

/// The key of `event_id`'s rounds for event `index`: the index spread by the golden ratio.
fn index_key(index: u32) -> u64 {
    u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// SplitMix64's finalizer: a bijection of 64 bits that spreads each input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the delivery worker found when it POSTed one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeliveryResult {
    /// The event.
    pub event_id: Uuid,
    /// HTTP 200 came back (nothing else counts, as in Rafiki).
    pub delivered: bool,
    /// Rafiki's back-off unit (`min(attempts, 6)` of it before the next attempt), in ns.
    pub retry_delay_ns: u64,
    /// Attempts after which an event is given up (Rafiki's `WEBHOOK_MAX_RETRY`).
    pub attempts_max: u32,
}

/// Back-off steps at most: the delay stops growing after six attempts (Rafiki).
const RETRY_STEPS_MAX: u32 = 6;

/// Events still owed to the webhook URL.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WebhookDeliveries {
    /// Event → failed attempts so far.
    attempts: OrdMap<Uuid, u32>,
    /// `(next attempt at, event)` of every owed event.
    due: OrdSet<(u64, Uuid)>,
    /// Events given up after `attempts_max` failures.
    given_up: u64,
}

impl Payments {
    /// Stores a new event, owed to the webhook URL from its creation.
    pub(crate) fn event_emit(&mut self, event: WebhookEvent) {
        let (id, at) = (event.id, event.created_at);
        self.webhook_events.insert(event);
        let deliveries = &mut self.flows.deliveries;
        deliveries.attempts.insert(id, 0);
        deliveries.due.insert((at, id));
        assert_eq!(deliveries.attempts.len(), deliveries.due.len());
    }

    /// Records one delivery attempt at core time `timestamp`. A result for an event no longer
    /// owed (already delivered, given up, or never owed) changes nothing: the worker may report
    /// twice across a restart.
    pub(crate) fn execute_webhook_delivery(
        &mut self,
        result: &WebhookDeliveryResult,
        timestamp: u64,
    ) -> Outcome {
        let deliveries = &mut self.flows.deliveries;
        let Some(attempts) = deliveries.attempts.get(&result.event_id).copied() else {
            return Ok(Success::WebhookDelivery);
        };
        let due_at = deliveries
            .due
            .iter()
            .find(|(_, id)| *id == result.event_id)
            .map(|(at, _)| *at)
            .expect("owed events are in the due index");
        deliveries.due.remove(&(due_at, result.event_id));
        deliveries.attempts.remove(&result.event_id);
        if !result.delivered {
            let attempts = attempts + 1;
            if attempts >= result.attempts_max {
                deliveries.given_up += 1;
            } else {
                let delay = result
                    .retry_delay_ns
                    .saturating_mul(u64::from(attempts.min(RETRY_STEPS_MAX)));
                deliveries.attempts.insert(result.event_id, attempts);
                deliveries
                    .due
                    .insert((timestamp.saturating_add(delay), result.event_id));
            }
        }
        assert_eq!(deliveries.attempts.len(), deliveries.due.len());
        Ok(Success::WebhookDelivery)
    }

    /// Up to `limit` owed events whose next attempt is at or before `now` (ns), earliest first.
    pub fn webhook_deliveries_due(&self, now: u64, limit: usize) -> Vec<WebhookEvent> {
        self.flows
            .deliveries
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(_, id)| WebhookEvent::clone(&self.webhook_events.events[id]))
            .collect()
    }

    /// Events owed to the webhook URL, and events given up.
    pub fn webhook_backlog(&self) -> (usize, u64) {
        let deliveries = &self.flows.deliveries;
        (deliveries.attempts.len(), deliveries.given_up)
    }

    /// The webhook event with this id.
    pub fn webhook_event(&self, id: Uuid) -> Option<&WebhookEvent> {
        self.webhook_events.events.get(&id).map(Arc::as_ref)
    }

    /// A page of webhook events (`webhookEvents`), in creation order; `types` non-empty keeps
    /// only events of those types (`filter.type.in`). As in Rafiki's SQL, a cursor may name an
    /// event the filter leaves out. A filtered read scans every event.
    pub fn webhook_events_page(
        &self,
        request: &PageRequest,
        types: &[String],
    ) -> (Vec<&WebhookEvent>, Page) {
        let store = &self.webhook_events;
        let key_of = |id| store.key_of(id);
        let result = if types.is_empty() {
            page(
                &store.created,
                (0, 0),
                (u64::MAX, u32::MAX),
                key_of,
                request,
            )
        } else {
            let filtered: OrdMap<(u64, u32), Uuid> = store
                .created
                .iter()
                .filter(|(_, id)| types.contains(&store.events[*id].event_type))
                .map(|(key, id)| (*key, *id))
                .collect();
            page(&filtered, (0, 0), (u64::MAX, u32::MAX), key_of, request)
        };
        let events = result.ids.iter().map(|id| &*store.events[id]).collect();
        (events, result)
    }
}

/// A timestamp (ns since the Unix epoch) as JavaScript's `Date.toISOString` writes it:
/// `YYYY-MM-DDTHH:MM:SS.sssZ`. Written from digits on the stack, not through `format!`: the core
/// thread writes several for every payment event, and padded integers through the formatting
/// machinery cost about 3,700 instructions each (callgrind), a sixth of a payment's apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IsoTime(pub(crate) u64);

impl IsoTime {
    /// Year, month, day, hours, minutes, seconds and milliseconds, in UTC.
    fn fields(self) -> [u64; 7] {
        let ms = self.0 / 1_000_000;
        let days = ms / 86_400_000;
        let in_day = ms % 86_400_000;
        // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
        let z = days + 719_468;
        let era = z / 146_097;
        let day_of_era = z % 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_index + 2) / 5 + 1;
        let month = if month_index < 10 {
            month_index + 3
        } else {
            month_index - 9
        };
        let year = year_of_era + era * 400 + u64::from(month <= 2);
        [
            year,
            month,
            day,
            in_day / 3_600_000,
            in_day / 60_000 % 60,
            in_day / 1000 % 60,
            in_day % 1000,
        ]
    }

    fn bytes(self) -> [u8; 24] {
        let [year, month, day, hours, minutes, seconds, ms] = self.fields();
        // u64 nanoseconds end in 2554: the year always has four digits.
        assert!(year <= 9999);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        digits(&mut out[0..4], year);
        digits(&mut out[5..7], month);
        digits(&mut out[8..10], day);
        digits(&mut out[11..13], hours);
        digits(&mut out[14..16], minutes);
        digits(&mut out[17..19], seconds);
        digits(&mut out[20..23], ms);
        out
    }
}

/// `value`'s last `out.len()` decimal digits, zero-padded.
fn digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl IsoTime {
    /// Calls `write` with the text.
    fn with_text<R>(self, write: impl FnOnce(&str) -> R) -> R {
        let bytes = self.bytes();
        write(std::str::from_utf8(&bytes).expect("ASCII digits and separators"))
    }
}

impl std::fmt::Display for IsoTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_text(|text| f.write_str(text))
    }
}

impl Serialize for IsoTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_text(|text| serializer.serialize_str(text))
    }
}

/// An amount in event data: a JSON string of its decimal digits, written from a buffer on the
/// stack (`itoa`) instead of a `String` through `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecimalText(pub(crate) u128);

impl Serialize for DecimalText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(itoa::Buffer::new().format(self.0))
    }
}

/// `text` as a JSON string literal (RFC 8259 escapes).
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What was written before `IsoTime`: the same fields through `format!`. Event data is
    /// state, and replaying an old log must write the same bytes.
    fn iso_by_format(timestamp: u64) -> String {
        let [year, month, day, hours, minutes, seconds, ms] = IsoTime(timestamp).fields();
        format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{ms:03}Z")
    }

    #[test]
    fn iso_dates_match_javascript() {
        let iso = |timestamp| IsoTime(timestamp).to_string();
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        // Date.parse("2024-02-29T23:59:59.999Z") = 1709251199999 ms.
        assert_eq!(iso(1_709_251_199_999_000_000), "2024-02-29T23:59:59.999Z");
        // Date.parse("2000-03-01T00:00:00.000Z") = 951868800000 ms.
        assert_eq!(iso(951_868_800_000_123_456), "2000-03-01T00:00:00.000Z");
        // The last millisecond of u64 nanoseconds: Date.parse("2554-07-21T23:34:33.709Z").
        assert_eq!(iso(u64::MAX), "2554-07-21T23:34:33.709Z");
        assert_eq!(
            serde_json::to_string(&IsoTime(0)).expect("serializes"),
            "\"1970-01-01T00:00:00.000Z\""
        );
    }

    proptest::proptest! {
        #[test]
        fn iso_dates_are_padded_fields(timestamp: u64) {
            let text = IsoTime(timestamp).to_string();
            proptest::prop_assert_eq!(&text, &iso_by_format(timestamp));
            proptest::prop_assert_eq!(text.len(), 24);
        }

        #[test]
        fn decimal_texts_are_display(value: u128) {
            let json = serde_json::to_string(&DecimalText(value)).expect("serializes");
            proptest::prop_assert_eq!(json, format!("\"{value}\""));
        }
    }

    #[test]
    fn json_strings_escape() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    #[test]
    fn event_ids_are_v4_and_distinct() {
        let seed = Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd);
        let ids: Vec<Uuid> = (0..64).map(|index| event_id(seed, index)).collect();
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert!(!ids[..n].contains(id));
        }
        assert_eq!(event_id(seed, 3), ids[3], "deterministic");
        let other = Uuid::from_u128(seed.as_u128() ^ 1);
        assert_ne!(event_id(other, 0), ids[0]);
    }

    /// The inverse of `event_id_time_ordered`'s rounds: the seed's (millis, rand_a, rand_b).
    fn time_ordered_seed_of(id: Uuid, index: u32) -> (u128, u64, u64) {
        let id = id.as_u128();
        let key = index_key(index);
        let mut rand_a = (id >> 64) as u64 & RAND_A_MASK;
        let mut rand_b = id as u64 & RAND_B_MASK;
        rand_a ^= mix(rand_b ^ key.rotate_left(32)) & RAND_A_MASK;
        rand_b ^= mix(rand_a ^ key) & RAND_B_MASK;
        (id >> 80, rand_a, rand_b)
    }

    proptest::proptest! {
        #[test]
        fn time_ordered_event_ids_keep_the_time_and_the_seed(
            millis in 0u64..(1 << 48),
            random in proptest::num::u128::ANY,
            index in 0u32..64,
        ) {
            let seed = uuid::Builder::from_unix_timestamp_millis(
                millis,
                &random.to_be_bytes()[..10].try_into().expect("ten bytes"),
            )
            .into_uuid();
            proptest::prop_assert_eq!(seed.get_version_num(), 7);
            let id = event_id(seed, index);
            proptest::prop_assert_eq!(id.get_version_num(), 4);
            proptest::prop_assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let seed_bits = seed.as_u128();
            let expected = (
                seed_bits >> 80,
                (seed_bits >> 64) as u64 & RAND_A_MASK,
                seed_bits as u64 & RAND_B_MASK,
            );
            proptest::prop_assert_eq!(time_ordered_seed_of(id, index), expected);
            proptest::prop_assert_eq!(id.as_u128() >> 80, u128::from(millis));
        }
    }

    #[test]
    fn time_ordered_event_ids_are_distinct_and_sort_by_time() {
        let earlier = Uuid::from_u128(0x0190_0000_0000_7fff_bfff_ffff_ffff_ffff);
        let later = Uuid::from_u128(0x0190_0000_0001_7000_8000_0000_0000_0000);
        let ids: Vec<Uuid> = (0..64).map(|index| event_id(earlier, index)).collect();
        for (n, id) in ids.iter().enumerate() {
            assert!(!ids[..n].contains(id));
            assert!(
                *id < event_id(later, n as u32),
                "a later millisecond sorts after"
            );
        }
    }
}
