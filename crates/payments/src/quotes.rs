//! Quotes (`rafiki-admin-api.md` §7.6, §8.3): what sending to a receiver costs, fixed-send or
//! fixed-receive, with the sending fee, between assets at an exchange rate the front fetched and
//! carried inside the command. Only receivers on this instance are quoted (the local payment
//! method); the front refuses others before they reach the core. A quote is immutable and used
//! by at most one outgoing payment, whose id is the quote's.
//!
//! The arithmetic is Rafiki's, floating point included (`rates/util.ts`, `fee/model.ts`): the
//! amounts an operator sees must match what Rafiki would have quoted. f64 arithmetic is exact
//! IEEE 754 and so deterministic on replay.

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::amount::{Amount, AmountInput};
use crate::command::{Outcome, Success};
use crate::error::{PaymentsError, QuoteError};
use crate::fees::{Fee, FeeType};
use crate::incoming_payments::IncomingPaymentState;
use crate::page::{page, Page, PageRequest};
use crate::port::LedgerPort;
use crate::state::Payments;

/// Rafiki's `QUOTE_LIFESPAN` default: 5 minutes.
pub const QUOTE_LIFESPAN_NS: u64 = 5 * 60 * 1_000_000_000;

/// An exchange rate the front fetched: one `to_code` unit per `from_code` unit, before scales.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ExchangeRate(pub f64);

// Rates compare by their bits: the front sends only finite positive rates, and a stored
// outcome must compare equal to itself.
impl PartialEq for ExchangeRate {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for ExchangeRate {}

/// The rates the front found for a quote: from the sender's asset code to the receiver's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// The code the rates are quoted from (the sending asset's code).
    pub base: String,
    /// `(code, rate)` pairs, as the rates source gave them.
    pub rates: Vec<(String, ExchangeRate)>,
}

/// `createQuote`'s input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateQuote {
    /// The new quote's id (UUID v7, chosen by the front, as an incoming payment's).
    pub id: Uuid,
    /// The sending address; `None` when not a UUID.
    pub wallet_address_id: Option<Uuid>,
    /// The receiver, as sent (an incoming payment URL).
    pub receiver: String,
    /// The local incoming payment the URL names, when it names one under this instance's
    /// Open Payments URL.
    pub receiver_payment: Option<Uuid>,
    /// Fixed send.
    pub debit_amount: Option<AmountInput>,
    /// Fixed receive.
    pub receive_amount: Option<AmountInput>,
    /// Rates from the sending asset's code, when the front could fetch them; `None` when
    /// it had none (the assets may still turn out to share a code).
    pub rates: Option<Rates>,
    /// The operator's `--quote-lifespan`, in ns.
    pub lifespan_ns: u64,
}

/// One quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// Chosen by the front; the outgoing payment made from it has the same id.
    pub id: Uuid,
    /// The sending address.
    pub wallet_address_id: Uuid,
    /// The sending asset.
    pub asset_id: Uuid,
    /// The receiver URL, as sent.
    pub receiver: String,
    /// The local incoming payment it pays.
    pub receiver_payment: Uuid,
    /// The receiving asset.
    pub receive_asset_id: Uuid,
    /// What the sender pays, fee included.
    pub debit_amount: u128,
    /// What is sent to the receiver's side (the debit amount less the fee).
    pub debit_amount_minus_fees: u128,
    /// What the receiver gets.
    pub receive_amount: u128,
    /// Core timestamp.
    pub created_at: u64,
    /// Core-clock deadline for creating a payment from it.
    pub expires_at: u64,
    /// Receive units per debit unit, scales included.
    pub estimated_exchange_rate: ExchangeRate,
    /// The sending fee applied, if any.
    pub fee_id: Option<Uuid>,
}

/// A quote with its assets' codes and scales.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteView {
    /// The quote.
    pub quote: Quote,
    /// `debitAmount`.
    pub debit_amount: Amount,
    /// `receiveAmount`.
    pub receive_amount: Amount,
}

/// The quotes and their indexes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Quotes {
    /// Behind an `Arc`, as webhook events are (`WebhookEvents::events`): insertions shift
    /// pointers, and the fund step reads a quote without copying its receiver URL.
    pub(crate) quotes: OrdMap<Uuid, Arc<Quote>>,
    /// `(wallet address, creation timestamp)` → quote.
    pub(crate) by_wallet_address: OrdMap<(Uuid, u64), Uuid>,
}

