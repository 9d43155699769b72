//! Outgoing payments (`rafiki-admin-api.md` §7.7, §7.9, §8.2): a quote being paid.
//!
//! FUNDING (created, `outgoing_payment.created` asks the ASE for the money) → SENDING on the
//! deposit → COMPLETED or FAILED; or CANCELLED from FUNDING. Rafiki moves a SENDING payment with
//! a polling worker; Tally pays a local receiver inside the very command that funds the payment,
//! so a funded payment never waits in SENDING: the deposit, the payment's transfers and the
//! incoming payment's completion are one journaled command, all applied or none.
//!
//! Money (`docs/payments.md` has the table): the deposit moves `debitAmount` settlement →
//! payment account (transfer id = the created event's id); the payment then moves
//! `debitAmountMinusFees` out of its account to the incoming payment's account — directly when
//! both are on one asset, through the two assets' liquidity accounts when not — and the fee
//! stays on the payment's account until the ASE withdraws it after the completion event.

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tally_ledger::{CreateTransferStatus, Transfer, TransferFlags};
use uuid::Uuid;

use crate::accounts::{
    asset_liquidity_account_id, liquidity_account, liquidity_of, settlement_account_id,
    AccountCode, TransferCode,
};
use crate::amount::AmountData;
use crate::command::{Outcome, Success};
use crate::error::{LiquidityError, OutgoingPaymentError, PaymentsError, QuoteError};
use crate::incoming_payments::{account_create, metadata_value};
use crate::liquidity::{transfer_create, withdrawal_transfer, Resolution};
use crate::page::{page, Page, PageRequest};
use crate::port::{LedgerPort, LedgerRead};
use crate::quotes::{CreateQuote, QuoteView};
use crate::state::Payments;
use crate::webhook_events::{
    event_id, DecimalText, EventData, IsoTime, WebhookEvent, WebhookWithdrawal,
};

/// Event types.
pub const OUTGOING_PAYMENT_CREATED: &str = "outgoing_payment.created";
/// Sent when the payment delivered (or found nothing left to deliver).
pub const OUTGOING_PAYMENT_COMPLETED: &str = "outgoing_payment.completed";
/// Sent when the payment could not deliver; its money waits on its account.
pub const OUTGOING_PAYMENT_FAILED: &str = "outgoing_payment.failed";
/// Sent when a payment leaves an asset's liquidity at or below its threshold.
pub const ASSET_LIQUIDITY_LOW: &str = "asset.liquidity_low";

/// `event_id(payment id, index)` for each event and derived transfer: each happens once.
const EVENT_CREATED: u32 = 0;
const EVENT_FINISHED: u32 = 1;
const EVENT_LIQUIDITY_LOW: u32 = 2;
const TRANSFER_FIRST: u32 = 8;

/// Rafiki's `OutgoingPaymentState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutgoingPaymentState {
    /// Waiting for the ASE's deposit.
    Funding,
    /// Funded and sending (never observed between commands for a local receiver).
    Sending,
    /// Delivered.
    Completed,
    /// Could not deliver.
    Failed,
    /// Cancelled while FUNDING.
    Cancelled,
}

impl OutgoingPaymentState {
    /// Rafiki's spelling.
    pub fn name(self) -> &'static str {
        match self {
            OutgoingPaymentState::Funding => "FUNDING",
            OutgoingPaymentState::Sending => "SENDING",
            OutgoingPaymentState::Completed => "COMPLETED",
            OutgoingPaymentState::Failed => "FAILED",
            OutgoingPaymentState::Cancelled => "CANCELLED",
        }
    }
}

/// One outgoing payment. Amounts and receiver are its quote's; sent amount and liquidity are
/// read from its ledger account (`OutgoingPaymentView`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingPayment {
    /// The quote's id; also its ledger account's id.
    pub id: Uuid,
    /// The sending address.
    pub wallet_address_id: Uuid,
    /// The sending asset.
    pub asset_id: Uuid,
    /// Current state.
    pub state: OutgoingPaymentState,
    /// Why it failed.
    pub error: Option<String>,
    /// Attempts at the current state (Rafiki retries; a local payment is attempted once).
    pub state_attempts: u32,
    /// JSON object text; `cancelOutgoingPayment` merges `cancellationReason` in.
    pub metadata: Option<String>,
    /// Core timestamp.
    pub created_at: u64,
    /// The `outgoing_payment.completed` or `.failed` event, once sent: its id is the id of the
    /// withdrawal of what is left on the payment's account.
    pub finished_event: Option<Uuid>,
}

