//! Incoming payments and receivers (`rafiki-admin-api.md` §7.5, §8.1): what a wallet address
//! expects to receive, with an optional amount and an expiry.
//!
//! Money stays in the ledger (invariant 7): the payment's account (id = the payment's id, code
//! `LiquidityIncoming`) is created by the first local payment into it, and `receivedAmount` is
//! that account's posted credits. States: PENDING → PROCESSING on the first credit →
//! COMPLETED when the credits reach `incomingAmount`; PENDING or PROCESSING → EXPIRED at
//! `expires_at`, by the core's pulse (`Payments::pulse`). Rafiki polls for both with a worker;
//! here completion happens in the command that pays, and expiry in the pulse at the deadline.

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_ledger::Account;
use uuid::Uuid;

use crate::accounts::{liquidity_account, liquidity_of, AccountCode};
use crate::amount::{Amount, AmountData, AmountInput};
use crate::command::{Outcome, Success};
use crate::error::{IncomingPaymentError, LiquidityError, PaymentsError};
use crate::liquidity::{transfer_create, withdrawal_transfer, Resolution};
use crate::page::{page, Page, PageRequest};
use crate::port::{LedgerPort, LedgerRead};
use crate::state::Payments;
use crate::webhook_events::{event_id, EventData, IsoTime, WebhookEvent, WebhookWithdrawal};

/// Rafiki's `INCOMING_PAYMENT_EXPIRY_MAX_MS` default: 30 days.
pub const INCOMING_PAYMENT_EXPIRY_MAX_NS: u64 = 30 * 24 * 3600 * 1_000_000_000;
/// How long after a wallet address is deactivated its open incoming payments still accept
/// money (Rafiki's `WALLET_ADDRESS_DEACTIVATION_PAYMENT_GRACE_PERIOD_MS`, 24 h).
pub const DEACTIVATION_GRACE_PERIOD_NS: u64 = 24 * 3600 * 1_000_000_000;
/// Incoming payments one pulse expires at most; the rest wait for the next pulse.
pub(crate) const EXPIRIES_PER_PULSE_MAX: usize = 256;

/// Event types.
pub const INCOMING_PAYMENT_CREATED: &str = "incoming_payment.created";
/// Sent when the received amount reaches `incomingAmount`.
pub const INCOMING_PAYMENT_COMPLETED: &str = "incoming_payment.completed";
/// Sent when a payment that received something expires.
pub const INCOMING_PAYMENT_EXPIRED: &str = "incoming_payment.expired";

/// The index of each event kind in `event_id(payment id, index)`: each happens once per payment.
const EVENT_CREATED: u32 = 0;
const EVENT_COMPLETED: u32 = 1;
const EVENT_EXPIRED: u32 = 2;

/// Rafiki's `IncomingPaymentState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncomingPaymentState {
    /// Created; nothing received yet.
    Pending,
    /// Something was received.
    Processing,
    /// `incomingAmount` was reached.
    Completed,
    /// The expiry passed first.
    Expired,
}

impl IncomingPaymentState {
    /// Rafiki's spelling.
    pub fn name(self) -> &'static str {
        match self {
            IncomingPaymentState::Pending => "PENDING",
            IncomingPaymentState::Processing => "PROCESSING",
            IncomingPaymentState::Completed => "COMPLETED",
            IncomingPaymentState::Expired => "EXPIRED",
        }
    }

    /// Whether money may still arrive.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            IncomingPaymentState::Pending | IncomingPaymentState::Processing
        )
    }
}

/// One incoming payment. Its received amount and liquidity are not here: they are read from its
/// ledger account (`IncomingPaymentView`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingPayment {
    /// Chosen by the front (UUID v7, time-ordered; v4 in older journals); also its ledger
    /// account's id.
    pub id: Uuid,
    /// The receiving wallet address.
    pub wallet_address_id: Uuid,
    /// The wallet address's asset.
    pub asset_id: Uuid,
    /// Current state.
    pub state: IncomingPaymentState,
    /// Core-clock deadline (ns since the Unix epoch).
    pub expires_at: u64,
    /// The most it should receive, in the asset's minor units.
    pub incoming_amount: Option<u128>,
    /// The client's metadata, as JSON object text.
    pub metadata: Option<String>,
    /// Core timestamp.
    pub created_at: u64,
    /// `approveIncomingPayment`.
    pub approved_at: Option<u64>,
    /// `cancelIncomingPayment` (the state does not change, as in Rafiki).
    pub cancelled_at: Option<u64>,
    /// The `incoming_payment.completed` or `.expired` event, once sent: its id is the id of the
    /// withdrawal that empties the payment.
    pub withdrawal_event: Option<Uuid>,
}