/// What the local payment method quoted, before fees are added.
struct Quoted {
    debit: u128,
    receive: u128,
    scaled_rate: f64,
}

impl Payments {
    pub(crate) fn execute_create_quote<P: LedgerPort>(
        &mut self,
        port: &P,
        create: &CreateQuote,
        timestamp: u64,
    ) -> Outcome {
        let quote = self.quote_create(port, create, timestamp)?;
        Ok(Success::Quote(Box::new(quote)))
    }

    /// Rafiki's `createQuote` (quote service, local payment method), in its order of checks.
    pub(crate) fn quote_create<P: LedgerPort>(
        &mut self,
        port: &P,
        create: &CreateQuote,
        timestamp: u64,
    ) -> Result<QuoteView, PaymentsError> {
        if create.debit_amount.is_some() && create.receive_amount.is_some() {
            return Err(QuoteError::InvalidAmount.into());
        }
        let address = create
            .wallet_address_id
            .and_then(|id| self.wallet_address(id))
            .ok_or(QuoteError::UnknownWalletAddress)?;
        if address.deactivated_at.is_some() {
            return Err(QuoteError::InactiveWalletAddress.into());
        }
        let (address_id, asset_id) = (address.id, address.asset_id);
        let asset = self.assets[&asset_id].clone();
        if let Some(debit) = &create.debit_amount {
            if debit.value == 0
                || debit.asset_code != asset.code
                || debit.asset_scale != asset.scale
            {
                return Err(QuoteError::InvalidAmount.into());
            }
        }
        if create
            .receive_amount
            .as_ref()
            .is_some_and(|receive| receive.value == 0)
        {
            return Err(QuoteError::InvalidAmount.into());
        }
        let receiver = self.receiver_resolve(port, create, timestamp)?;
        let receive_asset = self.assets[&receiver.asset_id].clone();
        let fee = self.fee_latest(asset_id, FeeType::Sending).cloned();
        let fixed_debit_fee = match &create.debit_amount {
            Some(debit) => fee_of(fee.as_ref(), debit.value)?,
            None => 0,
        };
        let convert = Conversion {
            from: (&asset.code, asset.scale),
            to: (&receive_asset.code, receive_asset.scale),
            rates: create.rates.as_ref(),
        };
        let quoted = match (&create.debit_amount, &create.receive_amount) {
            (Some(debit), _) => {
                let debit = debit.value.saturating_sub(fixed_debit_fee);
                let (receive, scaled_rate) = convert.source(debit)?;
                Quoted {
                    debit,
                    receive,
                    scaled_rate,
                }
            }
            (None, Some(receive)) => {
                let (debit, scaled_rate) = convert.destination(receive.value)?;
                Quoted {
                    debit,
                    receive: receive.value,
                    scaled_rate,
                }
            }
            (None, None) => {
                let remaining = receiver.remaining.expect("resolve checked incomingAmount");
                let (debit, scaled_rate) = convert.destination(remaining)?;
                Quoted {
                    debit,
                    receive: remaining,
                    scaled_rate,
                }
            }
        };
        if quoted.debit == 0 || quoted.receive == 0 {
            let min_send = min_send_amount(quoted.scaled_rate, fee.as_ref());
            return Err(QuoteError::NonPositiveReceiveAmount {
                min_send_amount: Some(Amount {
                    value: min_send,
                    asset_code: asset.code.clone(),
                    asset_scale: asset.scale,
                }),
            }
            .into());
        }
        let (debit_amount, debit_amount_minus_fees) = match &create.debit_amount {
            Some(_) => {
                if receiver.remaining.is_some_and(|max| quoted.receive > max) {
                    return Err(QuoteError::InvalidAmount.into());
                }
                (quoted.debit + fixed_debit_fee, quoted.debit)
            }
            None => {
                let fixed_receive_fee = fee_of(fee.as_ref(), quoted.debit)?;
                let debit = quoted
                    .debit
                    .checked_add(fixed_receive_fee)
                    .ok_or(QuoteError::InvalidAmount)?;
                (debit, quoted.debit)
            }
        };
        let expires_at = timestamp
            .saturating_add(create.lifespan_ns)
            .min(receiver.expires_at);
        let quote = Quote {
            id: create.id,
            wallet_address_id: address_id,
            asset_id,
            receiver: create.receiver.clone(),
            receiver_payment: receiver.id,
            receive_asset_id: receiver.asset_id,
            debit_amount,
            debit_amount_minus_fees,
            receive_amount: quoted.receive,
            created_at: timestamp,
            expires_at,
            estimated_exchange_rate: ExchangeRate(quoted.scaled_rate),
            fee_id: fee.map(|fee| fee.id),
        };
        let id = quote.id;
        let quotes = &mut self.flows.quotes;
        let fresh = quotes.quotes.insert(id, Arc::new(quote)).is_none();
        // The front chose a fresh v4 id: a repeat is a front bug, not chance.
        assert!(fresh, "quote ids are unique");
        quotes.by_wallet_address.insert((address_id, timestamp), id);
        Ok(self.quote_view(id).expect("inserted"))
    }

