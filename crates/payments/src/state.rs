//! `Payments`: the domain's state, the one place a command is dispatched, the reads the front
//! makes, and the checkpoint encoding.

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::assets::Asset;
use crate::command::{Command, Mutation, Outcome};
use crate::error::PaymentsError;
use crate::fees::{Fee, FeeType};
use crate::idempotency::{IdempotencyKeys, Recall};
use crate::incoming_payments::IncomingPayments;
use crate::outgoing_payments::OutgoingPayments;
use crate::page::{page, Page, PageRequest};
use crate::peers::Peer;
use crate::port::{LedgerPort, LedgerRead};
use crate::quotes::Quotes;
use crate::wallet_address_keys::WalletAddressKeys;
use crate::wallet_addresses::WalletAddresses;
use crate::webhook_events::WebhookDeliveries;
use crate::webhook_events::WebhookEvents;

/// Checkpoint format of the domain state; a newer binary names it when it cannot read one.
/// Version 2 appends the payment flows (incoming payments, quotes, outgoing payments) after
/// version 1's encoding, so that version 1 still decodes, with no flows.
const CHECKPOINT_VERSION: u32 = 2;
/// The oldest version this binary reads.
const CHECKPOINT_VERSION_MIN: u32 = 1;

/// Incoming payments, quotes and outgoing payments: encoded after the rest of the state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PaymentFlows {
    pub(crate) incoming: IncomingPayments,
    pub(crate) quotes: Quotes,
    pub(crate) outgoing: OutgoingPayments,
    pub(crate) deliveries: WebhookDeliveries,
}

/// The Rafiki objects and the idempotency keys. Ordered maps only: iteration order is part of
/// the state's bytes (checkpoints, digests) and must not depend on hashing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Payments {
    pub(crate) assets: OrdMap<Uuid, Asset>,
    /// `(code, scale)` → asset, deleted ones included (a create re-activates them).
    pub(crate) assets_by_code: OrdMap<(String, u8), Uuid>,
    /// Creation timestamp → asset, for pagination.
    pub(crate) assets_created: OrdMap<u64, Uuid>,
    /// The ledger number of the newest asset.
    pub(crate) ledger_last: u32,
    pub(crate) fees: OrdMap<Uuid, Fee>,
    /// `(asset, creation timestamp)` → fee, for each asset's fee history.
    pub(crate) fees_created: OrdMap<(Uuid, u64), Uuid>,
    pub(crate) fee_latest: OrdMap<(Uuid, FeeType), Uuid>,
    pub(crate) peers: OrdMap<Uuid, Peer>,
    /// Creation timestamp → peer, for pagination (a deleted peer leaves it).
    pub(crate) peers_created: OrdMap<u64, Uuid>,
    /// `(asset, static ILP address)` → peer: unique, and the routing table of `peer_by_address`.
    pub(crate) peer_by_address: OrdMap<(Uuid, String), Uuid>,
    /// Incoming token → peer: unique across all peers.
    pub(crate) peer_by_incoming_token: OrdMap<String, Uuid>,
    /// Wallet addresses and their indexes.
    pub(crate) wallet_addresses: WalletAddresses,
    /// Wallet address keys and their indexes.
    pub(crate) wallet_address_keys: WalletAddressKeys,
    /// Webhook events, in creation order.
    pub(crate) webhook_events: WebhookEvents,
    pub(crate) idempotency: IdempotencyKeys,
    /// Encoded separately (checkpoint version 2).
    #[serde(skip)]
    pub(crate) flows: PaymentFlows,
}

/// A checkpoint that this binary cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Written by another format version.
    #[error("payments checkpoint version {found}; this binary reads version {CHECKPOINT_VERSION}")]
    Version {
        /// The version found.
        found: u32,
    },
    /// The bytes do not decode.
    #[error("payments checkpoint does not decode: {0}")]
    Malformed(#[from] postcard::Error),
}

impl Payments {
    /// Executes one command at core timestamp `timestamp` (the command's own; it may take up to
    /// `TIMESTAMPS_PER_COMMAND` ledger timestamps through `port`).
    pub fn execute<P: LedgerPort>(
        &mut self,
        port: &mut P,
        command: &Command,
        timestamp: u64,
    ) -> Outcome {
        self.idempotency.expire(timestamp);
        let fresh_key = match &command.idempotency {
            None => None,
            Some(key) => match self.idempotency.recall(key) {
                Recall::Fresh(fresh_key) => Some(fresh_key),
                Recall::Repeat(outcome) => return outcome,
                Recall::Reused => {
                    return Err(PaymentsError::IdempotencyKeyReused {
                        key: key.key.clone(),
                    })
                }
            },
        };
        let outcome = match &command.mutation {
            Mutation::Asset(asset) => self.execute_asset(port, asset, timestamp),
            Mutation::Fee(set) => self.execute_set_fee(set, timestamp),
            Mutation::Liquidity(liquidity) => self.execute_liquidity(port, liquidity),
            Mutation::Peer(peer) => self.execute_peer(port, peer, timestamp),
            Mutation::WalletAddress(wallet_address) => {
                self.execute_wallet_address(port, wallet_address, timestamp)
            }
            Mutation::IncomingPayment(incoming) => {
                self.execute_incoming_payment(port, incoming, timestamp)
            }
            Mutation::Quote(create) => self.execute_create_quote(port, create, timestamp),
            Mutation::OutgoingPayment(outgoing) => {
                self.execute_outgoing_payment(port, outgoing, timestamp)
            }
            Mutation::WebhookDelivery(result) => self.execute_webhook_delivery(result, timestamp),
        };
        if let Some(fresh_key) = fresh_key {
            self.idempotency.remember(fresh_key, &outcome, timestamp);
        }
        outcome
    }