/// An incoming payment with what the ledger and its asset say about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingPaymentView {
    /// The payment.
    pub payment: IncomingPayment,
    /// Its wallet address's URL (a receiver names it).
    pub wallet_address_url: String,
    /// The asset's code.
    pub asset_code: String,
    /// The asset's scale.
    pub asset_scale: u8,
    /// Credits posted to its account (0 before the account exists).
    pub received: u128,
    /// Its account's balance; `None` until the account exists.
    pub liquidity: Option<u128>,
}

impl IncomingPaymentView {
    /// `incomingAmount` with the asset.
    pub fn incoming_amount(&self) -> Option<Amount> {
        self.payment.incoming_amount.map(|value| self.amount(value))
    }

    /// `receivedAmount` with the asset.
    pub fn received_amount(&self) -> Amount {
        self.amount(self.received)
    }

    fn amount(&self, value: u128) -> Amount {
        Amount {
            value,
            asset_code: self.asset_code.clone(),
            asset_scale: self.asset_scale,
        }
    }
}

/// `createIncomingPayment`'s input, and what `createReceiver` creates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateIncomingPayment {
    /// The new payment's id (UUID v7, chosen by the front: ids of one moment sort together, so
    /// the maps keyed by them grow at their right edge).
    pub id: Uuid,
    /// The receiving address; `None` when the client's id is not a UUID.
    pub wallet_address_id: Option<Uuid>,
    /// The deadline the client asked for (ns), if any; the front has parsed it.
    pub expires_at: Option<u64>,
    /// The most to receive.
    pub incoming_amount: Option<AmountInput>,
    /// JSON object text.
    pub metadata: Option<String>,
    /// The operator's `--incoming-payment-expiry-max`, in ns: the default and the cap.
    pub expiry_max_ns: u64,
}

/// `createReceiver`: an incoming payment on the address with this URL, on this instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateReceiver {
    /// The wallet address's URL, as sent.
    pub wallet_address_url: String,
    /// The payment to create (its `wallet_address_id` is ignored: the URL names the address).
    pub payment: CreateIncomingPayment,
}

/// The incoming payment mutations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncomingPaymentCommand {
    /// `createIncomingPayment`.
    Create(CreateIncomingPayment),
    /// `createReceiver` for a local wallet address.
    CreateReceiver(CreateReceiver),
    /// `updateIncomingPayment`: replaces the metadata.
    Update {
        /// The payment; `None` when not a UUID.
        id: Option<Uuid>,
        /// JSON object text.
        metadata: String,
    },
    /// `approveIncomingPayment`.
    Approve {
        /// The payment; `None` when not a UUID.
        id: Option<Uuid>,
    },
    /// `cancelIncomingPayment`.
    Cancel {
        /// The payment; `None` when not a UUID.
        id: Option<Uuid>,
    },
    /// `createIncomingPaymentWithdrawal`.
    Withdraw {
        /// The payment; `None` when not a UUID.
        id: Option<Uuid>,
        /// 0: posted at once; otherwise pending.
        timeout_seconds: u64,
    },
}

/// The incoming payments and their indexes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct IncomingPayments {
    pub(crate) payments: OrdMap<Uuid, Arc<IncomingPayment>>,
    /// Creation timestamp → payment (each command has its own timestamp).
    pub(crate) created: OrdMap<u64, Uuid>,
    /// `(wallet address, creation timestamp)` → payment.
    pub(crate) by_wallet_address: OrdMap<(Uuid, u64), Uuid>,
    /// `(expires_at, payment)` of every open payment: what the pulse expires.
    pub(crate) expiries: OrdSet<(u64, Uuid)>,
    /// Expired payments that received nothing: Rafiki soft-deletes them, and they are found no
    /// more.
    pub(crate) deleted: OrdSet<Uuid>,
}