    /// Rafiki's `resolveReceiver`: a local incoming payment that still accepts money, with the
    /// requested amounts checked against it.
    fn receiver_resolve<P: LedgerPort>(
        &self,
        port: &P,
        create: &CreateQuote,
        timestamp: u64,
    ) -> Result<ResolvedReceiver, QuoteError> {
        let view = create
            .receiver_payment
            .and_then(|id| self.incoming_payment_view(port, id))
            .filter(|view| {
                view.payment.state.is_open()
                    && view.payment.state != IncomingPaymentState::Completed
                    && view.payment.expires_at > timestamp
            })
            .ok_or(QuoteError::InvalidReceiver)?;
        let remaining = view
            .payment
            .incoming_amount
            .map(|amount| amount.saturating_sub(view.received));
        if let Some(receive) = &create.receive_amount {
            if receive.asset_code != view.asset_code || receive.asset_scale != view.asset_scale {
                return Err(QuoteError::InvalidAmount);
            }
            if remaining.is_some_and(|remaining| remaining < receive.value) {
                return Err(QuoteError::InvalidAmount);
            }
        } else if create.debit_amount.is_none() && remaining.is_none() {
            return Err(QuoteError::InvalidReceiver);
        }
        Ok(ResolvedReceiver {
            id: view.payment.id,
            asset_id: view.payment.asset_id,
            expires_at: view.payment.expires_at,
            remaining,
        })
    }

    /// Removes a quote that the current command created, when the command fails after it.
    pub(crate) fn quote_forget(&mut self, id: Uuid) {
        let quotes = &mut self.flows.quotes;
        let quote = quotes.quotes.remove(&id).expect("created by this command");
        let indexed = quotes
            .by_wallet_address
            .remove(&(quote.wallet_address_id, quote.created_at));
        assert_eq!(indexed, Some(id), "a quote is indexed by its address");
    }

    /// The quote with its assets.
    pub fn quote_view(&self, id: Uuid) -> Option<QuoteView> {
        let quote = self.flows.quotes.quotes.get(&id)?;
        let amount = |asset: Uuid, value: u128| {
            let asset = &self.assets[&asset];
            Amount {
                value,
                asset_code: asset.code.clone(),
                asset_scale: asset.scale,
            }
        };
        Some(QuoteView {
            quote: Quote::clone(quote),
            debit_amount: amount(quote.asset_id, quote.debit_amount),
            receive_amount: amount(quote.receive_asset_id, quote.receive_amount),
        })
    }

    /// A page of a wallet address's quotes.
    pub fn quotes_page(&self, wallet_address: Uuid, request: &PageRequest) -> (Vec<Uuid>, Page) {
        let quotes = &self.flows.quotes;
        let result = page(
            &quotes.by_wallet_address,
            (wallet_address, 0),
            (wallet_address, u64::MAX),
            |id| {
                quotes
                    .quotes
                    .get(&id)
                    .filter(|q| q.wallet_address_id == wallet_address)
                    .map(|q| (q.wallet_address_id, q.created_at))
            },
            request,
        );
        (result.ids.clone(), result)
    }
}

/// A receiver as a quote needs it.
struct ResolvedReceiver {
    id: Uuid,
    asset_id: Uuid,
    expires_at: u64,
    /// `incomingAmount − receivedAmount`, when it has an `incomingAmount`.
    remaining: Option<u128>,
}

