//! What every resolver shares: ids, times, pagination arguments, idempotency fingerprints,
//! and the one function that runs a command.

use async_graphql::{Context, Enum, Error, SimpleObject};
use sha2::{Digest, Sha256};
use tally_payments::{
    Command, Fingerprint, IdempotencyKey, Mutation, PageRequest, SortOrder as DomainSortOrder,
    Success, Uuid,
};

use crate::core_handle::CoreHandle;
use crate::errors::{error, payments_error, unavailable, Code};

/// Rafiki's page size default and maximum.
pub(crate) const PAGE_SIZE_DEFAULT: i32 = 20;
/// Largest `first` or `last`.
pub(crate) const PAGE_SIZE_MAX: i32 = 100;

/// Rafiki's `SortOrder`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortOrder {
    /// Oldest first.
    #[graphql(name = "ASC")]
    Asc,
    /// Newest first (the default).
    #[graphql(name = "DESC")]
    Desc,
}

/// Relay's `PageInfo`.
#[derive(SimpleObject, Clone, Debug, Default)]
#[graphql(name = "PageInfo")]
pub(crate) struct PageInfo {
    /// Cursor of the last edge.
    pub end_cursor: Option<String>,
    /// More rows after the last edge.
    pub has_next_page: bool,
    /// More rows before the first edge.
    pub has_previous_page: bool,
    /// Cursor of the first edge.
    pub start_cursor: Option<String>,
}

impl PageInfo {
    /// The page info of a domain page.
    pub(crate) fn of(page: &tally_payments::Page) -> PageInfo {
        PageInfo {
            end_cursor: page.ids.last().map(Uuid::to_string),
            has_next_page: page.has_next,
            has_previous_page: page.has_previous,
            start_cursor: page.ids.first().map(Uuid::to_string),
        }
    }
}

/// Checks Rafiki's pagination arguments (§3.4) and builds the domain's request.
pub(crate) fn page_request(
    after: Option<String>,
    before: Option<String>,
    first: Option<i32>,
    last: Option<i32>,
    sort_order: Option<SortOrder>,
) -> Result<PageRequest, Error> {
    let in_range = |size: Option<i32>| match size {
        None | Some(0) => Ok(PAGE_SIZE_DEFAULT),
        Some(size) if (1..=PAGE_SIZE_MAX).contains(&size) => Ok(size),
        Some(_) => Err(error(Code::InternalServerError, "Pagination index error")),
    };
    let first = in_range(first)?;
    let last_given = last.is_some_and(|last| last != 0);
    let last = in_range(last)?;
    if last_given && after.is_none() && before.is_none() {
        return Err(error(
            Code::InternalServerError,
            "Can't paginate backwards from the start.",
        ));
    }
    // A cursor that is no UUID names no row: the page is empty, as Rafiki's query gives.
    let cursor =
        |text: Option<String>| text.map(|text| Uuid::parse_str(&text).unwrap_or(Uuid::max()));
    let after = cursor(after);
    let before = if after.is_some() {
        None
    } else {
        cursor(before)
    };
    let limit = if before.is_some() { last } else { first };
    Ok(PageRequest {
        after,
        before,
        limit: usize::try_from(limit).expect("checked positive"),
        order: match sort_order {
            Some(SortOrder::Asc) => DomainSortOrder::Ascending,
            Some(SortOrder::Desc) | None => DomainSortOrder::Descending,
        },
    })
}

/// A client-supplied id: `None` unless it is a UUID.
pub(crate) fn uuid(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

/// A client-supplied transfer id: `None` unless it is a UUID v4 (Rafiki's `InvalidId` rule).
pub(crate) fn uuid_v4(text: &str) -> Option<Uuid> {
    uuid(text).filter(|id| id.get_version_num() == 4)
}

/// A core timestamp (ns since the Unix epoch) as Rafiki prints dates: ISO 8601, UTC, ms.
pub(crate) fn iso8601(timestamp_ns: u64) -> String {
    let ms = timestamp_ns / 1_000_000;
    let (days, ms_of_day) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

/// Parses a date as JavaScript's `new Date(text)` reads an ISO 8601 string: `YYYY-MM-DD`,
/// optionally `THH:MM`, `:SS`, `.fraction` (milliseconds kept), and `Z` or `±HH:MM`. A date
/// without a zone is read as UTC (JavaScript does so for a bare date, and uses the server's
/// zone for a date-time; Tally has no zone of its own). Returns ns since the Unix epoch; `None`
/// for anything else or a date before 1970.
pub(crate) fn parse_iso8601(text: &str) -> Option<u64> {
    let number = |part: &str| -> Option<i64> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut fields = date.split('-');
    let (year, month, day) = match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(y), Some(m), Some(d), None) if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            (number(y)?, number(m)?, number(d)?)
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (ms_of_day, offset_minutes) = match time {
        None => (0, 0),
        Some(time) => time_of_day(time, number)?,
    };
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let ms = days * 86_400_000 + ms_of_day - offset_minutes * 60_000;
    u64::try_from(ms).ok()?.checked_mul(1_000_000)
}

/// `HH:MM[:SS[.fff]][Z|±HH:MM]` → (ms of the day, zone offset in minutes).
fn time_of_day(time: &str, number: impl Fn(&str) -> Option<i64>) -> Option<(i64, i64)> {
    let zone_at = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(zone_at);
    let (clock, fraction) = match clock.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (clock, None),
    };
    let mut parts = clock.split(':');
    let (hour, minute, second) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(m), None, None) if h.len() == 2 && m.len() == 2 => {
            (number(h)?, number(m)?, 0)
        }
        (Some(h), Some(m), Some(s), None) if h.len() == 2 && m.len() == 2 && s.len() == 2 => {
            (number(h)?, number(m)?, number(s)?)
        }
        _ => return None,
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let ms = match fraction {
        None => 0,
        Some(fraction) => {
            number(fraction)?;
            number(&format!("{:0<3}", &fraction[..fraction.len().min(3)]))?
        }
    };
    let offset = match zone {
        "" | "Z" => 0,
        _ => {
            let (sign, hours_minutes) = zone.split_at(1);
            let (hours, minutes) = hours_minutes.split_once(':')?;
            if hours.len() != 2 || minutes.len() != 2 {
                return None;
            }
            let minutes = number(hours)? * 60 + number(minutes)?;
            if sign == "+" {
                minutes
            } else {
                -minutes
            }
        }
    };
    Some((((hour * 60 + minute) * 60 + second) * 1000 + ms, offset))
}

