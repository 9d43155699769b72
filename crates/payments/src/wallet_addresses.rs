//! Wallet addresses (`rafiki-admin-api.md` §7.4, §8.4): an https URL on one asset, with a
//! public name, free-form additional properties, a status, and the Web Monetization bookkeeping
//! that turns receipts on the address's ledger account into `wallet_address.web_monetization`
//! webhook events. The keys are in `wallet_address_keys.rs`.
//!
//! Money stays in the ledger (invariant 7): the address's Web Monetization account (id = the
//! address's id, code `LiquidityWebMonetization`) is created lazily by the receive path on the
//! first receipt, as Rafiki does, and every figure (liquidity, total received) is read from it.
//!
//! Deactivating an address pulls the expiry of its PENDING and PROCESSING incoming payments in to
//! `now + WALLET_ADDRESS_DEACTIVATION_PAYMENT_GRACE_PERIOD_MS` (24 h) where it is later, as
//! Rafiki does (`incoming_payments.rs`).

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use tally_ledger::Account;
use uuid::Uuid;

use crate::accounts::{liquidity_account, liquidity_of, AccountCode};
use crate::command::{Outcome, Success};
use crate::error::{LiquidityError, WalletAddressError};
use crate::liquidity::{transfer_create, withdrawal_transfer, Resolution};
use crate::page::{page, Page, PageRequest};
use crate::port::LedgerPort;
use crate::state::Payments;
use crate::wallet_address_keys::{CreateWalletAddressKey, RevokeWalletAddressKey};
use crate::webhook_events::{
    event_id, json_string, EventData, IsoTime, WebhookEvent, WebhookWithdrawal,
    WALLET_ADDRESS_WEB_MONETIZATION,
};

/// Path segments a wallet address URL must not contain: they are Open Payments resources.
pub const FORBIDDEN_PATHS: [&str; 3] = ["/incoming-payments", "/outgoing-payments", "/quotes"];

/// Rafiki's `WalletAddressStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletAddressStatus {
    /// Can get incoming payments, quotes and outgoing payments.
    Active,
    /// Deactivated by `updateWalletAddress`.
    Inactive,
}

/// A key-value pair shown (if visible) in the Open Payments wallet address document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdditionalProperty {
    /// Trimmed, non-empty once stored.
    pub key: String,
    /// Trimmed, non-empty once stored.
    pub value: String,
    /// Whether Open Payments shows it.
    pub visible_in_open_payments: bool,
}

/// A wallet address as Rafiki has it. Its liquidity is not here: it is the ledger balance of
/// its Web Monetization account (`web_monetization_account`), once that exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletAddress {
    /// Chosen by the front (UUID v4).
    pub id: Uuid,
    /// The asset of everything the address sends and receives; immutable.
    pub asset_id: Uuid,
    /// The address (`url` in v1, `address` in v2), lower-cased; immutable and unique.
    pub url: String,
    /// Shown in the Open Payments wallet address document.
    pub public_name: Option<String>,
    /// The cleaned properties, in the order given.
    pub additional_properties: Vec<AdditionalProperty>,
    /// Core timestamp (ns since the Unix epoch).
    pub created_at: u64,
    /// Set when deactivated (the status is INACTIVE from then on), cleared when re-activated.
    pub deactivated_at: Option<u64>,
    /// What the `wallet_address.web_monetization` events have reported so far: the total
    /// received less this is what the next event reports.
    pub total_events_amount: u128,
    /// When `triggerWalletAddressEvents` (or its worker) should next look at the address.
    pub process_at: Option<u64>,
}

impl WalletAddress {
    /// ACTIVE unless deactivated. Rafiki's `deactivatedAt > now` case cannot arise: Tally sets
    /// `deactivated_at` to the deactivating command's timestamp, never a later one.
    pub fn status(&self) -> WalletAddressStatus {
        match self.deactivated_at {
            None => WalletAddressStatus::Active,
            Some(_) => WalletAddressStatus::Inactive,
        }
    }
}