/// An outgoing payment with its quote and ledger figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingPaymentView {
    /// The payment.
    pub payment: OutgoingPayment,
    /// Its quote.
    pub quote: QuoteView,
    /// Debits posted on its account (0 before the account exists).
    pub sent: u128,
    /// Its account's balance; `None` until the account exists.
    pub liquidity: Option<u128>,
}

/// The outgoing payment mutations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutgoingPaymentCommand {
    /// `createOutgoingPayment`.
    Create {
        /// The sending address; `None` when not a UUID.
        wallet_address_id: Option<Uuid>,
        /// The quote; `None` when not a UUID.
        quote_id: Option<Uuid>,
        /// JSON object text.
        metadata: Option<String>,
    },
    /// `createOutgoingPaymentFromIncomingPayment`: a quote, then a payment of it.
    CreateFromIncomingPayment {
        /// The quote to make (fixed send, or the receiver's remaining amount); boxed, as the
        /// largest variant.
        quote: Box<CreateQuote>,
        /// JSON object text.
        metadata: Option<String>,
    },
    /// `cancelOutgoingPayment`.
    Cancel {
        /// The payment; `None` when not a UUID.
        id: Option<Uuid>,
        /// Merged into the metadata as `cancellationReason`.
        reason: Option<String>,
    },
    /// `depositOutgoingPaymentLiquidity`: funds the payment, which then pays at once.
    Deposit {
        /// The payment; `None` when not a UUID.
        id: Option<Uuid>,
    },
    /// `depositEventLiquidity` (deprecated): the same, named by the created event.
    DepositEvent {
        /// The `outgoing_payment.created` event; `None` when not a UUID.
        event_id: Option<Uuid>,
    },
    /// `createOutgoingPaymentWithdrawal`: what is left on the payment's account.
    Withdraw {
        /// The payment; `None` when not a UUID.
        id: Option<Uuid>,
        /// 0: posted at once; otherwise pending.
        timeout_seconds: u64,
    },
    /// `withdrawEventLiquidity` (deprecated): the withdrawal an event names, posted at once.
    WithdrawEvent {
        /// Any event with a withdrawal; `None` when not a UUID.
        event_id: Option<Uuid>,
    },
}

/// The outgoing payments and their indexes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct OutgoingPayments {
    pub(crate) payments: OrdMap<Uuid, Arc<OutgoingPayment>>,
    /// Creation timestamp → payment.
    pub(crate) created: OrdMap<u64, Uuid>,
    /// `(wallet address, creation timestamp)` → payment.
    pub(crate) by_wallet_address: OrdMap<(Uuid, u64), Uuid>,
    /// `outgoing_payment.created` event → payment (`depositEventLiquidity`).
    pub(crate) by_created_event: OrdMap<Uuid, Uuid>,
}

impl OutgoingPayments {
    /// A known payment, to change; copied first when a checkpoint's snapshot shares it.
    fn payment_mut(&mut self, id: Uuid) -> &mut OutgoingPayment {
        Arc::make_mut(self.payments.get_mut(&id).expect("a known payment"))
    }
}

/// How a local payment ended.
enum Delivery {
    Delivered,
    NothingToDeliver,
    Failed(String),
}

