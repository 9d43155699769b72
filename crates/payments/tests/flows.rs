//! Property test of the payment flows (issue 8) over a real in-memory ledger.
//!
//! Each case sets up three assets (USD scale 2, EUR scale 2 and USD scale 4: two codes, an
//! exchange rate between them that a quote may lack, and a scale conversion that needs none),
//! each with its own liquidity and maybe a liquidity threshold, and two wallet addresses per
//! asset. Then a random sequence of steps: sending fees, asset deposits, wallet addresses
//! deactivated and re-activated, incoming payments and receivers (with and without
//! `incomingAmount`, some expiring within seconds), cancels, quotes (fixed send, fixed receive,
//! neither; rates fetched, missing or unrelated), outgoing payments (also from an incoming
//! payment, and from quotes already used or expired), their funding (also by the deprecated
//! `depositEventLiquidity`), cancels, the clock moving by seconds, minutes or a day with the
//! core's pulse there (`Payments::pulse` after the ledger's expiry, as the pulse entry runs
//! them) or with the pulse still to come (the core stamps it after the commands of its turn),
//! withdrawals of incoming and outgoing payment liquidity (posted at once or pending, then
//! posted, voided or left to expire), the deprecated `withdrawEventLiquidity`, and checkpoints
//! swapped in mid-run. Operators' quote lifespans vary: 5 minutes, 2 s, 0, 48 hours.
//!
//! `Book` is the test's own record of what it asked for: addresses and whether they are active,
//! fees, each incoming payment's asset, amount and deadline (pulled in by a deactivation as
//! Rafiki does), each quote's amounts (computed here with Rafiki's arithmetic), each outgoing
//! payment's expected ending and what each incoming payment should have received. It predicts
//! which commands succeed and how a funding ends (delivered, nothing to deliver, `QuoteExpired`,
//! `InsufficientLiquidity`). After every step the ledger is checked against the book through
//! the harness's port, never against the domain's own figures:
//!
//! * per ledger, the debits of all accounts equal their credits, posted and pending: money is
//!   never created or lost; no liquidity account is overdrawn, no settlement account over-credited;
//! * an outgoing payment has no account while FUNDING or CANCELLED; once funded its account was
//!   credited `debitAmount` and debited `debitAmountMinusFees` when it delivered (nothing when it
//!   failed or found nothing to deliver), plus what its withdrawal moved, posted or pending; its
//!   finishing event offers exactly the balance left;
//! * an incoming payment's account was credited exactly the `receiveAmount`s of the payments
//!   that delivered to it; it is COMPLETED exactly when that reaches `incomingAmount`, EXPIRED
//!   (or soft-deleted, when it received nothing) once a pulse passed its deadline, and an expired
//!   one receives nothing more;
//! * a quote pays at most one outgoing payment;
//! * the events of each type are as many as the book counts (created, completed, expired,
//!   failed, `asset.liquidity_low`);
//! * a failed command changes neither the domain state nor the ledger.
//!
//! At the end of each case the command log is replayed into a fresh `Payments` and ledger: same
//! outcomes, an equal state, equal checkpoint bytes and an equal ledger digest; and the
//! checkpoint decodes to an equal state.
//!
//! `TALLY_FLOWS_CASES` sets the number of cases (default 256, about a second in release). A
//! second test runs a fixed set of generated cases and checks that every ending above was
//! reached, so that the property test cannot pass by never getting there; a third walks the
//! one ending too rare for random cases.

mod common;

use std::collections::BTreeMap;

use common::{uuid, Harness};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestCaseError, TestRng, TestRunner};
use tally_ledger::{AccountFlags, PendingStatus, TransferFlags, PULSE_EVENTS_MAX};
use tally_payments::{
    asset_liquidity_account_id, AmountInput, AssetCommand, Command, CreateAsset,
    CreateIncomingPayment, CreateQuote, CreateReceiver, CreateWalletAddress, Deposit, ExchangeRate,
    FeeType, IncomingPaymentCommand, IncomingPaymentState, LiquidityCommand, LiquidityOwner,
    Mutation, Outcome, OutgoingPaymentCommand, OutgoingPaymentState, PageRequest, Payments, Rates,
    SetFee, SortOrder, Success, UpdateWalletAddress, Uuid, WalletAddressCommand,
    WalletAddressStatus, WithdrawalResolve, DEACTIVATION_GRACE_PERIOD_NS,
    INCOMING_PAYMENT_EXPIRY_MAX_NS, OUTGOING_PAYMENT_CREATED, QUOTE_LIFESPAN_NS,
    TIMESTAMPS_PER_COMMAND,
};

// -------------------------------------------------------------------------------------------------
// The fixed world of every case.

/// `(code, scale)` of each asset, by index.
const ASSETS: [(&str, u8); 3] = [("USD", 2), ("EUR", 2), ("USD", 4)];
const ADDRESSES_PER_ASSET: usize = 2;
const OPEN_PAYMENTS_URL: &str = "http://127.0.0.1:3003";
const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Steps per case at most. It also bounds the incoming payments one pulse may have to expire,
/// which stays under the 256 the domain expires per pulse, so the book need not model the rest
/// waiting for the next pulse.
const STEPS_MAX: usize = 160;
/// Front-chosen ids count up from here: always fresh, apart from the assets' and addresses'.
const FRESH_FIRST: u128 = 1 << 40;

fn asset_id(asset: usize) -> Uuid {
    uuid(1 + asset as u128)
}

fn address_id(address: usize) -> Uuid {
    uuid(100 + address as u128)
}

fn address_url(address: usize) -> String {
    format!("https://tally.test/a{address}")
}

fn receiver_url(incoming: Uuid) -> String {
    format!("{OPEN_PAYMENTS_URL}/incoming-payments/{incoming}")
}

// -------------------------------------------------------------------------------------------------
// The generated steps. Indexes name earlier objects modulo how many exist when the step runs, so
// that a shrunk case still names something.

/// What a case starts with.
#[derive(Clone, Debug)]
struct Setup {
    /// Each asset's liquidity deposit (0: none).
    liquidity: [u128; 3],
    /// Each asset's `liquidityThreshold`.
    thresholds: [Option<u128>; 3],
    /// EUR per USD; the quotes' EUR → USD rate is its inverse.
    usd_to_eur: f64,
    /// The operator's `--quote-lifespan`, in ns (0 is accepted: every quote is born expired;
    /// past the 24 h deactivation grace period, a quote can outlive its receiver).
    quote_lifespan_ns: u64,
}

#[derive(Clone, Copy, Debug)]
enum Amounts {
    FixedSend(u128),
    FixedReceive(u128),
    Neither,
}

/// Which rates the front carries in a quote.
#[derive(Clone, Copy, Debug)]
enum RatesChoice {
    /// From the sending code to the other code.
    Fetched,
    /// The source was down: no rates.
    Missing,
    /// Rates from the sending code, but not to the receiving one.
    Unrelated,
}

#[derive(Clone, Debug)]
enum Op {
    SetFee {
        asset: usize,
        fixed: u128,
        basis_points: i32,
    },
    DepositAsset {
        asset: usize,
        amount: u128,
    },
    SetActive {
        address: usize,
        active: bool,
    },
    CreateIncoming {
        address: usize,
        amount: Option<u128>,
        /// Seconds after the command (`None`: the default, the maximum); 0 is refused.
        expiry_seconds: Option<u64>,
        /// Through `createReceiver` (by the address's URL) instead.
        receiver: bool,
    },
    CancelIncoming {
        incoming: usize,
    },
    CreateQuote {
        address: usize,
        incoming: usize,
        amounts: Amounts,
        rates: RatesChoice,
    },
    CreateOutgoing {
        quote: usize,
        /// Another sending address than the quote's.
        address: Option<usize>,
    },
    /// `createOutgoingPaymentFromIncomingPayment`: fixed send or the remaining amount.
    CreateFromIncoming {
        address: usize,
        incoming: usize,
        debit: Option<u128>,
        rates: RatesChoice,
    },
    Fund {
        outgoing: usize,
        /// By the deprecated `depositEventLiquidity` with the created event's id.
        by_event: bool,
    },
    CancelOutgoing {
        outgoing: usize,
    },
    /// Advance the clock by `seconds`, then run the core's pulse, or not yet: the core stamps a
    /// due pulse after the commands of its turn, so commands do run past a deadline before the
    /// pulse that acts on it.
    Clock {
        seconds: u64,
        pulse: bool,
    },
    WithdrawIncoming {
        incoming: usize,
        timeout_seconds: u64,
    },
    WithdrawOutgoing {
        outgoing: usize,
        timeout_seconds: u64,
    },
    /// The deprecated `withdrawEventLiquidity` of a payment's closing event (its created event
    /// when it has none, which offers no withdrawal).
    WithdrawEvent {
        payment: usize,
        incoming: bool,
    },
    /// `postLiquidityWithdrawal` or `voidLiquidityWithdrawal` of a payment's withdrawal.
    Resolve {
        payment: usize,
        incoming: bool,
        post: bool,
    },
    /// Swap the live state for its checkpoint's decoding.
    Checkpoint,
}