/// Rafiki's rates service: the identity for the same asset, the scale difference alone for the
/// same code, else the fetched rate from the sending code to the receiving one.
struct Conversion<'a> {
    from: (&'a str, u8),
    to: (&'a str, u8),
    rates: Option<&'a Rates>,
}

impl Conversion<'_> {
    fn scaled_rate(&self) -> Result<Option<f64>, QuoteError> {
        if self.from == self.to {
            return Ok(None);
        }
        let rate = if self.from.0 == self.to.0 {
            1.0
        } else {
            self.rates
                .filter(|rates| rates.base == self.from.0)
                .and_then(|rates| rates.rates.iter().find(|(code, _)| code == self.to.0))
                .map(|(_, rate)| rate.0)
                .filter(|rate| rate.is_finite() && *rate > 0.0)
                .ok_or(QuoteError::CouldNotFetchRates)?
        };
        let scale_difference = i32::from(self.to.1) - i32::from(self.from.1);
        Ok(Some(rate * 10f64.powi(scale_difference)))
    }

    /// Rafiki's `convertSource`: `floor(source × rate)`.
    fn source(&self, amount: u128) -> Result<(u128, f64), QuoteError> {
        Ok(match self.scaled_rate()? {
            None => (amount, 1.0),
            Some(rate) => (float_to_amount((amount as f64 * rate).floor()), rate),
        })
    }

    /// Rafiki's `convertDestination`: `ceil(destination / rate)`.
    fn destination(&self, amount: u128) -> Result<(u128, f64), QuoteError> {
        Ok(match self.scaled_rate()? {
            None => (amount, 1.0),
            Some(rate) => (float_to_amount((amount as f64 / rate).ceil()), rate),
        })
    }
}

/// A non-negative float as an amount (JavaScript's `BigInt(Math.floor(...))`); saturates
/// instead of throwing on values beyond the ledger's range.
fn float_to_amount(value: f64) -> u128 {
    if value.is_nan() || value <= 0.0 {
        0
    } else {
        value as u128
    }
}

/// Rafiki's `Fee.calculate`: `ceil(principal × basisPoints / 10000) + fixed`.
pub(crate) fn fee_of(fee: Option<&Fee>, principal: u128) -> Result<u128, QuoteError> {
    let Some(fee) = fee else {
        return Ok(0);
    };
    let percentage = f64::from(fee.basis_points) / 10_000.0;
    float_to_amount((principal as f64 * percentage).ceil())
        .checked_add(fee.fixed)
        .ok_or(QuoteError::InvalidAmount)
}

/// Rafiki's `calculateMinSendAmount` over the local method's `ceil(1 / rate)`.
fn min_send_amount(scaled_rate: f64, fee: Option<&Fee>) -> u128 {
    let quote_min = float_to_amount((1.0 / scaled_rate).ceil());
    let Some(fee) = fee else {
        return quote_min;
    };
    let inverted = 1.0 - (f64::from(fee.basis_points) / 10_000.0).clamp(0.0, 1.0);
    float_to_amount((quote_min.saturating_add(fee.fixed) as f64 / inverted).ceil())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_as_rafiki() {
        let rates = Rates {
            base: "USD".into(),
            rates: vec![("EUR".into(), ExchangeRate(0.5))],
        };
        let usd_to_eur = Conversion {
            from: ("USD", 2),
            to: ("EUR", 2),
            rates: Some(&rates),
        };
        assert_eq!(usd_to_eur.source(101).unwrap(), (50, 0.5));
        assert_eq!(usd_to_eur.destination(51).unwrap(), (102, 0.5));
        let scale_only = Conversion {
            from: ("USD", 2),
            to: ("USD", 4),
            rates: None,
        };
        assert_eq!(scale_only.source(3).unwrap().0, 300);
        let missing = Conversion {
            from: ("USD", 2),
            to: ("MXN", 2),
            rates: Some(&rates),
        };
        assert_eq!(missing.source(1), Err(QuoteError::CouldNotFetchRates));
    }

    #[test]
    fn fees_round_up() {
        let fee = Fee {
            id: Uuid::nil(),
            asset_id: Uuid::nil(),
            fee_type: FeeType::Sending,
            fixed: 1,
            basis_points: 100,
            created_at: 0,
        };
        assert_eq!(fee_of(Some(&fee), 1000).unwrap(), 11);
        assert_eq!(fee_of(Some(&fee), 1001).unwrap(), 12);
        assert_eq!(fee_of(None, 1001).unwrap(), 0);
        assert_eq!(min_send_amount(1.0, Some(&fee)), 3);
    }
}