impl Payments {
    pub(crate) fn execute_outgoing_payment<P: LedgerPort>(
        &mut self,
        port: &mut P,
        command: &OutgoingPaymentCommand,
        timestamp: u64,
    ) -> Outcome {
        match command {
            OutgoingPaymentCommand::Create {
                wallet_address_id,
                quote_id,
                metadata,
            } => {
                let view = self.outgoing_payment_create(
                    port,
                    *wallet_address_id,
                    *quote_id,
                    metadata,
                    timestamp,
                )?;
                Ok(Success::OutgoingPayment(Box::new(view)))
            }
            OutgoingPaymentCommand::CreateFromIncomingPayment { quote, metadata } => {
                let created = self
                    .quote_create(port, quote, timestamp)
                    .map_err(quote_error_for_payment)?;
                let payment = self.outgoing_payment_create(
                    port,
                    quote.wallet_address_id,
                    Some(created.quote.id),
                    metadata,
                    timestamp,
                );
                if payment.is_err() {
                    // A refused command changes nothing, so the quote made for it goes too. (A
                    // quote lifespan of 0 makes quotes that are born expired, which the payment
                    // refuses; Rafiki keeps such a quote.)
                    self.quote_forget(created.quote.id);
                }
                Ok(Success::OutgoingPayment(Box::new(payment?)))
            }
            OutgoingPaymentCommand::Cancel { id, reason } => {
                self.execute_outgoing_payment_cancel(port, *id, reason.as_deref())
            }
            OutgoingPaymentCommand::Deposit { id } => {
                let event = id
                    .and_then(|id| self.outgoing_payment(id))
                    .map(|payment| event_id(payment.id, EVENT_CREATED))
                    .ok_or(LiquidityError::InvalidId)?;
                self.outgoing_payment_fund(port, event, timestamp)
            }
            OutgoingPaymentCommand::DepositEvent { event_id } => {
                let event = event_id
                    .filter(|id| self.flows.outgoing.by_created_event.contains_key(id))
                    .ok_or(LiquidityError::InvalidId)?;
                self.outgoing_payment_fund(port, event, timestamp)
            }
            OutgoingPaymentCommand::Withdraw {
                id,
                timeout_seconds,
            } => self.execute_outgoing_payment_withdrawal(port, *id, *timeout_seconds),
            OutgoingPaymentCommand::WithdrawEvent { event_id } => {
                self.execute_event_withdrawal(port, *event_id)
            }
        }
    }

    /// Rafiki's checks: the address (known, active), the quote (known; its receiver still
    /// open; the same address; not expired; not used yet).
    fn outgoing_payment_create<P: LedgerPort>(
        &mut self,
        port: &P,
        wallet_address_id: Option<Uuid>,
        quote_id: Option<Uuid>,
        metadata: &Option<String>,
        timestamp: u64,
    ) -> Result<OutgoingPaymentView, PaymentsError> {
        let address = wallet_address_id
            .and_then(|id| self.wallet_address(id))
            .ok_or(OutgoingPaymentError::UnknownWalletAddress)?;
        if address.deactivated_at.is_some() {
            return Err(OutgoingPaymentError::InactiveWalletAddress.into());
        }
        let address_id = address.id;
        let quote = quote_id
            .and_then(|id| self.flows.quotes.quotes.get(&id))
            .ok_or(OutgoingPaymentError::UnknownQuote)?
            .clone();
        let receiver_open = self
            .incoming_payment(quote.receiver_payment)
            .is_some_and(|payment| payment.state.is_open() && payment.expires_at > timestamp);
        if !receiver_open
            || quote.wallet_address_id != address_id
            || quote.expires_at <= timestamp
            || self.flows.outgoing.payments.contains_key(&quote.id)
        {
            return Err(OutgoingPaymentError::InvalidQuote.into());
        }
        let payment = OutgoingPayment {
            id: quote.id,
            wallet_address_id: address_id,
            asset_id: quote.asset_id,
            state: OutgoingPaymentState::Funding,
            error: None,
            state_attempts: 0,
            metadata: metadata.clone(),
            created_at: timestamp,
            finished_event: None,
        };
        let id = payment.id;
        let created_event = event_id(id, EVENT_CREATED);
        let outgoing = &mut self.flows.outgoing;
        outgoing.payments.insert(id, Arc::new(payment));
        let fresh = outgoing.created.insert(timestamp, id).is_none();
        assert!(fresh, "one payment per command timestamp");
        outgoing
            .by_wallet_address
            .insert((address_id, timestamp), id);
        outgoing.by_created_event.insert(created_event, id);
        let view = self.outgoing_payment_view(port, id).expect("inserted");
        self.event_emit(WebhookEvent {
            id: created_event,
            event_type: OUTGOING_PAYMENT_CREATED.to_owned(),
            data: EventData::outgoing_payment(view.clone()),
            created_at: timestamp,
            withdrawal: None,
        });
        Ok(view)
    }

