//! Exchange rates for quotes between assets of different codes, from Rafiki's rates source
//! shape: `GET <url>?base=<CODE>` answers `{"base": "<CODE>", "rates": {"<CODE>": <number>, ...}}`
//! (`EXCHANGE_RATES_URL`), or, offline, a file holding `{"<BASE>": {"<CODE>": <number>, ...},
//! ...}` (the table Rafiki's mock account servicing entity serves). Fetched here, in the front,
//! cached for `RATES_LIFETIME`, and carried inside the quote command, so that the core stays
//! deterministic. A source that is down, slow or answers garbage gives no rates, and the domain
//! answers Rafiki's `CouldNotFetchRates`; a fetch never takes longer than `RATES_TIMEOUT`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde::Deserialize;
use tally_payments::{ExchangeRate, Rates};

use crate::http;

/// Rafiki's rates request timeout.
pub const RATES_TIMEOUT: Duration = Duration::from_secs(5);
/// Rafiki's `EXCHANGE_RATES_LIFETIME` default: how long fetched rates are used.
pub const RATES_LIFETIME: Duration = Duration::from_secs(15);
/// Largest rates answer read.
const RATES_ANSWER_BYTES_MAX: usize = 1 << 20;
/// Base codes cached at most (each entry is one answer).
const CACHED_BASES_MAX: usize = 1024;

/// Where rates come from.
#[derive(Clone, Debug, Default)]
pub struct RatesOptions {
    /// `--exchange-rates-url`.
    pub url: Option<String>,
    /// `--exchange-rates-file`'s table (`load_rates_file`), used when no URL is given: base
    /// code → code → rate.
    pub table: HashMap<String, HashMap<String, f64>>,
}

/// Reads an exchange rates file: `{"<BASE>": {"<CODE>": <number>, ...}, ...}`.
pub fn load_rates_file(path: &Path) -> Result<HashMap<String, HashMap<String, f64>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("exchange rates file {}: {error}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|error| format!("exchange rates file {}: {error}", path.display()))
}

#[derive(Deserialize)]
struct RatesAnswer {
    base: String,
    rates: HashMap<String, f64>,
}

/// The rates source and its cache.
pub(crate) struct RatesSource {
    url: Option<String>,
    /// The file's table: base code → rates.
    table: HashMap<String, Rates>,
    cache: Mutex<HashMap<String, (Instant, Rates)>>,
}

impl RatesSource {
    pub(crate) fn new(options: &RatesOptions) -> RatesSource {
        let table = options
            .table
            .iter()
            .map(|(base, rates)| (base.clone(), rates_of(base.clone(), rates.clone())))
            .collect();
        RatesSource {
            url: options.url.clone(),
            table,
            cache: Mutex::default(),
        }
    }

    /// The rates from `base`, if the source has them.
    pub(crate) async fn rates(&self, base: &str) -> Option<Rates> {
        let Some(url) = &self.url else {
            return self.table.get(base).cloned();
        };
        if let Some(rates) = self.cached(base) {
            return Some(rates);
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        let request_url = format!("{url}{separator}base={base}");
        let answer = tokio::time::timeout(
            RATES_TIMEOUT,
            http::request(
                Method::GET,
                &request_url,
                &[],
                Vec::new(),
                RATES_ANSWER_BYTES_MAX,
            ),
        )
        .await;
        let Ok(Ok((StatusCode::OK, body))) = answer else {
            tracing::warn!(url = %request_url, "could not fetch exchange rates");
            return None;
        };
        let Ok(answer) = serde_json::from_slice::<RatesAnswer>(&body) else {
            tracing::warn!(url = %request_url, "exchange rates answer does not parse");
            return None;
        };
        let rates = rates_of(answer.base, answer.rates);
        self.cache_insert(base, rates.clone());
        Some(rates)
    }

    fn cached(&self, base: &str) -> Option<Rates> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(base)
            .filter(|(fetched, _)| fetched.elapsed() < RATES_LIFETIME)
            .map(|(_, rates)| rates.clone())
    }

    fn cache_insert(&self, base: &str, rates: Rates) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHED_BASES_MAX {
            cache.clear();
        }
        cache.insert(base.to_owned(), (Instant::now(), rates));
    }
}

/// Rates in the command's form, sorted by code so that the command's bytes do not depend on
/// hash order.
fn rates_of(base: String, rates: HashMap<String, f64>) -> Rates {
    let mut rates: Vec<(String, ExchangeRate)> = rates
        .into_iter()
        .map(|(code, rate)| (code, ExchangeRate(rate)))
        .collect();
    rates.sort_by(|a, b| a.0.cmp(&b.0));
    Rates { base, rates }
}