    /// The earliest core time at which `pulse` has work: an open incoming payment's expiry.
    pub fn deadline(&self) -> Option<u64> {
        self.incoming_payment_deadline()
    }

    /// The time-driven work of the domain at core time `timestamp`: incoming payments whose
    /// expiry passed become EXPIRED (bounded per pulse). Runs inside the core's pulse entry,
    /// so that replay expires the same payments at the same point.
    pub fn pulse<P: LedgerRead>(&mut self, port: &P, timestamp: u64) {
        self.incoming_payments_expire(port, timestamp);
    }

    /// Whether a peer or wallet address refers to the asset.
    pub(crate) fn asset_in_use(&self, asset: Uuid) -> bool {
        self.asset_has_peers(asset) || self.wallet_addresses.use_asset(asset)
    }

    /// The asset, if active.
    pub fn asset(&self, id: Uuid) -> Option<&Asset> {
        self.asset_active(id)
    }

    /// A page of active assets.
    pub fn assets_page(&self, request: &PageRequest) -> (Vec<&Asset>, Page) {
        let mut result = page(
            &self.assets_created,
            0,
            u64::MAX,
            |id| self.asset_active(id).map(|asset| asset.created_at),
            request,
        );
        // Soft-deleted assets stay in the creation index (a create re-activates them in place):
        // Rafiki's query skips them.
        result.ids.retain(|id| self.asset_active(*id).is_some());
        (
            result.ids.iter().map(|id| &self.assets[id]).collect(),
            result,
        )
    }

    /// A page of an asset's fee history.
    pub fn fees_page(&self, asset: Uuid, request: &PageRequest) -> (Vec<&Fee>, Page) {
        let result = page(
            &self.fees_created,
            (asset, 0),
            (asset, u64::MAX),
            |id| self.fees.get(&id).map(|fee| (fee.asset_id, fee.created_at)),
            request,
        );
        (result.ids.iter().map(|id| &self.fees[id]).collect(), result)
    }

    /// How many idempotency keys are held.
    pub fn idempotency_key_count(&self) -> usize {
        self.idempotency.len()
    }

    /// Whether nothing was ever created (a state from before the Admin API looks like this).
    pub fn is_empty(&self) -> bool {
        *self == Payments::default()
    }

    /// Appends the checkpoint encoding: a version, then the state, then (version 2) the payment
    /// flows, each with its length. A state without flows is written as version 1, byte for
    /// byte what a version 1 binary wrote, so that its digest does not change either.
    pub fn encode_checkpoint(&self, out: &mut Vec<u8>) {
        let flows = self.flows != PaymentFlows::default();
        let version = if flows { CHECKPOINT_VERSION } else { 1 };
        out.extend_from_slice(&u32::to_le_bytes(version));
        let mut sections = vec![postcard::to_allocvec(self)];
        if flows {
            sections.push(postcard::to_allocvec(&self.flows));
        }
        for encoded in sections {
            let encoded = encoded.expect("the state encodes: no foreign types");
            out.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
            out.extend_from_slice(&encoded);
        }
    }

    /// Decodes what `encode_checkpoint` wrote; returns the state and the bytes it took.
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<(Payments, usize), DecodeError> {
        let truncated = || DecodeError::Malformed(postcard::Error::DeserializeUnexpectedEnd);
        let version = bytes.get(..4).ok_or_else(truncated)?;
        let found = u32::from_le_bytes(version.try_into().expect("4 bytes"));
        if !(CHECKPOINT_VERSION_MIN..=CHECKPOINT_VERSION).contains(&found) {
            return Err(DecodeError::Version { found });
        }
        let section = |offset: usize| -> Result<(&[u8], usize), DecodeError> {
            let size = bytes.get(offset..offset + 8).ok_or_else(truncated)?;
            let size = usize::try_from(u64::from_le_bytes(size.try_into().expect("8 bytes")))
                .map_err(|_| truncated())?;
            let end = offset.checked_add(8 + size).ok_or_else(truncated)?;
            let encoded = bytes.get(offset + 8..end).ok_or_else(truncated)?;
            Ok((encoded, end))
        };
        let (encoded, mut end) = section(4)?;
        let mut payments: Payments = postcard::from_bytes(encoded)?;
        if found >= 2 {
            let (encoded, flows_end) = section(end)?;
            payments.flows = postcard::from_bytes(encoded)?;
            end = flows_end;
        }
        Ok((payments, end))
    }
}