    fn execute_outgoing_payment_cancel<P: LedgerPort>(
        &mut self,
        port: &P,
        id: Option<Uuid>,
        reason: Option<&str>,
    ) -> Outcome {
        let payment = id
            .and_then(|id| self.flows.outgoing.payments.get(&id))
            .ok_or(OutgoingPaymentError::UnknownPayment)?;
        if payment.state != OutgoingPaymentState::Funding {
            return Err(OutgoingPaymentError::WrongState.into());
        }
        // Copied (if a snapshot shares it) only once the cancel is accepted.
        let payment = self.flows.outgoing.payment_mut(payment.id);
        payment.state = OutgoingPaymentState::Cancelled;
        if let Some(reason) = reason {
            let mut metadata = match metadata_value(payment.metadata.as_deref()) {
                Some(Value::Object(object)) => object,
                _ => Map::new(),
            };
            metadata.insert("cancellationReason".into(), json!(reason));
            payment.metadata = Some(Value::Object(metadata).to_string());
        }
        let id = payment.id;
        Ok(Success::OutgoingPayment(Box::new(
            self.outgoing_payment_view(port, id).expect("known"),
        )))
    }

    /// Rafiki's `fund`, then the local payment: the deposit (transfer id = the created event's
    /// id) moves the payment to SENDING, and the payment to its receiver completes or fails it
    /// in the same command.
    fn outgoing_payment_fund<P: LedgerPort>(
        &mut self,
        port: &mut P,
        created_event: Uuid,
        timestamp: u64,
    ) -> Outcome {
        let id = self.flows.outgoing.by_created_event[&created_event];
        let payment = &self.flows.outgoing.payments[&id];
        if payment.state != OutgoingPaymentState::Funding {
            return Err(OutgoingPaymentError::WrongState.into());
        }
        let quote = self.flows.quotes.quotes[&id].clone();
        let ledger = self.assets[&payment.asset_id].ledger;
        let account = liquidity_account(
            id.as_u128(),
            payment.asset_id,
            ledger,
            AccountCode::LiquidityOutgoing,
        );
        account_create(port, &account)?;
        let deposit = Transfer {
            id: created_event.as_u128(),
            debit_account_id: settlement_account_id(payment.asset_id),
            credit_account_id: id.as_u128(),
            amount: quote.debit_amount,
            ledger,
            code: TransferCode::Deposit as u16,
            ..Transfer::default()
        };
        transfer_create(port, &deposit, Resolution::Post)?;
        let payment = self.flows.outgoing.payment_mut(id);
        payment.state = OutgoingPaymentState::Sending;
        let delivery = self.outgoing_payment_deliver(port, id, timestamp);
        self.outgoing_payment_finish(port, id, delivery, timestamp);
        Ok(Success::Liquidity)
    }