fn setup() -> impl Strategy<Value = Setup> {
    let liquidity = prop_oneof![1 => Just(0u128), 2 => 1..=300u128, 2 => Just(1_000_000u128)];
    let threshold = proptest::option::of(0..=500u128);
    (
        [liquidity.clone(), liquidity.clone(), liquidity],
        [threshold.clone(), threshold.clone(), threshold],
        prop_oneof![Just(0.5), Just(0.83), Just(1.2), Just(3.0)],
        prop_oneof![
            5 => Just(QUOTE_LIFESPAN_NS),
            1 => Just(2 * NANOS_PER_SECOND),
            2 => Just(48 * 3600 * NANOS_PER_SECOND),
            1 => Just(0),
        ],
    )
        .prop_map(
            |(liquidity, thresholds, usd_to_eur, quote_lifespan_ns)| Setup {
                liquidity,
                thresholds,
                usd_to_eur,
                quote_lifespan_ns,
            },
        )
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![4 => 1..=600u128, 1 => 1..=5u128]
}

fn rates_choice() -> impl Strategy<Value = RatesChoice> {
    prop_oneof![
        6 => Just(RatesChoice::Fetched),
        1 => Just(RatesChoice::Missing),
        1 => Just(RatesChoice::Unrelated),
    ]
}

fn timeout() -> impl Strategy<Value = u64> {
    prop_oneof![4 => Just(0u64), 2 => 1..=3u64, 1 => Just(3600u64)]
}

fn op() -> impl Strategy<Value = Op> {
    let index = || any::<usize>();
    prop_oneof![
        1 => (0..ASSETS.len(), 0..20u128, 0..=1_000i32).prop_map(|(asset, fixed, basis_points)| {
            Op::SetFee {
                asset,
                fixed,
                basis_points,
            }
        }),
        1 => (0..ASSETS.len(), amount())
            .prop_map(|(asset, amount)| Op::DepositAsset { asset, amount }),
        2 => (index(), any::<bool>())
            .prop_map(|(address, active)| Op::SetActive { address, active }),
        5 => (
            index(),
            proptest::option::of(amount()),
            prop_oneof![
                2 => Just(None),
                3 => (1..=8u64).prop_map(Some),
                1 => Just(Some(3600u64)),
                1 => Just(Some(0u64)),
            ],
            prop_oneof![4 => Just(false), 1 => Just(true)],
        )
            .prop_map(|(address, amount, expiry_seconds, receiver)| Op::CreateIncoming {
                address,
                amount,
                expiry_seconds,
                receiver,
            }),
        1 => index().prop_map(|incoming| Op::CancelIncoming { incoming }),
        7 => (
            index(),
            index(),
            prop_oneof![
                2 => amount().prop_map(Amounts::FixedSend),
                2 => amount().prop_map(Amounts::FixedReceive),
                2 => Just(Amounts::Neither),
            ],
            rates_choice(),
        )
            .prop_map(|(address, incoming, amounts, rates)| Op::CreateQuote {
                address,
                incoming,
                amounts,
                rates,
            }),
        6 => (index(), prop_oneof![5 => Just(None), 1 => index().prop_map(Some)])
            .prop_map(|(quote, address)| Op::CreateOutgoing { quote, address }),
        2 => (index(), index(), proptest::option::of(amount()), rates_choice()).prop_map(
            |(address, incoming, debit, rates)| Op::CreateFromIncoming {
                address,
                incoming,
                debit,
                rates,
            }
        ),
        7 => (index(), prop_oneof![4 => Just(false), 1 => Just(true)])
            .prop_map(|(outgoing, by_event)| Op::Fund { outgoing, by_event }),
        1 => index().prop_map(|outgoing| Op::CancelOutgoing { outgoing }),
        5 => (
            prop_oneof![
                8 => 1..=4u64,
                2 => Just(301u64),
                2 => Just(25 * 3600u64),
            ],
            prop_oneof![3 => Just(true), 1 => Just(false)],
        )
            .prop_map(|(seconds, pulse)| Op::Clock { seconds, pulse }),
        2 => (index(), timeout()).prop_map(|(incoming, timeout_seconds)| {
            Op::WithdrawIncoming {
                incoming,
                timeout_seconds,
            }
        }),
        2 => (index(), timeout()).prop_map(|(outgoing, timeout_seconds)| {
            Op::WithdrawOutgoing {
                outgoing,
                timeout_seconds,
            }
        }),
        1 => (index(), any::<bool>())
            .prop_map(|(payment, incoming)| Op::WithdrawEvent { payment, incoming }),
        1 => (index(), any::<bool>(), any::<bool>()).prop_map(|(payment, incoming, post)| {
            Op::Resolve {
                payment,
                incoming,
                post,
            }
        }),
        1 => Just(Op::Checkpoint),
    ]
}

fn case() -> impl Strategy<Value = (Setup, Vec<Op>)> {
    (setup(), proptest::collection::vec(op(), 1..STEPS_MAX))
}

/// Resolves a generated index among `len` objects: mostly one of the newest three that `fits`
/// (a flow works on what it just made and can still use: a quote for a payment still open, a
/// payment of a quote not used yet), sometimes any, so that refusals come up too.
fn pick(n: usize, len: usize, fits: impl Fn(usize) -> bool) -> usize {
    assert!(len > 0);
    if n % 4 != 0 {
        let fitting: Vec<usize> = (0..len).rev().filter(|i| fits(*i)).take(3).collect();
        if !fitting.is_empty() {
            return fitting[n / 4 % fitting.len()];
        }
    }
    n / 4 % len
}

// -------------------------------------------------------------------------------------------------
// The book: what the test asked for and what it expects.

struct BookAddress {
    asset: usize,
    active: bool,
}

struct BookIncoming {
    id: Uuid,
    address: usize,
    asset: usize,
    amount: Option<u128>,
    /// Its deadline: as created, pulled in by a deactivation of its address.
    expires_at: u64,
    /// The `receiveAmount`s of the outgoing payments that delivered to it.
    delivered: u128,
    cancelled: bool,
}

impl BookIncoming {
    fn completed(&self) -> bool {
        self.amount.is_some_and(|amount| self.delivered >= amount)
    }

    /// Whether a payment at `timestamp` may still deliver to it.
    fn open(&self, timestamp: u64) -> bool {
        !self.completed() && self.expires_at > timestamp
    }

    /// Whether a pulse has expired it (pulses run through `pulsed_through`).
    fn expired(&self, pulsed_through: u64) -> bool {
        !self.completed() && self.expires_at <= pulsed_through
    }
}