impl IncomingPayments {
    /// A known payment, to change; copied first when a checkpoint's snapshot shares it.
    fn payment_mut(&mut self, id: Uuid) -> &mut IncomingPayment {
        Arc::make_mut(self.payments.get_mut(&id).expect("a known payment"))
    }

    fn expires_at_set(&mut self, id: Uuid, expires_at: u64) {
        let payment = &self.payments[&id];
        assert!(payment.state.is_open());
        let removed = self.expiries.remove(&(payment.expires_at, id));
        assert!(removed.is_some(), "open payments are in the expiry index");
        self.payment_mut(id).expires_at = expires_at;
        self.expiries.insert((expires_at, id));
    }

    fn close(&mut self, id: Uuid, state: IncomingPaymentState) {
        let payment = &self.payments[&id];
        assert!(payment.state.is_open() && !state.is_open());
        let removed = self.expiries.remove(&(payment.expires_at, id));
        assert!(removed.is_some(), "open payments are in the expiry index");
        self.payment_mut(id).state = state;
    }
}

impl Payments {
    pub(crate) fn execute_incoming_payment<P: LedgerPort>(
        &mut self,
        port: &mut P,
        command: &IncomingPaymentCommand,
        timestamp: u64,
    ) -> Outcome {
        match command {
            IncomingPaymentCommand::Create(create) => {
                let view = self.incoming_payment_create(port, create, timestamp)?;
                Ok(Success::IncomingPayment(Box::new(view)))
            }
            IncomingPaymentCommand::CreateReceiver(receiver) => {
                let address = self
                    .wallet_address_by_url(&receiver.wallet_address_url)
                    .ok_or(IncomingPaymentError::RemoteWalletAddress)?;
                let create = CreateIncomingPayment {
                    wallet_address_id: Some(address.id),
                    ..receiver.payment.clone()
                };
                let view = self.incoming_payment_create(port, &create, timestamp)?;
                Ok(Success::Receiver(Box::new(view)))
            }
            IncomingPaymentCommand::Update { id, metadata } => {
                let id = self.incoming_payment_found(*id)?;
                let payment = self.flows.incoming.payment_mut(id);
                payment.metadata = Some(metadata.clone());
                Ok(Success::IncomingPayment(Box::new(
                    self.incoming_payment_view(port, id).expect("found"),
                )))
            }
            IncomingPaymentCommand::Approve { id } => {
                let id = self.incoming_payment_actionable(*id)?;
                let payment = self.flows.incoming.payment_mut(id);
                payment.approved_at = Some(timestamp);
                Ok(Success::IncomingPayment(Box::new(
                    self.incoming_payment_view(port, id).expect("found"),
                )))
            }
            IncomingPaymentCommand::Cancel { id } => {
                let id = self.incoming_payment_actionable(*id)?;
                let payment = self.flows.incoming.payment_mut(id);
                payment.cancelled_at = Some(timestamp);
                Ok(Success::IncomingPayment(Box::new(
                    self.incoming_payment_view(port, id).expect("found"),
                )))
            }
            IncomingPaymentCommand::Withdraw {
                id,
                timeout_seconds,
            } => self.execute_incoming_payment_withdrawal(port, *id, *timeout_seconds),
        }
    }