    /// Pays the quote's local receiver: `debitAmountMinusFees` out of the payment's account,
    /// `receiveAmount` into the incoming payment's, as one linked chain of posted transfers.
    fn outgoing_payment_deliver<P: LedgerPort>(
        &mut self,
        port: &mut P,
        id: Uuid,
        timestamp: u64,
    ) -> Delivery {
        let quote = self.flows.quotes.quotes[&id].clone();
        if quote.expires_at <= timestamp {
            return Delivery::Failed("QuoteExpired".into());
        }
        let receiver_open = self
            .incoming_payment(quote.receiver_payment)
            .is_some_and(|payment| payment.state.is_open() && payment.expires_at > timestamp);
        if !receiver_open {
            // Rafiki: a receiver that no longer accepts money leaves nothing to deliver.
            return Delivery::NothingToDeliver;
        }
        let destination = match self.incoming_payment_account(port, quote.receiver_payment) {
            Ok(account) => account,
            Err(error) => return Delivery::Failed(format!("{error:?}")),
        };
        let source_ledger = self.assets[&quote.asset_id].ledger;
        let destination_ledger = self.assets[&quote.receive_asset_id].ledger;
        let leg = |n: u32, debit: u128, credit: u128, amount: u128, ledger: u32| Transfer {
            id: event_id(id, TRANSFER_FIRST + n).as_u128(),
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            ledger,
            code: TransferCode::Transfer as u16,
            ..Transfer::default()
        };
        let (source, receive) = (quote.debit_amount_minus_fees, quote.receive_amount);
        let source_liquidity = asset_liquidity_account_id(quote.asset_id);
        let destination_liquidity = asset_liquidity_account_id(quote.receive_asset_id);
        let mut legs = Vec::with_capacity(2);
        if quote.asset_id == quote.receive_asset_id {
            legs.push(leg(
                0,
                id.as_u128(),
                destination,
                source.min(receive),
                source_ledger,
            ));
            if source > receive {
                legs.push(leg(
                    1,
                    id.as_u128(),
                    source_liquidity,
                    source - receive,
                    source_ledger,
                ));
            } else if receive > source {
                legs.push(leg(
                    1,
                    destination_liquidity,
                    destination,
                    receive - source,
                    source_ledger,
                ));
            }
        } else {
            legs.push(leg(
                0,
                id.as_u128(),
                source_liquidity,
                source,
                source_ledger,
            ));
            legs.push(leg(
                1,
                destination_liquidity,
                destination,
                receive,
                destination_ledger,
            ));
        }
        let chain_end = legs.len() - 1;
        for transfer in &mut legs[..chain_end] {
            transfer.flags = TransferFlags(TransferFlags::LINKED);
        }
        let mut results = Vec::with_capacity(legs.len());
        port.create_transfers(&legs, &mut results);
        assert_eq!(results.len(), legs.len());
        // A linked chain fails as a whole: the root cause is the one result that is not
        // `LinkedEventFailed`.
        let failure = results.iter().zip(&legs).find(|(result, _)| {
            !matches!(
                result.status,
                CreateTransferStatus::Created | CreateTransferStatus::LinkedEventFailed
            )
        });
        if let Some((failure, transfer)) = failure {
            let insufficient_liquidity = failure.status == CreateTransferStatus::ExceedsCredits
                && transfer.debit_account_id == destination_liquidity;
            return Delivery::Failed(if insufficient_liquidity {
                "InsufficientLiquidity".into()
            } else {
                format!("{:?}", failure.status)
            });
        }
        self.incoming_payment_credited(port, quote.receiver_payment, timestamp);
        if legs
            .iter()
            .any(|t| t.debit_account_id == destination_liquidity)
        {
            self.asset_liquidity_checked(port, id, quote.receive_asset_id, timestamp);
        }
        Delivery::Delivered
    }

    /// Rafiki's `onDebit` of an asset's liquidity account: `asset.liquidity_low` when its
    /// balance is at or below the asset's threshold.
    fn asset_liquidity_checked<P: LedgerPort>(
        &mut self,
        port: &P,
        payment: Uuid,
        asset_id: Uuid,
        timestamp: u64,
    ) {
        let asset = &self.assets[&asset_id];
        let Some(threshold) = asset.liquidity_threshold else {
            return;
        };
        let balance = port
            .account(asset_liquidity_account_id(asset_id))
            .map_or(0, |account| liquidity_of(&account));
        if balance > threshold {
            return;
        }
        let data = json!({
            "id": asset.id.to_string(),
            "asset": {"id": asset.id.to_string(), "code": asset.code, "scale": asset.scale},
            "liquidityThreshold": threshold.to_string(),
            "balance": balance.to_string(),
        });
        self.event_emit(WebhookEvent {
            id: event_id(payment, EVENT_LIQUIDITY_LOW),
            event_type: ASSET_LIQUIDITY_LOW.to_owned(),
            data: EventData::text_of(data.to_string()),
            created_at: timestamp,
            withdrawal: None,
        });
    }

    /// COMPLETED or FAILED, with the event that tells the ASE what is left to withdraw.
    fn outgoing_payment_finish<P: LedgerPort>(
        &mut self,
        port: &P,
        id: Uuid,
        delivery: Delivery,
        timestamp: u64,
    ) {
        let event = event_id(id, EVENT_FINISHED);
        let payment = self.flows.outgoing.payment_mut(id);
        assert_eq!(payment.state, OutgoingPaymentState::Sending);
        let event_type = match delivery {
            Delivery::Delivered | Delivery::NothingToDeliver => {
                payment.state = OutgoingPaymentState::Completed;
                OUTGOING_PAYMENT_COMPLETED
            }
            Delivery::Failed(error) => {
                payment.state = OutgoingPaymentState::Failed;
                payment.error = Some(error);
                OUTGOING_PAYMENT_FAILED
            }
        };
        payment.finished_event = Some(event);
        let view = self.outgoing_payment_view(port, id).expect("known");
        let balance = view.liquidity.unwrap_or(0);
        let withdrawal = (balance > 0).then_some(WebhookWithdrawal {
            account_id: id,
            asset_id: view.payment.asset_id,
            amount: balance,
        });
        self.event_emit(WebhookEvent {
            id: event,
            event_type: event_type.to_owned(),
            data: EventData::outgoing_payment(view),
            created_at: timestamp,
            withdrawal,
        });
    }