/// The idempotency key of a mutation, fingerprinted by the mutation's name and its parsed
/// arguments (so that `"5"` and `5` for a `UInt64` are the same request).
pub(crate) fn idempotency(
    key: Option<&str>,
    mutation_name: &str,
    arguments: &impl std::fmt::Debug,
) -> Option<IdempotencyKey> {
    let key = key?;
    let mut hasher = Sha256::new();
    hasher.update(mutation_name.as_bytes());
    hasher.update([0]);
    // The same bytes as hashing `format!("{arguments:?}")`, without the string: fingerprints
    // are kept in the state, so they must not change between versions.
    std::fmt::Write::write_fmt(&mut HashWriter(&mut hasher), format_args!("{arguments:?}"))
        .expect("hashing never fails");
    Some(IdempotencyKey {
        key: key.to_owned(),
        fingerprint: Fingerprint(hasher.finalize().into()),
    })
}

/// Feeds formatted text straight into a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.update(text.as_bytes());
        Ok(())
    }
}

/// Runs a mutation in the core; returns its outcome (a domain error is still a value).
pub(crate) async fn outcome(
    context: &Context<'_>,
    idempotency: Option<IdempotencyKey>,
    mutation: Mutation,
) -> Result<tally_payments::Outcome, Error> {
    let command = Command {
        idempotency,
        mutation,
    };
    core(context).execute(&command).await.map_err(unavailable)
}

/// Runs a mutation in the core; a domain error becomes Rafiki's GraphQL error.
pub(crate) async fn execute(
    context: &Context<'_>,
    idempotency: Option<IdempotencyKey>,
    mutation: Mutation,
) -> Result<Success, Error> {
    outcome(context, idempotency, mutation)
        .await?
        .map_err(|domain| payments_error(&domain))
}

/// The liquidity of a ledger account (`None`: no such account yet).
pub(crate) async fn account_liquidity(
    context: &Context<'_>,
    account: u128,
) -> Result<Option<u128>, Error> {
    core(context)
        .read(move |view| view.account(account).map(tally_payments::liquidity_of))
        .await
        .map_err(unavailable)
}

/// The core handle of a request.
pub(crate) fn core<'a>(context: &Context<'a>) -> &'a CoreHandle {
    context.data_unchecked::<CoreHandle>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fingerprints are state (kept with each idempotency key): they are the hash of the
    /// mutation's name, a zero byte and the arguments' `Debug` text, as first written.
    #[test]
    fn fingerprints_hash_the_debug_text() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Arguments {
            asset_id: String,
            amount: u128,
            note: Option<Vec<&'static str>>,
        }
        let arguments = Arguments {
            asset_id: "0f291ead-1d7f-4cc4-a108-3e4161f19ea6".into(),
            amount: 123_456_789_012_345_678_901,
            note: Some(vec!["a \"quoted\" word", "ü"]),
        };
        let mut expected = Sha256::new();
        expected.update(b"depositAssetLiquidity\0");
        expected.update(format!("{arguments:?}").as_bytes());
        let key = idempotency(Some("k"), "depositAssetLiquidity", &arguments).unwrap();
        assert_eq!(key.fingerprint.0, <[u8; 32]>::from(expected.finalize()));
        assert_eq!(key.key, "k");
    }

    #[test]
    fn dates_print_as_rafiki_does() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(1_733_470_245_123_000_000),
            "2024-12-06T07:30:45.123Z"
        );
        assert_eq!(iso8601(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn dates_parse_as_javascript() {
        let ns = |ms: u64| Some(ms * 1_000_000);
        // Date.parse("2024-12-06T07:30:45.123Z") = 1733470245123.
        assert_eq!(
            parse_iso8601("2024-12-06T07:30:45.123Z"),
            ns(1_733_470_245_123)
        );
        assert_eq!(
            parse_iso8601("2024-12-06T08:30:45.123+01:00"),
            ns(1_733_470_245_123)
        );
        assert_eq!(parse_iso8601("2000-02-29"), ns(951_782_400_000));
        assert_eq!(parse_iso8601("2024-12-06T07:30Z"), ns(1_733_470_200_000));
        for bad in [
            "",
            "tomorrow",
            "2024-13-01",
            "2024-12-06T25:00Z",
            "2024-12-06T07:30:45x",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        assert_eq!(
            iso8601(parse_iso8601("2031-01-02T03:04:05.006Z").unwrap()),
            "2031-01-02T03:04:05.006Z"
        );
    }

    #[test]
    fn pagination_limits() {
        assert!(page_request(None, None, Some(101), None, None).is_err());
        assert!(page_request(None, None, None, Some(5), None).is_err());
        let request = page_request(None, None, Some(0), None, None).unwrap();
        assert_eq!(request.limit, 20);
        assert_eq!(request.order, DomainSortOrder::Descending);
    }
}