    /// Checks in Rafiki's order: expiry, amount, wallet address, its status, the amount's asset.
    fn incoming_payment_create<P: LedgerPort>(
        &mut self,
        port: &P,
        create: &CreateIncomingPayment,
        timestamp: u64,
    ) -> Result<IncomingPaymentView, PaymentsError> {
        let expires_at_max = timestamp.saturating_add(create.expiry_max_ns);
        let expires_at = match create.expires_at {
            None => expires_at_max,
            Some(at) if at > timestamp && at <= expires_at_max => at,
            Some(_) => return Err(IncomingPaymentError::InvalidExpiry.into()),
        };
        if create
            .incoming_amount
            .as_ref()
            .is_some_and(|amount| amount.value == 0)
        {
            return Err(IncomingPaymentError::InvalidAmount.into());
        }
        let address = create
            .wallet_address_id
            .and_then(|id| self.wallet_address(id))
            .ok_or(IncomingPaymentError::UnknownWalletAddress)?;
        if address.deactivated_at.is_some() {
            return Err(IncomingPaymentError::InactiveWalletAddress.into());
        }
        let asset = &self.assets[&address.asset_id];
        if let Some(amount) = &create.incoming_amount {
            if amount.asset_code != asset.code || amount.asset_scale != asset.scale {
                return Err(IncomingPaymentError::InvalidAmount.into());
            }
        }
        if self.flows.incoming.payments.contains_key(&create.id) {
            // The front chose a fresh v4 id: a repeat is a front bug, not chance.
            panic!("incoming payment ids are unique");
        }
        let payment = IncomingPayment {
            id: create.id,
            wallet_address_id: address.id,
            asset_id: address.asset_id,
            state: IncomingPaymentState::Pending,
            expires_at,
            incoming_amount: create.incoming_amount.as_ref().map(|amount| amount.value),
            metadata: create.metadata.clone(),
            created_at: timestamp,
            approved_at: None,
            cancelled_at: None,
            withdrawal_event: None,
        };
        let (id, address_id) = (payment.id, payment.wallet_address_id);
        let incoming = &mut self.flows.incoming;
        incoming.payments.insert(id, Arc::new(payment));
        let fresh = incoming.created.insert(timestamp, id).is_none();
        assert!(fresh, "one payment per command timestamp");
        incoming
            .by_wallet_address
            .insert((address_id, timestamp), id);
        incoming.expiries.insert((expires_at, id));
        let view = self.incoming_payment_view(port, id).expect("inserted");
        self.event_emit(WebhookEvent {
            id: event_id(id, EVENT_CREATED),
            event_type: INCOMING_PAYMENT_CREATED.to_owned(),
            data: EventData::incoming_payment(view.clone()),
            created_at: timestamp,
            withdrawal: None,
        });
        Ok(view)
    }

    fn incoming_payment_found(&self, id: Option<Uuid>) -> Result<Uuid, IncomingPaymentError> {
        id.filter(|id| self.incoming_payment(*id).is_some())
            .ok_or(IncomingPaymentError::UnknownPayment)
    }

    /// A PENDING payment neither approved nor cancelled (Rafiki's approve/cancel rules).
    fn incoming_payment_actionable(&self, id: Option<Uuid>) -> Result<Uuid, IncomingPaymentError> {
        let id = self.incoming_payment_found(id)?;
        let payment = &self.flows.incoming.payments[&id];
        if payment.state != IncomingPaymentState::Pending {
            return Err(IncomingPaymentError::WrongState);
        }
        if payment.approved_at.is_some() || payment.cancelled_at.is_some() {
            return Err(IncomingPaymentError::AlreadyActioned);
        }
        Ok(id)
    }

    /// `createIncomingPaymentWithdrawal`: the whole received amount, with the completion or
    /// expiry event's id as the transfer id (so a second one is `TransferExists`).
    fn execute_incoming_payment_withdrawal<P: LedgerPort>(
        &mut self,
        port: &mut P,
        id: Option<Uuid>,
        timeout_seconds: u64,
    ) -> Outcome {
        let payment = id
            .and_then(|id| self.incoming_payment(id))
            .ok_or(LiquidityError::InvalidId)?;
        let event = payment.withdrawal_event.ok_or(LiquidityError::InvalidId)?;
        let account = port
            .account(payment.id.as_u128())
            .ok_or(LiquidityError::InvalidId)?;
        let ledger = self.assets[&payment.asset_id].ledger;
        let transfer = withdrawal_transfer(
            event,
            payment.id.as_u128(),
            (payment.asset_id, ledger),
            account.credits_posted,
            timeout_seconds,
        )?;
        transfer_create(port, &transfer, Resolution::Post)
    }

    /// Creates the payment's ledger account if it does not exist yet (the first payment into
    /// it); returns the account id.
    pub(crate) fn incoming_payment_account<P: LedgerPort>(
        &self,
        port: &mut P,
        id: Uuid,
    ) -> Result<u128, LiquidityError> {
        let payment = &self.flows.incoming.payments[&id];
        if port.account(id.as_u128()).is_none() {
            let ledger = self.assets[&payment.asset_id].ledger;
            let account = liquidity_account(
                id.as_u128(),
                payment.asset_id,
                ledger,
                AccountCode::LiquidityIncoming,
            );
            account_create(port, &account)?;
        }
        Ok(id.as_u128())
    }