#[derive(Clone, Copy)]
struct BookQuote {
    id: Uuid,
    address: usize,
    asset: usize,
    incoming: usize,
    debit: u128,
    debit_minus_fees: u128,
    receive: u128,
    expires_at: u64,
    used: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Delivered,
    NothingToDeliver,
    Failed(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BookState {
    Funding,
    Cancelled,
    Finished(Ending),
}

struct BookOutgoing {
    quote: usize,
    /// The `outgoing_payment.created` event, as the ASE reads it from the event list.
    created_event: Uuid,
    state: BookState,
}

/// Every ending the coverage test must see reached at least once.
const ENDINGS: [&str; 15] = [
    "delivered same asset",
    "delivered cross asset",
    "nothing to deliver",
    "quote expired",
    "insufficient liquidity",
    "outgoing cancelled",
    "funded by event",
    "reused quote refused",
    "incoming completed",
    "incoming expired with money",
    "incoming soft-deleted",
    "incoming withdrawn",
    "outgoing withdrawn",
    "event withdrawn",
    "withdrawal resolved",
];

/// Too rare for random cases (a quote lifespan over the 24 h grace period, the receiving
/// address deactivated, a day passing and a funding before the pulse): its own test reaches it.
const RECEIVER_PAST_DEADLINE: &str = "nothing to deliver: receiver past its deadline";

/// How many times each ending was reached, for the coverage test.
#[derive(Clone, Debug, Default)]
struct Reached(BTreeMap<&'static str, u32>);

impl Reached {
    fn hit(&mut self, ending: &'static str, times: u32) {
        assert!(
            ENDINGS.contains(&ending) || ending == RECEIVER_PAST_DEADLINE,
            "{ending} is listed"
        );
        *self.0.entry(ending).or_default() += times;
    }

    fn add(&mut self, other: &Reached) {
        for (ending, times) in &other.0 {
            self.hit(ending, *times);
        }
    }
}

struct Book {
    setup: Setup,
    addresses: Vec<BookAddress>,
    /// Each asset's latest sending fee: `(fixed, basis points)`.
    fees: [Option<(u128, u16)>; 3],
    incoming: Vec<BookIncoming>,
    quotes: Vec<BookQuote>,
    outgoing: Vec<BookOutgoing>,
    /// The timestamp of the latest pulse.
    pulsed_through: u64,
    /// Deliveries that left the receiving asset's liquidity at or below its threshold.
    liquidity_low: usize,
    reached: Reached,
}

impl Book {
    fn new(setup: Setup) -> Book {
        let addresses = (0..ASSETS.len() * ADDRESSES_PER_ASSET)
            .map(|address| BookAddress {
                asset: address / ADDRESSES_PER_ASSET,
                active: true,
            })
            .collect();
        Book {
            setup,
            addresses,
            fees: [None; 3],
            incoming: Vec::new(),
            quotes: Vec::new(),
            outgoing: Vec::new(),
            pulsed_through: 0,
            liquidity_low: 0,
            reached: Reached::default(),
        }
    }

    /// Rafiki's rates service as the book knows it: the scaled rate from one asset to another,
    /// `None` for the same asset, `Err` when the rates carried do not convert.
    fn scaled_rate(&self, from: usize, to: usize, rates: RatesChoice) -> Result<Option<f64>, ()> {
        let ((from_code, from_scale), (to_code, to_scale)) = (ASSETS[from], ASSETS[to]);
        if from == to {
            return Ok(None);
        }
        let rate = if from_code == to_code {
            1.0
        } else {
            match rates {
                RatesChoice::Fetched if from_code == "USD" => self.setup.usd_to_eur,
                RatesChoice::Fetched => 1.0 / self.setup.usd_to_eur,
                RatesChoice::Missing | RatesChoice::Unrelated => return Err(()),
            }
        };
        Ok(Some(
            rate * 10f64.powi(i32::from(to_scale) - i32::from(from_scale)),
        ))
    }

    /// Rafiki's `Fee.calculate` over the asset's latest sending fee.
    fn sending_fee(&self, asset: usize, principal: u128) -> u128 {
        let Some((fixed, basis_points)) = self.fees[asset] else {
            return 0;
        };
        let percentage = f64::from(basis_points) / 10_000.0;
        float_to_amount((principal as f64 * percentage).ceil()) + fixed
    }

    /// The quote the book expects for `address` paying `incoming` at `timestamp`, or `None`
    /// when it must be refused.
    fn quote_expected(
        &self,
        address: usize,
        incoming: usize,
        amounts: Amounts,
        rates: RatesChoice,
        timestamp: u64,
    ) -> Option<(u128, u128, u128, u64)> {
        let sender = &self.addresses[address];
        let receiver = &self.incoming[incoming];
        if !sender.active || !receiver.open(timestamp) {
            return None;
        }
        let remaining = receiver.amount.map(|amount| amount - receiver.delivered);
        let scaled = self.scaled_rate(sender.asset, receiver.asset, rates);
        let source = |amount: u128| match scaled {
            Ok(None) => Some(amount),
            Ok(Some(rate)) => Some(float_to_amount((amount as f64 * rate).floor())),
            Err(()) => None,
        };
        let destination = |amount: u128| match scaled {
            Ok(None) => Some(amount),
            Ok(Some(rate)) => Some(float_to_amount((amount as f64 / rate).ceil())),
            Err(()) => None,
        };
        let (debit, debit_minus_fees, receive) = match amounts {
            Amounts::FixedSend(debit) => {
                let minus_fees = debit.saturating_sub(self.sending_fee(sender.asset, debit));
                let receive = source(minus_fees)?;
                if remaining.is_some_and(|remaining| receive > remaining) {
                    return None;
                }
                (debit, minus_fees, receive)
            }
            Amounts::FixedReceive(receive) => {
                if remaining.is_some_and(|remaining| remaining < receive) {
                    return None;
                }
                let minus_fees = destination(receive)?;
                let fee = self.sending_fee(sender.asset, minus_fees);
                (minus_fees + fee, minus_fees, receive)
            }
            Amounts::Neither => {
                let receive = remaining?;
                let minus_fees = destination(receive)?;
                let fee = self.sending_fee(sender.asset, minus_fees);
                (minus_fees + fee, minus_fees, receive)
            }
        };
        if debit_minus_fees == 0 || receive == 0 {
            return None;
        }
        let expires_at = (timestamp + self.setup.quote_lifespan_ns).min(receiver.expires_at);
        Some((debit, debit_minus_fees, receive, expires_at))
    }

    /// How funding the payment of `quote` at `timestamp` ends, given the receiving asset's
    /// liquidity read from the ledger just before.
    fn funding_expected(&self, quote: &BookQuote, timestamp: u64, liquidity: u128) -> Ending {
        let receiver = &self.incoming[quote.incoming];
        if quote.expires_at <= timestamp {
            Ending::Failed("QuoteExpired")
        } else if !receiver.open(timestamp) {
            Ending::NothingToDeliver
        } else if quote.asset != receiver.asset && liquidity < quote.receive {
            Ending::Failed("InsufficientLiquidity")
        } else {
            Ending::Delivered
        }
    }

    /// Whether the incoming payment no longer receives and received something.
    fn closed(&self, incoming: usize) -> bool {
        let incoming = &self.incoming[incoming];
        incoming.delivered > 0 && (incoming.completed() || incoming.expired(self.pulsed_through))
    }

    /// Whether the outgoing payment was funded.
    fn finished(&self, outgoing: usize) -> bool {
        matches!(self.outgoing[outgoing].state, BookState::Finished(_))
    }

    /// Rafiki's deactivation rule: the address's open payments expire within the grace period.
    fn deactivated(&mut self, address: usize, timestamp: u64) {
        let pulsed_through = self.pulsed_through;
        let deadline = timestamp + DEACTIVATION_GRACE_PERIOD_NS;
        for incoming in &mut self.incoming {
            if incoming.address == address && !incoming.expired(pulsed_through) {
                incoming.expires_at = incoming.expires_at.min(deadline);
            }
        }
    }
}

/// JavaScript's `BigInt(Math.floor(x))` for the non-negative floats quotes make.
fn float_to_amount(value: f64) -> u128 {
    if value.is_nan() || value <= 0.0 {
        0
    } else {
        value as u128
    }
}

// -------------------------------------------------------------------------------------------------
// The run.

/// What a replay needs: commands and clock moves, in order.
enum Logged {
    Command(Box<Command>),
    Clock { seconds: u64, pulse: bool },
}

/// One case's harness, book and log.
struct Run {
    harness: Harness,
    book: Book,
    log: Vec<Logged>,
    outcomes: Vec<Outcome>,
    fresh_next: u128,
}

impl Run {
    fn new(setup: Setup) -> Run {
        Run {
            harness: Harness::new(),
            book: Book::new(setup),
            log: Vec::new(),
            outcomes: Vec::new(),
            fresh_next: FRESH_FIRST,
        }
    }

    fn fresh(&mut self) -> Uuid {
        self.fresh_next += 1;
        uuid(self.fresh_next)
    }

    /// The timestamp the next command gets.
    fn timestamp_next(&self) -> u64 {
        self.harness.now + TIMESTAMPS_PER_COMMAND
    }

    /// Executes and logs a mutation; a failed one must change nothing.
    fn execute(&mut self, mutation: Mutation) -> Result<Outcome, TestCaseError> {
        let command = Command {
            idempotency: None,
            mutation,
        };
        let before = self.harness.snapshot();
        let outcome = self.harness.execute_command(&command);
        if outcome.is_err() {
            prop_assert!(
                self.harness.port.snapshot() == before.1,
                "the ledger changed"
            );
            prop_assert!(self.harness.payments == before.0, "the state changed");
        }
        self.log.push(Logged::Command(Box::new(command)));
        self.outcomes.push(outcome.clone());
        Ok(outcome)
    }

    /// Executes a mutation the book says must succeed or fail.
    fn expect(&mut self, mutation: Mutation, succeeds: bool) -> Result<Outcome, TestCaseError> {
        let shown = format!("{mutation:?}");
        let outcome = self.execute(mutation)?;
        prop_assert_eq!(
            outcome.is_ok(),
            succeeds,
            "{} answered {:?}",
            shown,
            outcome
        );
        Ok(outcome)
    }

    /// Executes a mutation that must succeed.
    fn succeed(&mut self, mutation: Mutation) -> Result<(), TestCaseError> {
        self.expect(mutation, true).map(drop)
    }

    fn setup(&mut self) -> Result<(), TestCaseError> {
        for (asset, (code, scale)) in ASSETS.iter().enumerate() {
            let create = CreateAsset {
                id: asset_id(asset),
                code: (*code).to_owned(),
                scale: *scale,
                withdrawal_threshold: None,
                liquidity_threshold: self.book.setup.thresholds[asset],
            };
            self.succeed(Mutation::Asset(AssetCommand::Create(create)))?;
            let amount = self.book.setup.liquidity[asset];
            if amount > 0 {
                self.deposit_asset(asset, amount)?;
            }
        }
        for address in 0..self.book.addresses.len() {
            let create = CreateWalletAddress {
                id: address_id(address),
                asset_id: Some(asset_id(self.book.addresses[address].asset)),
                url: address_url(address),
                public_name: None,
                additional_properties: Vec::new(),
            };
            let create = Mutation::WalletAddress(WalletAddressCommand::Create(create));
            self.succeed(create)?;
        }
        Ok(())
    }

    fn deposit_asset(&mut self, asset: usize, amount: u128) -> Result<(), TestCaseError> {
        let deposit = Deposit {
            owner: LiquidityOwner::Asset(Some(asset_id(asset))),
            transfer_id: Some(self.fresh()),
            amount,
        };
        self.succeed(Mutation::Liquidity(LiquidityCommand::Deposit(deposit)))
    }

    /// Advances the clock by `seconds` and, with `pulse`, runs the core's pulse there: the
    /// ledger's expiry, then the domain's, when either has work (`State::pulse_needed`). The
    /// pulse reserves `PULSE_EVENTS_MAX` timestamps; the next command comes after them. Returns
    /// the pulse's timestamp.
    fn clock(harness: &mut Harness, seconds: u64, pulse: bool) -> Option<u64> {
        harness.now += seconds * NANOS_PER_SECOND;
        if !pulse {
            return None;
        }
        let pulse = harness.now + PULSE_EVENTS_MAX as u64;
        let needed = harness.port.ledger.pulse_needed(pulse)
            || harness
                .payments
                .deadline()
                .is_some_and(|deadline| deadline <= pulse);
        if needed {
            harness
                .port
                .ledger
                .expire_pending_transfers(&harness.port.store, pulse);
            harness.payments.pulse(&harness.port, pulse);
        }
        harness.now = pulse;
        Some(pulse)
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::SetFee {
                asset,
                fixed,
                basis_points,
            } => self.set_fee(*asset, *fixed, *basis_points),
            Op::DepositAsset { asset, amount } => self.deposit_asset(*asset, *amount),
            Op::SetActive { address, active } => self.set_active(*address, *active),
            Op::CreateIncoming {
                address,
                amount,
                expiry_seconds,
                receiver,
            } => self.create_incoming(*address, *amount, *expiry_seconds, *receiver),
            Op::CancelIncoming { incoming } => self.cancel_incoming(*incoming),
            Op::CreateQuote {
                address,
                incoming,
                amounts,
                rates,
            } => self.create_quote(*address, *incoming, *amounts, *rates),
            Op::CreateOutgoing { quote, address } => self.create_outgoing(*quote, *address),
            Op::CreateFromIncoming {
                address,
                incoming,
                debit,
                rates,
            } => self.create_from_incoming(*address, *incoming, *debit, *rates),
            Op::Fund { outgoing, by_event } => self.fund(*outgoing, *by_event),
            Op::CancelOutgoing { outgoing } => self.cancel_outgoing(*outgoing),
            Op::Clock { seconds, pulse } => {
                if let Some(at) = Run::clock(&mut self.harness, *seconds, *pulse) {
                    self.book.pulsed_through = at;
                }
                self.log.push(Logged::Clock {
                    seconds: *seconds,
                    pulse: *pulse,
                });
                Ok(())
            }
            Op::WithdrawIncoming {
                incoming,
                timeout_seconds,
            } => self.withdraw_incoming(*incoming, *timeout_seconds),
            Op::WithdrawOutgoing {
                outgoing,
                timeout_seconds,
            } => self.withdraw_outgoing(*outgoing, *timeout_seconds),
            Op::WithdrawEvent { payment, incoming } => self.withdraw_event(*payment, *incoming),
            Op::Resolve {
                payment,
                incoming,
                post,
            } => self.resolve(*payment, *incoming, *post),
            Op::Checkpoint => {
                self.harness.payments = checkpoint_round_trip(&self.harness.payments)?;
                Ok(())
            }
        }
    }

    fn set_fee(
        &mut self,
        asset: usize,
        fixed: u128,
        basis_points: i32,
    ) -> Result<(), TestCaseError> {
        let set = SetFee {
            id: self.fresh(),
            asset_id: Some(asset_id(asset)),
            fee_type: FeeType::Sending,
            fixed,
            basis_points,
        };
        self.succeed(Mutation::Fee(set))?;
        let basis_points = u16::try_from(basis_points).expect("generated within 0..=10000");
        self.book.fees[asset] = Some((fixed, basis_points));
        Ok(())
    }

    fn set_active(&mut self, address: usize, active: bool) -> Result<(), TestCaseError> {
        let timestamp = self.timestamp_next();
        // Mostly an address that is receiving: deactivating it pulls its payments' deadlines in.
        let address = if self.book.incoming.is_empty() || address % 2 == 0 {
            address / 2 % self.book.addresses.len()
        } else {
            let open = |i: usize| self.book.incoming[i].open(timestamp);
            self.book.incoming[pick(address / 2, self.book.incoming.len(), open)].address
        };
        let update = UpdateWalletAddress {
            id: Some(address_id(address)),
            public_name: None,
            status: Some(if active {
                WalletAddressStatus::Active
            } else {
                WalletAddressStatus::Inactive
            }),
            additional_properties: None,
        };
        self.succeed(Mutation::WalletAddress(WalletAddressCommand::Update(
            update,
        )))?;
        if self.book.addresses[address].active && !active {
            self.book.deactivated(address, timestamp);
        }
        self.book.addresses[address].active = active;
        Ok(())
    }

    fn create_incoming(
        &mut self,
        address: usize,
        amount: Option<u128>,
        expiry_seconds: Option<u64>,
        receiver: bool,
    ) -> Result<(), TestCaseError> {
        let address = address % self.book.addresses.len();
        let timestamp = self.timestamp_next();
        let asset = self.book.addresses[address].asset;
        let (code, scale) = ASSETS[asset];
        let expires_at = match expiry_seconds {
            None => timestamp + INCOMING_PAYMENT_EXPIRY_MAX_NS,
            Some(seconds) => timestamp + seconds * NANOS_PER_SECOND,
        };
        let id = self.fresh();
        let create = CreateIncomingPayment {
            id,
            wallet_address_id: Some(address_id(address)),
            expires_at: expiry_seconds.map(|_| expires_at),
            incoming_amount: amount.map(|value| AmountInput {
                value,
                asset_code: code.to_owned(),
                asset_scale: scale,
            }),
            metadata: None,
            expiry_max_ns: INCOMING_PAYMENT_EXPIRY_MAX_NS,
        };
        let command = if receiver {
            IncomingPaymentCommand::CreateReceiver(CreateReceiver {
                wallet_address_url: address_url(address),
                payment: create,
            })
        } else {
            IncomingPaymentCommand::Create(create)
        };
        let succeeds = self.book.addresses[address].active && expiry_seconds != Some(0);
        let outcome = self.expect(Mutation::IncomingPayment(command), succeeds)?;
        if outcome.is_ok() {
            self.book.incoming.push(BookIncoming {
                id,
                address,
                asset,
                amount,
                expires_at,
                delivered: 0,
                cancelled: false,
            });
        }
        Ok(())
    }

    fn cancel_incoming(&mut self, incoming: usize) -> Result<(), TestCaseError> {
        if self.book.incoming.is_empty() {
            return Ok(());
        }
        let incoming = pick(incoming, self.book.incoming.len(), |_| true);
        let book = &self.book.incoming[incoming];
        // Rafiki cancels a PENDING payment only: nothing received yet, not expired.
        let succeeds =
            !book.cancelled && book.delivered == 0 && !book.expired(self.book.pulsed_through);
        let cancel = IncomingPaymentCommand::Cancel { id: Some(book.id) };
        let outcome = self.expect(Mutation::IncomingPayment(cancel), succeeds)?;
        // A cancelled payment still receives (Rafiki's issue #3933): the book keeps it open.
        self.book.incoming[incoming].cancelled |= outcome.is_ok();
        Ok(())
    }

    fn rates(&self, address: usize, choice: RatesChoice) -> Option<Rates> {
        let (code, _) = ASSETS[self.book.addresses[address].asset];
        let (other, rate) = if code == "USD" {
            ("EUR", self.book.setup.usd_to_eur)
        } else {
            ("USD", 1.0 / self.book.setup.usd_to_eur)
        };
        match choice {
            RatesChoice::Fetched => Some(Rates {
                base: code.to_owned(),
                rates: vec![(other.to_owned(), ExchangeRate(rate))],
            }),
            RatesChoice::Missing => None,
            RatesChoice::Unrelated => Some(Rates {
                base: code.to_owned(),
                rates: vec![("XRP".to_owned(), ExchangeRate(2.0))],
            }),
        }
    }

    /// The quote command for `address` paying `incoming`, with the amounts in the right assets.
    fn quote_command(
        &mut self,
        address: usize,
        incoming: usize,
        amounts: Amounts,
        rates: RatesChoice,
    ) -> CreateQuote {
        let amount_in = |asset: usize, value: u128| {
            let (code, scale) = ASSETS[asset];
            AmountInput {
                value,
                asset_code: code.to_owned(),
                asset_scale: scale,
            }
        };
        let receiver = &self.book.incoming[incoming];
        let (debit_amount, receive_amount) = match amounts {
            Amounts::FixedSend(value) => (
                Some(amount_in(self.book.addresses[address].asset, value)),
                None,
            ),
            Amounts::FixedReceive(value) => (None, Some(amount_in(receiver.asset, value))),
            Amounts::Neither => (None, None),
        };
        CreateQuote {
            id: self.fresh(),
            wallet_address_id: Some(address_id(address)),
            receiver: receiver_url(self.book.incoming[incoming].id),
            receiver_payment: Some(self.book.incoming[incoming].id),
            debit_amount,
            receive_amount,
            rates: self.rates(address, rates),
            lifespan_ns: self.book.setup.quote_lifespan_ns,
        }
    }

    fn create_quote(
        &mut self,
        address: usize,
        incoming: usize,
        amounts: Amounts,
        rates: RatesChoice,
    ) -> Result<(), TestCaseError> {
        if self.book.incoming.is_empty() {
            return Ok(());
        }
        let address = address % self.book.addresses.len();
        let timestamp = self.timestamp_next();
        let open = |i: usize| self.book.incoming[i].open(timestamp);
        let incoming = pick(incoming, self.book.incoming.len(), open);
        let expected = self
            .book
            .quote_expected(address, incoming, amounts, rates, timestamp);
        let create = self.quote_command(address, incoming, amounts, rates);
        let outcome = self.expect(Mutation::Quote(create.clone()), expected.is_some())?;
        let (Ok(Success::Quote(view)), Some(expected)) = (outcome, expected) else {
            return Ok(());
        };
        let quote = &view.quote;
        let found = (
            quote.debit_amount,
            quote.debit_amount_minus_fees,
            quote.receive_amount,
            quote.expires_at,
        );
        prop_assert_eq!(found, expected, "quote {:?}", create);
        self.book_quote(create.id, address, incoming, expected);
        Ok(())
    }

    fn book_quote(
        &mut self,
        id: Uuid,
        address: usize,
        incoming: usize,
        (debit, debit_minus_fees, receive, expires_at): (u128, u128, u128, u64),
    ) {
        self.book.quotes.push(BookQuote {
            id,
            address,
            asset: self.book.addresses[address].asset,
            incoming,
            debit,
            debit_minus_fees,
            receive,
            expires_at,
            used: false,
        });
    }

    fn create_outgoing(
        &mut self,
        quote: usize,
        address: Option<usize>,
    ) -> Result<(), TestCaseError> {
        if self.book.quotes.is_empty() {
            return Ok(());
        }
        let timestamp = self.timestamp_next();
        let usable =
            |i: usize| !self.book.quotes[i].used && self.book.quotes[i].expires_at > timestamp;
        let quote = pick(quote, self.book.quotes.len(), usable);
        let book = self.book.quotes[quote];
        let address = address.map_or(book.address, |address| address % self.book.addresses.len());
        let succeeds = self.book.addresses[address].active
            && address == book.address
            && !book.used
            && book.expires_at > timestamp
            && self.book.incoming[book.incoming].open(timestamp);
        let create = OutgoingPaymentCommand::Create {
            wallet_address_id: Some(address_id(address)),
            quote_id: Some(book.id),
            metadata: None,
        };
        let outcome = self.expect(Mutation::OutgoingPayment(create), succeeds)?;
        if outcome.is_ok() {
            self.book_outgoing(quote)?;
        } else if book.used {
            self.book.reached.hit("reused quote refused", 1);
        }
        Ok(())
    }

    /// Records the payment of `quote`, with its created event as the ASE finds it: the newest
    /// `outgoing_payment.created` in the event list, naming the payment.
    fn book_outgoing(&mut self, quote: usize) -> Result<(), TestCaseError> {
        let id = self.book.quotes[quote].id;
        let request = PageRequest {
            after: None,
            before: None,
            limit: 1,
            order: SortOrder::Descending,
        };
        let (events, _) = self
            .harness
            .payments
            .webhook_events_page(&request, &[OUTGOING_PAYMENT_CREATED.to_owned()]);
        prop_assert_eq!(events.len(), 1);
        let data: serde_json::Value =
            serde_json::from_str(&events[0].data.text()).expect("JSON data");
        prop_assert_eq!(&data["id"], &serde_json::json!(id.to_string()));
        let debit = self.book.quotes[quote].debit.to_string();
        prop_assert_eq!(&data["debitAmount"]["value"], &serde_json::json!(debit));
        self.book.quotes[quote].used = true;
        self.book.outgoing.push(BookOutgoing {
            quote,
            created_event: events[0].id,
            state: BookState::Funding,
        });
        Ok(())
    }

    fn create_from_incoming(
        &mut self,
        address: usize,
        incoming: usize,
        debit: Option<u128>,
        rates: RatesChoice,
    ) -> Result<(), TestCaseError> {
        if self.book.incoming.is_empty() {
            return Ok(());
        }
        let address = address % self.book.addresses.len();
        let amounts = debit.map_or(Amounts::Neither, Amounts::FixedSend);
        let timestamp = self.timestamp_next();
        let open = |i: usize| self.book.incoming[i].open(timestamp);
        let incoming = pick(incoming, self.book.incoming.len(), open);
        let expected = self
            .book
            .quote_expected(address, incoming, amounts, rates, timestamp);
        let quote = self.quote_command(address, incoming, amounts, rates);
        let quote_id = quote.id;
        let create = OutgoingPaymentCommand::CreateFromIncomingPayment {
            quote: Box::new(quote),
            metadata: None,
        };
        // The payment needs a quote it can still pay: not one born expired.
        let expected = expected.filter(|(_, _, _, expires_at)| *expires_at > timestamp);
        let outcome = self.expect(Mutation::OutgoingPayment(create), expected.is_some())?;
        let (Ok(Success::OutgoingPayment(view)), Some(expected)) = (outcome, expected) else {
            return Ok(());
        };
        let quote = &view.quote.quote;
        let found = (
            quote.debit_amount,
            quote.debit_amount_minus_fees,
            quote.receive_amount,
            quote.expires_at,
        );
        prop_assert_eq!(found, expected);
        prop_assert_eq!(view.payment.id, quote_id, "a payment's id is its quote's");
        self.book_quote(quote_id, address, incoming, expected);
        self.book_outgoing(self.book.quotes.len() - 1)
    }

    fn fund(&mut self, outgoing: usize, by_event: bool) -> Result<(), TestCaseError> {
        if self.book.outgoing.is_empty() {
            return Ok(());
        }
        let funding = |i: usize| self.book.outgoing[i].state == BookState::Funding;
        let outgoing = pick(outgoing, self.book.outgoing.len(), funding);
        let (state, created_event) = {
            let book = &self.book.outgoing[outgoing];
            (book.state, book.created_event)
        };
        let quote = self.book.quotes[self.book.outgoing[outgoing].quote];
        let receive_asset = self.book.incoming[quote.incoming].asset;
        let liquidity = self
            .harness
            .liquidity(asset_liquidity_account_id(asset_id(receive_asset)))
            .expect("the asset's liquidity account exists");
        let timestamp = self.timestamp_next();
        let ending = self.book.funding_expected(&quote, timestamp, liquidity);
        let succeeds = state == BookState::Funding;
        let command = if by_event {
            OutgoingPaymentCommand::DepositEvent {
                event_id: Some(created_event),
            }
        } else {
            OutgoingPaymentCommand::Deposit { id: Some(quote.id) }
        };
        let outcome = self.expect(Mutation::OutgoingPayment(command), succeeds)?;
        if outcome.is_err() {
            return Ok(());
        }
        self.book.outgoing[outgoing].state = BookState::Finished(ending);
        let reached = &mut self.book.reached;
        reached.hit("funded by event", u32::from(by_event));
        match ending {
            Ending::Delivered => {
                let receiver = &mut self.book.incoming[quote.incoming];
                receiver.delivered += quote.receive;
                if receiver.completed() {
                    reached.hit("incoming completed", 1);
                }
                if quote.asset == receiver.asset {
                    reached.hit("delivered same asset", 1);
                } else {
                    reached.hit("delivered cross asset", 1);
                }
            }
            Ending::NothingToDeliver => {
                reached.hit("nothing to deliver", 1);
                let receiver = &self.book.incoming[quote.incoming];
                if !receiver.completed() && !receiver.expired(self.book.pulsed_through) {
                    reached.hit(RECEIVER_PAST_DEADLINE, 1);
                }
            }
            Ending::Failed("QuoteExpired") => reached.hit("quote expired", 1),
            Ending::Failed(_) => reached.hit("insufficient liquidity", 1),
        }
        if ending == Ending::Delivered && quote.asset != receive_asset {
            self.liquidity_checked(receive_asset);
        }
        // The deposit is the money movements table's first row.
        let deposit = self
            .harness
            .port
            .ledger
            .transfer(&self.harness.port.store, created_event.as_u128())
            .expect("the deposit's id is the created event's");
        prop_assert_eq!(deposit.amount, quote.debit);
        prop_assert_eq!(deposit.credit_account_id, quote.id.as_u128());
        Ok(())
    }

    /// Rafiki's `onDebit` of an asset's liquidity account, by the book: a payment that debited
    /// it and left it at or below the asset's threshold raises `asset.liquidity_low`.
    fn liquidity_checked(&mut self, asset: usize) {
        let liquidity = self
            .harness
            .liquidity(asset_liquidity_account_id(asset_id(asset)))
            .expect("the asset's liquidity account exists");
        let threshold = self.book.setup.thresholds[asset];
        if threshold.is_some_and(|threshold| liquidity <= threshold) {
            self.book.liquidity_low += 1;
        }
    }

    fn cancel_outgoing(&mut self, outgoing: usize) -> Result<(), TestCaseError> {
        if self.book.outgoing.is_empty() {
            return Ok(());
        }
        let funding = |i: usize| self.book.outgoing[i].state == BookState::Funding;
        let outgoing = pick(outgoing, self.book.outgoing.len(), funding);
        let book = &self.book.outgoing[outgoing];
        let succeeds = book.state == BookState::Funding;
        let cancel = OutgoingPaymentCommand::Cancel {
            id: Some(self.book.quotes[book.quote].id),
            reason: Some("changed my mind".to_owned()),
        };
        let outcome = self.expect(Mutation::OutgoingPayment(cancel), succeeds)?;
        if outcome.is_ok() {
            self.book.outgoing[outgoing].state = BookState::Cancelled;
            self.book.reached.hit("outgoing cancelled", 1);
        }
        Ok(())
    }

    /// The event an incoming payment's withdrawal is named by, from the domain; the book says
    /// whether it must exist (checked in `check_incoming`).
    fn incoming_withdrawal_event(&self, incoming: usize) -> Option<Uuid> {
        let id = self.book.incoming[incoming].id;
        self.harness
            .payments
            .incoming_payment(id)
            .and_then(|payment| payment.withdrawal_event)
    }

    fn outgoing_finished_event(&self, outgoing: usize) -> Option<Uuid> {
        let id = self.book.quotes[self.book.outgoing[outgoing].quote].id;
        self.harness
            .payments
            .outgoing_payment(id)
            .and_then(|payment| payment.finished_event)
    }

    fn withdraw_incoming(
        &mut self,
        incoming: usize,
        timeout_seconds: u64,
    ) -> Result<(), TestCaseError> {
        if self.book.incoming.is_empty() {
            return Ok(());
        }
        let incoming = pick(incoming, self.book.incoming.len(), |i| self.book.closed(i));
        let event = self.incoming_withdrawal_event(incoming);
        let book = &self.book.incoming[incoming];
        let succeeds = self.book.closed(incoming) && !self.transfer_exists(event);
        let withdraw = IncomingPaymentCommand::Withdraw {
            id: Some(book.id),
            timeout_seconds,
        };
        let outcome = self.expect(Mutation::IncomingPayment(withdraw), succeeds)?;
        self.book
            .reached
            .hit("incoming withdrawn", u32::from(outcome.is_ok()));
        Ok(())
    }

    fn withdraw_outgoing(
        &mut self,
        outgoing: usize,
        timeout_seconds: u64,
    ) -> Result<(), TestCaseError> {
        if self.book.outgoing.is_empty() {
            return Ok(());
        }
        let outgoing = pick(outgoing, self.book.outgoing.len(), |i| {
            self.book.finished(i)
        });
        let event = self.outgoing_finished_event(outgoing);
        let book = &self.book.outgoing[outgoing];
        let quote = self.book.quotes[book.quote];
        let succeeds = match book.state {
            BookState::Finished(ending) => {
                quote.debit > sent(&quote, ending) && !self.transfer_exists(event)
            }
            BookState::Funding | BookState::Cancelled => false,
        };
        let withdraw = OutgoingPaymentCommand::Withdraw {
            id: Some(quote.id),
            timeout_seconds,
        };
        let outcome = self.expect(Mutation::OutgoingPayment(withdraw), succeeds)?;
        self.book
            .reached
            .hit("outgoing withdrawn", u32::from(outcome.is_ok()));
        Ok(())
    }

    /// A payment's closing event (or its created event, or its own id, which offer nothing to
    /// withdraw) and whether that event offers a withdrawal, by the book.
    fn closing_event(&self, index: usize, incoming: bool) -> (Uuid, bool) {
        if incoming {
            let book = &self.book.incoming[index];
            // Without a closing event, the payment's own id: it names no event.
            let event = self.incoming_withdrawal_event(index).unwrap_or(book.id);
            (event, self.book.closed(index))
        } else {
            let book = &self.book.outgoing[index];
            let quote = self.book.quotes[book.quote];
            let offers = match book.state {
                BookState::Finished(ending) => quote.debit > sent(&quote, ending),
                BookState::Funding | BookState::Cancelled => false,
            };
            let event = self.outgoing_finished_event(index);
            (event.unwrap_or(book.created_event), offers)
        }
    }

    /// Picks an incoming or outgoing payment, preferring those that `fit`.
    fn pick_payment(
        &self,
        n: usize,
        incoming: bool,
        fits: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let len = if incoming {
            self.book.incoming.len()
        } else {
            self.book.outgoing.len()
        };
        (len > 0).then(|| pick(n, len, fits))
    }

    /// Whether the payment's closing event names a withdrawal transfer the ledger holds.
    fn withdrawn(&self, index: usize, incoming: bool) -> bool {
        let event = if incoming {
            self.incoming_withdrawal_event(index)
        } else {
            self.outgoing_finished_event(index)
        };
        self.transfer_exists(event)
    }

    fn withdraw_event(&mut self, payment: usize, incoming: bool) -> Result<(), TestCaseError> {
        let closed = |i: usize| {
            if incoming {
                self.book.closed(i)
            } else {
                self.book.finished(i)
            }
        };
        let Some(index) = self.pick_payment(payment, incoming, closed) else {
            return Ok(());
        };
        let (event, offers) = self.closing_event(index, incoming);
        let succeeds = offers && !self.transfer_exists(Some(event));
        let withdraw = OutgoingPaymentCommand::WithdrawEvent {
            event_id: Some(event),
        };
        let outcome = self.expect(Mutation::OutgoingPayment(withdraw), succeeds)?;
        self.book
            .reached
            .hit("event withdrawn", u32::from(outcome.is_ok()));
        Ok(())
    }

    fn resolve(&mut self, payment: usize, incoming: bool, post: bool) -> Result<(), TestCaseError> {
        let withdrawn = |i: usize| self.withdrawn(i, incoming);
        let Some(index) = self.pick_payment(payment, incoming, withdrawn) else {
            return Ok(());
        };
        let (event, _) = self.closing_event(index, incoming);
        let timestamp = self.timestamp_next();
        let ledger = &self.harness.port.ledger;
        let store = &self.harness.port.store;
        // Resolvable: a withdrawal still pending whose timeout has not passed.
        let succeeds = ledger
            .transfer_handle(store, event.as_u128())
            .filter(|handle| ledger.pending_status(*handle) == PendingStatus::Pending)
            .map(|handle| ledger.transfer_at(store, handle))
            .is_some_and(|pending| {
                pending.timestamp + u64::from(pending.timeout) * NANOS_PER_SECOND > timestamp
            });
        let resolve = WithdrawalResolve {
            withdrawal_id: Some(event),
            transfer_id: self.fresh(),
        };
        let command = if post {
            LiquidityCommand::Post(resolve)
        } else {
            LiquidityCommand::Void(resolve)
        };
        let outcome = self.expect(Mutation::Liquidity(command), succeeds)?;
        self.book
            .reached
            .hit("withdrawal resolved", u32::from(outcome.is_ok()));
        Ok(())
    }

    fn transfer_exists(&self, id: Option<Uuid>) -> bool {
        id.is_some_and(|id| {
            self.harness
                .port
                .ledger
                .transfer(&self.harness.port.store, id.as_u128())
                .is_some()
        })
    }
}

/// What a finished payment moved to its receiver's side: `debitAmountMinusFees` when it
/// delivered, nothing otherwise.
fn sent(quote: &BookQuote, ending: Ending) -> u128 {
    match ending {
        Ending::Delivered => quote.debit_minus_fees,
        Ending::NothingToDeliver | Ending::Failed(_) => 0,
    }
}

// -------------------------------------------------------------------------------------------------
// The checks after every step.

fn checkpoint_round_trip(payments: &Payments) -> Result<Payments, TestCaseError> {
    let mut bytes = Vec::new();
    payments.encode_checkpoint(&mut bytes);
    let (decoded, size) = Payments::decode_checkpoint(&bytes)
        .map_err(|error| TestCaseError::fail(format!("checkpoint: {error}")))?;
    prop_assert_eq!(size, bytes.len());
    prop_assert!(
        decoded == *payments,
        "the checkpoint decodes to another state"
    );
    Ok(decoded)
}

/// Per ledger, debits equal credits (posted, and pending); no account past its limit.
fn check_ledger(harness: &Harness) -> Result<(), TestCaseError> {
    // (debits_posted, credits_posted, debits_pending, credits_pending) per ledger.
    let mut sums: BTreeMap<u32, [u128; 4]> = BTreeMap::new();
    for account in harness.port.ledger.accounts() {
        let sum = sums.entry(account.ledger).or_default();
        let balances = [
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
        ];
        for (total, balance) in sum.iter_mut().zip(balances) {
            *total = total.checked_add(balance).expect("test amounts are small");
        }
        let debits = account.debits_posted + account.debits_pending;
        let credits = account.credits_posted + account.credits_pending;
        if account
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
        {
            prop_assert!(
                debits <= account.credits_posted,
                "{:x} overdrawn",
                account.id
            );
        }
        if account
            .flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            prop_assert!(
                credits <= account.debits_posted,
                "{:x} over-credited",
                account.id
            );
        }
    }
    for (ledger, [debits_posted, credits_posted, debits_pending, credits_pending]) in sums {
        prop_assert_eq!(debits_posted, credits_posted, "ledger {} posted", ledger);
        prop_assert_eq!(debits_pending, credits_pending, "ledger {} pending", ledger);
    }
    Ok(())
}

/// What the withdrawal transfer `id` holds against its account now: `(posted, pending)`, by the
/// ledger's own record of it (pending, posted, voided or expired).
fn withdrawal_held(harness: &Harness, id: Option<Uuid>) -> (u128, u128) {
    let (ledger, store) = (&harness.port.ledger, &harness.port.store);
    let Some(handle) = id.and_then(|id| ledger.transfer_handle(store, id.as_u128())) else {
        return (0, 0);
    };
    let transfer = ledger.transfer_at(store, handle);
    if !transfer.flags.contains(TransferFlags::PENDING) {
        return (transfer.amount, 0);
    }
    match ledger.pending_status(handle) {
        PendingStatus::Pending => (0, transfer.amount),
        PendingStatus::Posted => (transfer.amount, 0),
        PendingStatus::Voided | PendingStatus::Expired => (0, 0),
        PendingStatus::None => unreachable!("a pending transfer has a pending status"),
    }
}

fn check_incoming(harness: &Harness, book: &Book) -> Result<(), TestCaseError> {
    for incoming in &book.incoming {
        let account = harness.port.ledger.account(incoming.id.as_u128());
        let received = account.map_or(0, |account| account.credits_posted);
        prop_assert_eq!(received, incoming.delivered, "received by {}", incoming.id);
        let found = harness.payments.incoming_payment(incoming.id);
        let expired = incoming.expired(book.pulsed_through);
        if expired && received == 0 {
            prop_assert!(found.is_none(), "expired with nothing: soft-deleted");
            continue;
        }
        prop_assert!(found.is_some(), "incoming payment {} missing", incoming.id);
        let payment = found.unwrap();
        let state = if incoming.completed() {
            IncomingPaymentState::Completed
        } else if expired {
            IncomingPaymentState::Expired
        } else if received == 0 {
            IncomingPaymentState::Pending
        } else {
            IncomingPaymentState::Processing
        };
        prop_assert_eq!(payment.state, state, "state of {}", incoming.id);
        if state.is_open() {
            prop_assert_eq!(payment.expires_at, incoming.expires_at);
            prop_assert!(payment.withdrawal_event.is_none());
            continue;
        }
        // Closed with money: its event offers all it received, and only its withdrawal has
        // taken anything out.
        let event = payment.withdrawal_event;
        let offered = event
            .and_then(|event| harness.payments.webhook_event(event))
            .and_then(|event| event.withdrawal);
        prop_assert_eq!(offered.map(|w| w.amount), Some(received));
        let account = account.expect("it received money");
        let (posted, pending) = withdrawal_held(harness, event);
        prop_assert_eq!(account.debits_posted, posted);
        prop_assert_eq!(account.debits_pending, pending);
    }
    Ok(())
}

fn check_outgoing(harness: &Harness, book: &Book) -> Result<(), TestCaseError> {
    for outgoing in &book.outgoing {
        let quote = &book.quotes[outgoing.quote];
        let payment = harness.payments.outgoing_payment(quote.id);
        prop_assert!(payment.is_some(), "outgoing payment {} missing", quote.id);
        let payment = payment.unwrap();
        let account = harness.port.ledger.account(quote.id.as_u128());
        let ending = match outgoing.state {
            BookState::Funding | BookState::Cancelled => {
                let state = if outgoing.state == BookState::Funding {
                    OutgoingPaymentState::Funding
                } else {
                    OutgoingPaymentState::Cancelled
                };
                prop_assert_eq!(payment.state, state);
                prop_assert!(account.is_none(), "an unfunded payment has no account");
                continue;
            }
            BookState::Finished(ending) => ending,
        };
        let (state, error) = match ending {
            Ending::Delivered | Ending::NothingToDeliver => (OutgoingPaymentState::Completed, None),
            Ending::Failed(error) => (OutgoingPaymentState::Failed, Some(error)),
        };
        prop_assert_eq!(payment.state, state, "state of {}", quote.id);
        prop_assert_eq!(payment.error.as_deref(), error);
        prop_assert!(account.is_some(), "a funded payment has an account");
        let account = account.unwrap();
        let sent = sent(quote, ending);
        let (posted, pending) = withdrawal_held(harness, payment.finished_event);
        prop_assert_eq!(
            account.credits_posted,
            quote.debit,
            "funded with debitAmount"
        );
        prop_assert_eq!(account.debits_posted, sent + posted, "sent by {}", quote.id);
        prop_assert_eq!(account.debits_pending, pending);
        // The finishing event offers what is left: the fee, everything, or nothing.
        let offered = payment
            .finished_event
            .and_then(|event| harness.payments.webhook_event(event));
        prop_assert!(offered.is_some(), "a finished payment has its event");
        let left = quote.debit - sent;
        let withdrawal = offered.unwrap().withdrawal.map(|w| w.amount);
        prop_assert_eq!(withdrawal, (left > 0).then_some(left));
    }
    Ok(())
}

/// Every event the flows raised, by type, as the book counts them.
fn check_events(harness: &Harness, book: &Book) -> Result<(), TestCaseError> {
    let every = PageRequest {
        after: None,
        before: None,
        limit: usize::MAX,
        order: SortOrder::Ascending,
    };
    let mut found: BTreeMap<&str, usize> = BTreeMap::new();
    for event in harness.payments.webhook_events_page(&every, &[]).0 {
        *found.entry(event.event_type.as_str()).or_default() += 1;
        // The data is state: it must stay the bytes serde_json's sorted map wrote at first
        // (fields in the byte order of their names, compact), or an old log would replay to
        // other bytes.
        let text = event.data.text();
        let data: serde_json::Value = serde_json::from_str(&text).expect("JSON data");
        prop_assert_eq!(&*text, &data.to_string(), "{}", event.event_type);
        // The text is written when first read: it must still describe the payment as it was
        // when the event was created, whatever happened to the payment since.
        match event.event_type.as_str() {
            "incoming_payment.created" => {
                prop_assert_eq!(&data["completed"], &serde_json::json!(false));
                prop_assert_eq!(&data["receivedAmount"]["value"], &serde_json::json!("0"));
                prop_assert!(data.get("cancelledAt").is_none(), "{}", data);
            }
            "outgoing_payment.created" => {
                prop_assert_eq!(&data["state"], &serde_json::json!("FUNDING"));
                prop_assert_eq!(&data["sentAmount"]["value"], &serde_json::json!("0"));
            }
            _ => {}
        }
    }
    let pulsed_through = book.pulsed_through;
    let incoming =
        |keep: &dyn Fn(&BookIncoming) -> bool| book.incoming.iter().filter(|i| keep(i)).count();
    let outgoing =
        |keep: &dyn Fn(BookState) -> bool| book.outgoing.iter().filter(|o| keep(o.state)).count();
    let finished = |failed: bool| {
        outgoing(&|state| match state {
            BookState::Finished(Ending::Failed(_)) => failed,
            BookState::Finished(_) => !failed,
            BookState::Funding | BookState::Cancelled => false,
        })
    };
    let expected = [
        ("incoming_payment.created", book.incoming.len()),
        ("incoming_payment.completed", incoming(&|i| i.completed())),
        (
            "incoming_payment.expired",
            incoming(&|i| i.expired(pulsed_through) && i.delivered > 0),
        ),
        ("outgoing_payment.created", book.outgoing.len()),
        ("outgoing_payment.completed", finished(false)),
        ("outgoing_payment.failed", finished(true)),
        ("asset.liquidity_low", book.liquidity_low),
    ];
    for (event_type, count) in expected {
        let found = found.remove(event_type).unwrap_or(0);
        prop_assert_eq!(found, count, "{} events", event_type);
    }
    prop_assert!(found.is_empty(), "unexpected events: {:?}", found);
    Ok(())
}

fn check(run: &Run) -> Result<(), TestCaseError> {
    check_ledger(&run.harness)?;
    check_incoming(&run.harness, &run.book)?;
    check_outgoing(&run.harness, &run.book)?;
    check_events(&run.harness, &run.book)
}

/// Replays the log into a fresh state and ledger: the same outcomes, state, checkpoint bytes
/// and ledger.
fn check_replay(run: &Run) -> Result<(), TestCaseError> {
    let mut replay = Harness::new();
    let mut outcomes = Vec::with_capacity(run.outcomes.len());
    for logged in &run.log {
        match logged {
            Logged::Command(command) => outcomes.push(replay.execute_command(command)),
            Logged::Clock { seconds, pulse } => {
                Run::clock(&mut replay, *seconds, *pulse);
            }
        }
    }
    prop_assert_eq!(&outcomes, &run.outcomes);
    prop_assert!(replay.payments == run.harness.payments, "replay differs");
    let (mut replayed, mut live) = (Vec::new(), Vec::new());
    replay.payments.encode_checkpoint(&mut replayed);
    run.harness.payments.encode_checkpoint(&mut live);
    prop_assert!(replayed == live, "replay encodes other checkpoint bytes");
    prop_assert_eq!(
        replay.port.ledger.digest(&replay.port.store),
        run.harness.port.ledger.digest(&run.harness.port.store)
    );
    checkpoint_round_trip(&run.harness.payments)?;
    Ok(())
}

/// Runs one case; returns which endings it reached.
fn run_case(setup: &Setup, ops: &[Op]) -> Result<Reached, TestCaseError> {
    let mut run = Run::new(setup.clone());
    run.setup()?;
    check(&run)?;
    for (index, op) in ops.iter().enumerate() {
        let expired_before = count_expired(&run.book);
        run.step(op)
            .map_err(|error| TestCaseError::fail(format!("step {index} {op:?}: {error}")))?;
        count_newly_expired(&mut run.book, expired_before);
        check(&run)
            .map_err(|error| TestCaseError::fail(format!("after step {index} {op:?}: {error}")))?;
    }
    check_replay(&run)?;
    Ok(run.book.reached)
}

/// Incoming payments a pulse has expired, with and without money.
fn count_expired(book: &Book) -> (u32, u32) {
    let mut counts = (0, 0);
    for incoming in book
        .incoming
        .iter()
        .filter(|i| i.expired(book.pulsed_through))
    {
        if incoming.delivered > 0 {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    counts
}

fn count_newly_expired(book: &mut Book, before: (u32, u32)) {
    let after = count_expired(book);
    book.reached
        .hit("incoming expired with money", after.0 - before.0);
    book.reached
        .hit("incoming soft-deleted", after.1 - before.1);
}

fn config() -> ProptestConfig {
    let cases = std::env::var("TALLY_FLOWS_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // A failure prints its minimal case; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn payment_flows_keep_money_and_state((setup, ops) in case()) {
        run_case(&setup, &ops)?;
    }
}

/// A fixed set of generated cases reaches every ending the property test checks.
#[test]
fn flows_reach_every_ending() {
    const CASES: usize = 64;
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let mut reached = Reached::default();
    for _ in 0..CASES {
        let (setup, ops) = case().new_tree(&mut runner).expect("a case").current();
        let case = run_case(&setup, &ops).unwrap_or_else(|error| panic!("{error}"));
        reached.add(&case);
    }
    let missing: Vec<&str> = ENDINGS
        .into_iter()
        .filter(|ending| !reached.0.contains_key(ending))
        .collect();
    assert!(
        missing.is_empty(),
        "never reached: {missing:?} in {reached:?}"
    );
}

/// A receiver whose deadline passed receives nothing, even before the pulse that expires it:
/// the core stamps a due pulse after the commands of its turn. Only a quote that outlives its
/// receiver gets there: a lifespan over the deactivation grace period, and the receiving address
/// deactivated.
#[test]
fn a_receiver_past_its_deadline_receives_nothing_before_its_pulse() {
    let setup = Setup {
        liquidity: [1_000_000; 3],
        thresholds: [None; 3],
        usd_to_eur: 0.5,
        quote_lifespan_ns: 48 * 3600 * NANOS_PER_SECOND,
    };
    // Indexes as `pick` and `set_active` read them: 1 is the newest fitting object; 2 at
    // `set_active` is address 1.
    let ops = [
        Op::CreateIncoming {
            address: 1,
            amount: Some(100),
            expiry_seconds: None,
            receiver: false,
        },
        Op::CreateQuote {
            address: 0,
            incoming: 1,
            amounts: Amounts::Neither,
            rates: RatesChoice::Fetched,
        },
        Op::CreateOutgoing {
            quote: 1,
            address: None,
        },
        Op::SetActive {
            address: 2,
            active: false,
        },
        Op::Clock {
            seconds: 25 * 3600,
            pulse: false,
        },
        Op::Fund {
            outgoing: 1,
            by_event: false,
        },
        Op::Clock {
            seconds: 1,
            pulse: true,
        },
    ];
    let reached = run_case(&setup, &ops).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        reached.0.get(RECEIVER_PAST_DEADLINE),
        Some(&1),
        "{reached:?}"
    );
}

#[test]
fn lifetimes_are_rafikis() {
    // The book computes deadlines with the crate's constants; these are Rafiki's defaults.
    assert_eq!(QUOTE_LIFESPAN_NS, 5 * 60 * NANOS_PER_SECOND);
    assert_eq!(DEACTIVATION_GRACE_PERIOD_NS, 24 * 3600 * NANOS_PER_SECOND);
    assert_eq!(
        INCOMING_PAYMENT_EXPIRY_MAX_NS,
        30 * 24 * 3600 * NANOS_PER_SECOND
    );
}