/// The wallet address mutations, keys and Web Monetization included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletAddressCommand {
    /// `createWalletAddress`.
    Create(CreateWalletAddress),
    /// `updateWalletAddress`.
    Update(UpdateWalletAddress),
    /// `createWalletAddressKey`.
    CreateKey(CreateWalletAddressKey),
    /// `revokeWalletAddressKey`.
    RevokeKey(RevokeWalletAddressKey),
    /// `createWalletAddressWithdrawal`.
    Withdraw(CreateWalletAddressWithdrawal),
    /// `triggerWalletAddressEvents`.
    TriggerEvents(TriggerWalletAddressEvents),
}

/// `createWalletAddress`'s input, with the id the front chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWalletAddress {
    /// The new address's id.
    pub id: Uuid,
    /// The asset; `None` when the client's id is not a UUID (then it is unknown).
    pub asset_id: Option<Uuid>,
    /// The URL exactly as sent (`url` in v1): checked, then stored lower-cased.
    pub url: String,
    /// Public name.
    pub public_name: Option<String>,
    /// As sent; trimmed and the empty ones dropped here.
    pub additional_properties: Vec<AdditionalProperty>,
}

/// `updateWalletAddress`'s input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateWalletAddress {
    /// The address; `None` when the client's id is not a UUID (then it is unknown).
    pub id: Option<Uuid>,
    /// `None`: the field was omitted (unchanged); `Some(None)`: sent as null (cleared).
    pub public_name: Option<Option<String>>,
    /// `None`: unchanged.
    pub status: Option<WalletAddressStatus>,
    /// `None`: unchanged; otherwise the new set (cleaned), replacing the old one.
    pub additional_properties: Option<Vec<AdditionalProperty>>,
}

/// `createWalletAddressWithdrawal`'s input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWalletAddressWithdrawal {
    /// The address; `None` when the client's id is not a UUID (then it is unknown).
    pub wallet_address_id: Option<Uuid>,
    /// The withdrawal's (and its transfer's) id; `None` when not a UUID v4.
    pub transfer_id: Option<Uuid>,
    /// 0: posted at once; otherwise pending, voided by the ledger when it times out.
    pub timeout_seconds: u64,
}

/// `triggerWalletAddressEvents`'s input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerWalletAddressEvents {
    /// Most addresses processed. The front refuses a negative `limit` before submitting, with
    /// INTERNAL_SERVER_ERROR, as Postgres refuses a negative `LIMIT`.
    pub limit: u32,
    /// A fresh UUID v7 chosen by the front (v4 in older journals): the ids of the events created
    /// derive from it (`webhook_events::event_id`).
    pub seed: Uuid,
}

/// The wallet addresses, with their indexes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WalletAddresses {
    addresses: OrdMap<Uuid, WalletAddress>,
    /// Lower-cased URL → address (Rafiki's unique `url` column).
    by_url: OrdMap<String, Uuid>,
    /// Creation timestamp → address, for pagination.
    created: OrdMap<u64, Uuid>,
    /// Asset → how many addresses use it (addresses are never deleted).
    per_asset: OrdMap<Uuid, u64>,
    /// `(process_at, address)` for every address whose `process_at` is set.
    due: OrdMap<(u64, Uuid), ()>,
}

impl WalletAddresses {
    /// Whether an address with this id exists.
    pub(crate) fn contains(&self, id: Uuid) -> bool {
        self.addresses.contains_key(&id)
    }

    /// Whether some address is on this asset.
    pub(crate) fn use_asset(&self, asset: Uuid) -> bool {
        self.per_asset.contains_key(&asset)
    }

    fn process_at_set(&mut self, id: Uuid, process_at: Option<u64>) {
        let address = self.addresses.get_mut(&id).expect("a known address");
        if let Some(previous) = address.process_at {
            let removed = self.due.remove(&(previous, id));
            assert!(removed.is_some(), "process_at and the due index agree");
        }
        address.process_at = process_at;
        if let Some(next) = process_at {
            self.due.insert((next, id), ());
        }
    }
}

/// Rafiki's `isValidWalletAddressUrl`: parses (WHATWG, as Node's `URL`), `https:`, a path other
/// than `/`, and none of `FORBIDDEN_PATHS` anywhere in the path.
pub fn wallet_address_url_valid(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let path = parsed.path();
    parsed.scheme() == "https"
        && path != "/"
        && !FORBIDDEN_PATHS
            .iter()
            .any(|forbidden| path.contains(forbidden))
}