    /// Rafiki's `onCredit` for an incoming payment, after money arrived: PROCESSING, or
    /// COMPLETED with its event once `incomingAmount` is reached.
    pub(crate) fn incoming_payment_credited<P: LedgerRead>(
        &mut self,
        port: &P,
        id: Uuid,
        timestamp: u64,
    ) {
        let payment = &self.flows.incoming.payments[&id];
        if !payment.state.is_open() {
            return;
        }
        let received = port.account(id.as_u128()).map_or(0, |a| a.credits_posted);
        let complete = payment
            .incoming_amount
            .is_some_and(|amount| amount <= received);
        if complete {
            self.incoming_payment_close(port, id, IncomingPaymentState::Completed, timestamp);
        } else {
            let payment = self.flows.incoming.payment_mut(id);
            payment.state = IncomingPaymentState::Processing;
        }
    }

    /// Closes an open payment: with its completion or expiry event when it received something;
    /// an expired payment that received nothing is soft-deleted instead, without an event.
    fn incoming_payment_close<P: LedgerRead>(
        &mut self,
        port: &P,
        id: Uuid,
        state: IncomingPaymentState,
        timestamp: u64,
    ) {
        self.flows.incoming.close(id, state);
        let view = self.incoming_payment_view(port, id).expect("known");
        if view.received == 0 {
            if state == IncomingPaymentState::Expired {
                self.flows.incoming.deleted.insert(id);
            }
            return;
        }
        let (event_type, index) = match state {
            IncomingPaymentState::Completed => (INCOMING_PAYMENT_COMPLETED, EVENT_COMPLETED),
            IncomingPaymentState::Expired => (INCOMING_PAYMENT_EXPIRED, EVENT_EXPIRED),
            IncomingPaymentState::Pending | IncomingPaymentState::Processing => {
                unreachable!("close takes a final state (asserted in IncomingPayments::close)")
            }
        };
        let event = event_id(id, index);
        let withdrawal = WebhookWithdrawal {
            account_id: id,
            asset_id: view.payment.asset_id,
            amount: view.received,
        };
        self.event_emit(WebhookEvent {
            id: event,
            event_type: event_type.to_owned(),
            data: EventData::incoming_payment(view),
            created_at: timestamp,
            withdrawal: Some(withdrawal),
        });
        let payment = self.flows.incoming.payment_mut(id);
        payment.withdrawal_event = Some(event);
    }

    /// The earliest deadline of an open incoming payment.
    pub(crate) fn incoming_payment_deadline(&self) -> Option<u64> {
        self.flows.incoming.expiries.get_min().map(|(at, _)| *at)
    }