    /// `createOutgoingPaymentWithdrawal`: the whole balance left, with the completion or
    /// failure event's id as the transfer id.
    fn execute_outgoing_payment_withdrawal<P: LedgerPort>(
        &mut self,
        port: &mut P,
        id: Option<Uuid>,
        timeout_seconds: u64,
    ) -> Outcome {
        let payment = id
            .and_then(|id| self.outgoing_payment(id))
            .ok_or(LiquidityError::InvalidId)?;
        let event = payment.finished_event.ok_or(LiquidityError::InvalidId)?;
        let balance = port
            .account(payment.id.as_u128())
            .map_or(0, |account| liquidity_of(&account));
        if balance == 0 {
            return Err(LiquidityError::InsufficientBalance.into());
        }
        let ledger = self.assets[&payment.asset_id].ledger;
        let transfer = withdrawal_transfer(
            event,
            payment.id.as_u128(),
            (payment.asset_id, ledger),
            balance,
            timeout_seconds,
        )?;
        transfer_create(port, &transfer, Resolution::Post)
    }

    /// `withdrawEventLiquidity`: exactly the withdrawal the event names, posted at once, with
    /// the event's id as the transfer id.
    fn execute_event_withdrawal<P: LedgerPort>(
        &mut self,
        port: &mut P,
        event_id: Option<Uuid>,
    ) -> Outcome {
        let (event, withdrawal) = event_id
            .and_then(|id| self.webhook_event(id))
            .and_then(|event| Some((event.id, event.withdrawal?)))
            .ok_or(LiquidityError::InvalidId)?;
        let ledger = self
            .assets
            .get(&withdrawal.asset_id)
            .map(|asset| asset.ledger)
            .ok_or(LiquidityError::UnknownAsset)?;
        let transfer = withdrawal_transfer(
            event,
            withdrawal.account_id.as_u128(),
            (withdrawal.asset_id, ledger),
            withdrawal.amount,
            0,
        )?;
        transfer_create(port, &transfer, Resolution::Post)
    }

    /// The outgoing payment with this id.
    pub fn outgoing_payment(&self, id: Uuid) -> Option<&OutgoingPayment> {
        self.flows.outgoing.payments.get(&id).map(Arc::as_ref)
    }

    /// The outgoing payment with its quote and ledger figures.
    pub fn outgoing_payment_view<P: LedgerRead>(
        &self,
        port: &P,
        id: Uuid,
    ) -> Option<OutgoingPaymentView> {
        let payment = self.outgoing_payment(id)?;
        let account = port.account(id.as_u128());
        Some(OutgoingPaymentView {
            payment: payment.clone(),
            quote: self.quote_view(id).expect("a payment's quote exists"),
            sent: account.as_ref().map_or(0, |a| a.debits_posted),
            liquidity: account.as_ref().map(liquidity_of),
        })
    }

    /// A page of a wallet address's outgoing payments.
    pub fn outgoing_payments_of(
        &self,
        wallet_address: Uuid,
        request: &PageRequest,
    ) -> (Vec<Uuid>, Page) {
        let outgoing = &self.flows.outgoing;
        let result = page(
            &outgoing.by_wallet_address,
            (wallet_address, 0),
            (wallet_address, u64::MAX),
            |id| {
                outgoing
                    .payments
                    .get(&id)
                    .filter(|p| p.wallet_address_id == wallet_address)
                    .map(|p| (p.wallet_address_id, p.created_at))
            },
            request,
        );
        (result.ids.clone(), result)
    }

    /// A page of all outgoing payments (`outgoingPayments`), keeping those `keep` accepts. A
    /// filtered read scans every payment, as Rafiki's SQL does without an index.
    pub fn outgoing_payments_page(
        &self,
        request: &PageRequest,
        keep: impl Fn(&OutgoingPayment, &str) -> bool,
    ) -> (Vec<Uuid>, Page) {
        let outgoing = &self.flows.outgoing;
        let quotes = &self.flows.quotes.quotes;
        let filtered: OrdMap<u64, Uuid> = outgoing
            .created
            .iter()
            .filter(|(_, id)| keep(&outgoing.payments[*id], &quotes[*id].receiver))
            .map(|(at, id)| (*at, *id))
            .collect();
        let result = page(
            &filtered,
            0,
            u64::MAX,
            |id| outgoing.payments.get(&id).map(|p| p.created_at),
            request,
        );
        (result.ids.clone(), result)
    }
}