/// JavaScript's `String.prototype.trim` whitespace: `WhiteSpace` and `LineTerminator`.
fn is_javascript_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{d}'
            | ' '
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
            | '\u{feff}'
    )
}

/// Rafiki's `cleanAdditionalProperties`: keys and values trimmed, pairs with an empty one
/// dropped, the rest kept in order.
fn additional_properties_clean(properties: &[AdditionalProperty]) -> Vec<AdditionalProperty> {
    properties
        .iter()
        .map(|property| AdditionalProperty {
            key: property
                .key
                .trim_matches(is_javascript_whitespace)
                .to_owned(),
            value: property
                .value
                .trim_matches(is_javascript_whitespace)
                .to_owned(),
            visible_in_open_payments: property.visible_in_open_payments,
        })
        .filter(|property| !property.key.is_empty() && !property.value.is_empty())
        .collect()
}

impl Payments {
    pub(crate) fn execute_wallet_address<P: LedgerPort>(
        &mut self,
        port: &mut P,
        command: &WalletAddressCommand,
        timestamp: u64,
    ) -> Outcome {
        match command {
            WalletAddressCommand::Create(create) => {
                self.execute_create_wallet_address(create, timestamp)
            }
            WalletAddressCommand::Update(update) => {
                self.execute_update_wallet_address(update, timestamp)
            }
            WalletAddressCommand::CreateKey(create) => {
                self.execute_create_wallet_address_key(create, timestamp)
            }
            WalletAddressCommand::RevokeKey(revoke) => {
                self.execute_revoke_wallet_address_key(revoke)
            }
            WalletAddressCommand::Withdraw(withdrawal) => {
                self.execute_wallet_address_withdrawal(port, withdrawal)
            }
            WalletAddressCommand::TriggerEvents(trigger) => {
                self.execute_trigger_wallet_address_events(port, trigger, timestamp)
            }
        }
    }

    /// Checks in Rafiki's order: the URL before the insert; then the insert's unique URL
    /// (Postgres checks the unique index during the insert, the asset's foreign key after it).
    /// A deleted asset is unknown here; Rafiki's foreign key would let the row in and then fail
    /// to render it (500).
    fn execute_create_wallet_address(
        &mut self,
        create: &CreateWalletAddress,
        timestamp: u64,
    ) -> Outcome {
        if !wallet_address_url_valid(&create.url) {
            return Err(WalletAddressError::InvalidUrl.into());
        }
        let url = create.url.to_lowercase();
        let addresses = &mut self.wallet_addresses;
        if addresses.by_url.contains_key(&url) {
            return Err(WalletAddressError::DuplicateWalletAddress.into());
        }
        let asset_id = create
            .asset_id
            .filter(|id| {
                self.assets
                    .get(id)
                    .is_some_and(|asset| asset.deleted_at.is_none())
            })
            .ok_or(WalletAddressError::UnknownAsset)?;
        assert!(!addresses.contains(create.id), "the front chose a fresh id");
        let address = WalletAddress {
            id: create.id,
            asset_id,
            url: url.clone(),
            public_name: create.public_name.clone(),
            additional_properties: additional_properties_clean(&create.additional_properties),
            created_at: timestamp,
            deactivated_at: None,
            total_events_amount: 0,
            process_at: None,
        };
        addresses.by_url.insert(url, address.id);
        addresses.created.insert(timestamp, address.id);
        *addresses.per_asset.entry(asset_id).or_insert(0) += 1;
        addresses.addresses.insert(address.id, address.clone());
        Ok(Success::WalletAddress(Box::new(address)))
    }

    /// `status: INACTIVE` deactivates an active address at `timestamp`; `status: ACTIVE`
    /// re-activates an inactive one; either is a no-op otherwise. (Rafiki also pulls in the
    /// expiry of the address's open incoming payments: see the module doc.)
    fn execute_update_wallet_address(
        &mut self,
        update: &UpdateWalletAddress,
        timestamp: u64,
    ) -> Outcome {
        let address = update
            .id
            .and_then(|id| self.wallet_addresses.addresses.get_mut(&id))
            .ok_or(WalletAddressError::UnknownWalletAddress)?;
        if let Some(public_name) = &update.public_name {
            address.public_name = public_name.clone();
        }
        let mut deactivated = false;
        match (update.status, address.status()) {
            (Some(WalletAddressStatus::Inactive), WalletAddressStatus::Active) => {
                address.deactivated_at = Some(timestamp);
                deactivated = true;
            }
            (Some(WalletAddressStatus::Active), WalletAddressStatus::Inactive) => {
                address.deactivated_at = None;
            }
            _ => {}
        }
        if let Some(properties) = &update.additional_properties {
            address.additional_properties = additional_properties_clean(properties);
        }
        let address = address.clone();
        if deactivated {
            self.incoming_payments_deactivated(address.id, timestamp);
        }
        Ok(Success::WalletAddress(Box::new(address)))
    }