    /// Expires up to `EXPIRIES_PER_PULSE_MAX` open payments whose deadline is at or before
    /// `timestamp`, earliest first.
    pub(crate) fn incoming_payments_expire<P: LedgerRead>(&mut self, port: &P, timestamp: u64) {
        let due: Vec<Uuid> = self
            .flows
            .incoming
            .expiries
            .iter()
            .take_while(|(at, _)| *at <= timestamp)
            .take(EXPIRIES_PER_PULSE_MAX)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            self.incoming_payment_close(port, id, IncomingPaymentState::Expired, timestamp);
        }
    }

    /// Rafiki's deactivation rule: the address's open payments expire within the grace period.
    pub(crate) fn incoming_payments_deactivated(&mut self, wallet_address: Uuid, timestamp: u64) {
        let deadline = timestamp.saturating_add(DEACTIVATION_GRACE_PERIOD_NS);
        let incoming = &mut self.flows.incoming;
        let open: Vec<Uuid> = incoming
            .by_wallet_address
            .range((wallet_address, 0)..=(wallet_address, u64::MAX))
            .map(|(_, id)| *id)
            .filter(|id| {
                let payment = &incoming.payments[id];
                payment.state.is_open() && payment.expires_at > deadline
            })
            .collect();
        for id in open {
            incoming.expires_at_set(id, deadline);
        }
    }

    /// The incoming payment, unless it was soft-deleted.
    pub fn incoming_payment(&self, id: Uuid) -> Option<&IncomingPayment> {
        if self.flows.incoming.deleted.contains(&id) {
            return None;
        }
        self.flows.incoming.payments.get(&id).map(Arc::as_ref)
    }

    /// The incoming payment with its ledger figures.
    pub fn incoming_payment_view<P: LedgerRead>(
        &self,
        port: &P,
        id: Uuid,
    ) -> Option<IncomingPaymentView> {
        let payment = self.incoming_payment(id)?;
        let asset = &self.assets[&payment.asset_id];
        let account: Option<Account> = port.account(id.as_u128());
        Some(IncomingPaymentView {
            payment: payment.clone(),
            wallet_address_url: self.wallet_addresses_url(payment.wallet_address_id),
            asset_code: asset.code.clone(),
            asset_scale: asset.scale,
            received: account.as_ref().map_or(0, |a| a.credits_posted),
            liquidity: account.as_ref().map(liquidity_of),
        })
    }

    /// A page of a wallet address's incoming payments.
    pub fn incoming_payments_page(
        &self,
        wallet_address: Uuid,
        request: &PageRequest,
    ) -> (Vec<&IncomingPayment>, Page) {
        let incoming = &self.flows.incoming;
        let mut result = page(
            &incoming.by_wallet_address,
            (wallet_address, 0),
            (wallet_address, u64::MAX),
            |id| {
                incoming
                    .payments
                    .get(&id)
                    .filter(|p| p.wallet_address_id == wallet_address)
                    .map(|p| (p.wallet_address_id, p.created_at))
            },
            request,
        );
        result.ids.retain(|id| !incoming.deleted.contains(id));
        let payments = result
            .ids
            .iter()
            .map(|id| incoming.payments[id].as_ref())
            .collect();
        (payments, result)
    }

    fn wallet_addresses_url(&self, id: Uuid) -> String {
        self.wallet_address(id)
            .map(|address| address.url.clone())
            .expect("a payment's wallet address exists: addresses are never deleted")
    }
}

/// Creates one account; an existing one with the same fields counts as created.
pub(crate) fn account_create<P: LedgerPort>(
    port: &mut P,
    account: &Account,
) -> Result<(), LiquidityError> {
    use tally_ledger::CreateAccountStatus as S;
    let mut results = Vec::with_capacity(1);
    port.create_accounts(std::slice::from_ref(account), &mut results);
    assert_eq!(results.len(), 1);
    match results[0].status {
        S::Created | S::Exists => Ok(()),
        status => Err(LiquidityError::Ledger(crate::error::LedgerStatus(
            status as u32,
        ))),
    }
}

/// Rafiki's `IncomingPayment.toData`, as JSON text.
pub(crate) fn incoming_payment_data(view: &IncomingPaymentView) -> String {
    let payment = &view.payment;
    let (incoming_amount, received_amount) = (view.incoming_amount(), view.received_amount());
    let data = IncomingPaymentData {
        approved_at: payment.approved_at.map(IsoTime),
        cancelled_at: payment.cancelled_at.map(IsoTime),
        completed: payment.state == IncomingPaymentState::Completed,
        created_at: IsoTime(payment.created_at),
        expires_at: IsoTime(payment.expires_at),
        id: payment.id,
        incoming_amount: incoming_amount.as_ref().map(Amount::data),
        metadata: metadata_value(payment.metadata.as_deref()),
        received_amount: received_amount.data(),
        wallet_address_id: payment.wallet_address_id,
    };
    serde_json::to_string(&data).expect("plain data serializes")
}

/// `incoming_payment.*` event data. Fields in the byte order of their names, the order in which
/// the data was first written (through serde_json's sorted map): the data is state, and
/// replaying an old log must give the same bytes. Written straight, without a map, since the
/// core thread writes it for every incoming payment event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IncomingPaymentData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    approved_at: Option<IsoTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_at: Option<IsoTime>,
    completed: bool,
    created_at: IsoTime,
    expires_at: IsoTime,
    id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    incoming_amount: Option<AmountData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    received_amount: AmountData<'a>,
    wallet_address_id: Uuid,
}

/// Metadata text as a JSON value (the front sends only objects it parsed).
pub(crate) fn metadata_value(metadata: Option<&str>) -> Option<Value> {
    metadata.map(|text| serde_json::from_str(text).unwrap_or(Value::Null))
}