impl Payments {
    /// A page of incoming and outgoing payments together (`payments`, Rafiki's
    /// `combinedPaymentsView`), in creation order; `incoming`/`outgoing` pick the kinds and
    /// `keep` the wallet addresses. Scans every payment, as the view does.
    pub fn payments_page(
        &self,
        request: &PageRequest,
        incoming: bool,
        outgoing: bool,
        keep: impl Fn(Uuid) -> bool,
    ) -> (Vec<Uuid>, Page) {
        let flows = &self.flows;
        let mut merged: OrdMap<u64, Uuid> = OrdMap::new();
        if incoming {
            merged.extend(
                flows
                    .incoming
                    .created
                    .iter()
                    .filter(|(_, id)| {
                        !flows.incoming.deleted.contains(*id)
                            && keep(flows.incoming.payments[*id].wallet_address_id)
                    })
                    .map(|(at, id)| (*at, *id)),
            );
        }
        if outgoing {
            merged.extend(
                flows
                    .outgoing
                    .created
                    .iter()
                    .filter(|(_, id)| keep(flows.outgoing.payments[*id].wallet_address_id))
                    .map(|(at, id)| (*at, *id)),
            );
        }
        let key_of = |id: Uuid| {
            flows
                .incoming
                .payments
                .get(&id)
                .map(|p| p.created_at)
                .or_else(|| flows.outgoing.payments.get(&id).map(|p| p.created_at))
        };
        let result = page(&merged, 0, u64::MAX, key_of, request);
        (result.ids.clone(), result)
    }
}

/// Quote errors met while creating a payment from an incoming payment, in the payment's terms
/// (Rafiki's translation table, `rafiki-admin-api.md` §4.3).
fn quote_error_for_payment(error: PaymentsError) -> PaymentsError {
    let PaymentsError::Quote(quote) = error else {
        return error;
    };
    let translated = match quote {
        QuoteError::UnknownWalletAddress => OutgoingPaymentError::UnknownWalletAddress,
        QuoteError::InvalidAmount => OutgoingPaymentError::InvalidAmount,
        QuoteError::InvalidReceiver => OutgoingPaymentError::InvalidReceiver,
        QuoteError::InactiveWalletAddress => OutgoingPaymentError::InactiveWalletAddress,
        QuoteError::NonPositiveReceiveAmount { .. } => OutgoingPaymentError::NegativeReceiveAmount,
        QuoteError::CouldNotFetchRates => OutgoingPaymentError::CouldNotFetchRates,
    };
    translated.into()
}

/// Rafiki's `OutgoingPayment.toData`, as JSON text.
pub(crate) fn outgoing_payment_data(view: &OutgoingPaymentView) -> String {
    let payment = &view.payment;
    let quote = &view.quote;
    let data = OutgoingPaymentData {
        balance: DecimalText(view.liquidity.unwrap_or(0)),
        created_at: IsoTime(payment.created_at),
        debit_amount: quote.debit_amount.data(),
        error: payment.error.as_deref(),
        id: payment.id,
        metadata: metadata_value(payment.metadata.as_deref()),
        receive_amount: quote.receive_amount.data(),
        receiver: &quote.quote.receiver,
        sent_amount: quote.debit_amount.data_of(view.sent),
        state: payment.state.name(),
        state_attempts: payment.state_attempts,
        wallet_address_id: payment.wallet_address_id,
    };
    serde_json::to_string(&data).expect("plain data serializes")
}

/// `outgoing_payment.*` event data. Fields in the byte order of their names, the order in which
/// the data was first written (through serde_json's sorted map): the data is state, and
/// replaying an old log must give the same bytes. Written straight, without a map, since the
/// core thread writes it for every outgoing payment event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutgoingPaymentData<'a> {
    balance: DecimalText,
    created_at: IsoTime,
    debit_amount: AmountData<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    receive_amount: AmountData<'a>,
    receiver: &'a str,
    sent_amount: AmountData<'a>,
    state: &'a str,
    state_attempts: u32,
    wallet_address_id: Uuid,
}