    /// Withdraws the whole balance of the address's Web Monetization account. Checks in
    /// Rafiki's order: the address, its ledger account, a zero balance, the transfer id, then
    /// the ledger.
    fn execute_wallet_address_withdrawal<P: LedgerPort>(
        &mut self,
        port: &mut P,
        withdrawal: &CreateWalletAddressWithdrawal,
    ) -> Outcome {
        let address = withdrawal
            .wallet_address_id
            .and_then(|id| self.wallet_addresses.addresses.get(&id))
            .ok_or(LiquidityError::UnknownWalletAddress)?;
        let account = port
            .account(address.id.as_u128())
            .ok_or(WalletAddressError::MissingLedgerAccount)?;
        let amount = liquidity_of(&account);
        if amount == 0 {
            return Err(LiquidityError::AmountZero.into());
        }
        let id = withdrawal.transfer_id.ok_or(LiquidityError::InvalidId)?;
        let transfer = withdrawal_transfer(
            id,
            account.id,
            (address.asset_id, account.ledger),
            amount,
            withdrawal.timeout_seconds,
        )?;
        transfer_create(port, &transfer, Resolution::Post)?;
        Ok(Success::WalletAddressWithdrawal {
            id,
            amount,
            wallet_address: Box::new(address.clone()),
        })
    }

    /// For up to `limit` addresses due at `timestamp` (oldest `process_at` first, then by id;
    /// Rafiki takes any due rows), reports what their Web Monetization account received since
    /// the last event, if anything, as a `wallet_address.web_monetization` event, and clears
    /// `process_at`. Counts every address processed, with an event or without.
    fn execute_trigger_wallet_address_events<P: LedgerPort>(
        &mut self,
        port: &P,
        trigger: &TriggerWalletAddressEvents,
        timestamp: u64,
    ) -> Outcome {
        let due: Vec<Uuid> = self
            .wallet_addresses
            .due
            .range(..=(timestamp, Uuid::from_u128(u128::MAX)))
            .take(trigger.limit as usize)
            .map(|((_, id), ())| *id)
            .collect();
        let mut events: u32 = 0;
        for &id in &due {
            self.wallet_addresses.process_at_set(id, None);
            // A missing account has received nothing (Rafiki: "missing/empty balance").
            let total_received = port
                .account(id.as_u128())
                .map_or(0, |account| account.credits_posted);
            let address = &self.wallet_addresses.addresses[&id];
            let amount = total_received.saturating_sub(address.total_events_amount);
            if amount == 0 {
                continue;
            }
            let asset = &self.assets[&address.asset_id];
            let data = format!(
                concat!(
                    r#"{{"walletAddress":{{"id":"{}","createdAt":"{}","#,
                    r#""receivedAmount":{{"value":"{}","assetCode":{},"assetScale":{}}}}}}}"#
                ),
                address.id,
                IsoTime(address.created_at),
                amount,
                json_string(&asset.code),
                asset.scale
            );
            let event = WebhookEvent {
                id: event_id(trigger.seed, events),
                event_type: WALLET_ADDRESS_WEB_MONETIZATION.to_owned(),
                data: EventData::text_of(data),
                created_at: timestamp,
                withdrawal: Some(WebhookWithdrawal {
                    account_id: address.id,
                    asset_id: address.asset_id,
                    amount,
                }),
            };
            self.event_emit(event);
            events += 1;
            let address = self
                .wallet_addresses
                .addresses
                .get_mut(&id)
                .expect("due addresses exist");
            address.total_events_amount += amount;
        }
        Ok(Success::WalletAddressEvents {
            count: due.len() as u32,
        })
    }

    /// Rafiki's `onCredit` hook (§8.4), for the receive path to call inside `execute` after
    /// each posted credit to the address's Web Monetization account (STREAM/SPSP receipts are
    /// not modelled yet; tests call it directly). With the asset's `withdrawal_threshold` set
    /// and reached by what was received since the last event, the address is due at once;
    /// otherwise, with a throttle delay configured and nothing scheduled, it is due after the
    /// delay. Never call it outside the apply path: it changes the state.
    pub fn wallet_address_credited<P: LedgerPort>(
        &mut self,
        port: &P,
        id: Uuid,
        timestamp: u64,
        throttle_delay_ns: Option<u64>,
    ) {
        let address = &self.wallet_addresses.addresses[&id];
        let total_received = port
            .account(id.as_u128())
            .map_or(0, |account| account.credits_posted);
        let threshold = self.assets[&address.asset_id].withdrawal_threshold;
        let threshold_reached = threshold.is_some_and(|threshold| {
            address
                .total_events_amount
                .checked_add(threshold)
                .is_some_and(|needed| needed <= total_received)
        });
        if threshold_reached {
            self.wallet_addresses.process_at_set(id, Some(timestamp));
        } else if let (Some(delay), None) = (throttle_delay_ns, address.process_at) {
            self.wallet_addresses
                .process_at_set(id, Some(timestamp.saturating_add(delay)));
        }
    }

    /// The wallet address with this id (active or not).
    pub fn wallet_address(&self, id: Uuid) -> Option<&WalletAddress> {
        self.wallet_addresses.addresses.get(&id)
    }

    /// The wallet address with this URL, compared lower-cased (`walletAddressByUrl`).
    pub fn wallet_address_by_url(&self, url: &str) -> Option<&WalletAddress> {
        self.wallet_addresses
            .by_url
            .get(&url.to_lowercase())
            .map(|id| &self.wallet_addresses.addresses[id])
    }

    /// A page of wallet addresses (`walletAddresses`).
    pub fn wallet_addresses_page(&self, request: &PageRequest) -> (Vec<&WalletAddress>, Page) {
        let addresses = &self.wallet_addresses;
        let result = page(
            &addresses.created,
            0,
            u64::MAX,
            |id| {
                addresses
                    .addresses
                    .get(&id)
                    .map(|address| address.created_at)
            },
            request,
        );
        let rows = result
            .ids
            .iter()
            .map(|id| &addresses.addresses[id])
            .collect();
        (rows, result)
    }

    /// The ledger account that receives the address's Web Monetization payments, to be created
    /// when the first one arrives (its `liquidity` is null until then).
    pub fn web_monetization_account(&self, id: Uuid) -> Option<Account> {
        let address = self.wallet_addresses.addresses.get(&id)?;
        let asset = &self.assets[&address.asset_id];
        Some(liquidity_account(
            address.id.as_u128(),
            asset.id,
            asset.ledger,
            AccountCode::LiquidityWebMonetization,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_rafiki() {
        for (url, valid) in [
            ("https://example.com/alice", true),
            ("https://EXAMPLE.com/Alice/pay", true),
            ("https://example.com/myquotes", true),
            ("https://example.com/alice/quotesx", false),
            ("http://example.com/alice", false),
            ("https://example.com", false),
            ("https://example.com/", false),
            ("https://example.com/alice/incoming-payments", false),
            ("https://example.com/outgoing-payments/alice", false),
            ("https://example.com/a/quotes", false),
            ("not a url", false),
            ("", false),
            ("https://", false),
        ] {
            assert_eq!(wallet_address_url_valid(url), valid, "{url}");
        }
    }

    #[test]
    fn additional_properties_are_trimmed_like_javascript() {
        let property = |key: &str, value: &str| AdditionalProperty {
            key: key.to_owned(),
            value: value.to_owned(),
            visible_in_open_payments: true,
        };
        let cleaned = additional_properties_clean(&[
            property(" key\u{feff}", "\u{a0}value\n"),
            property("  ", "value"),
            property("key", "\t"),
            property("\u{85}k", "v"),
        ]);
        assert_eq!(
            cleaned,
            [property("key", "value"), property("\u{85}k", "v")]
        );
    }
}
