//! Session-wide rate limits: one token bucket per direction, driven by the loop's
//! timers, and the parser for `--max-upload-rate` / `--max-download-rate` values.
//!
//! The bucket holds up to `burst` bytes and refills at the configured rate. Uploads
//! ask first ([`RateLimit::take`], or send one whole block when not
//! [`blocked`](RateLimit::is_blocked) and [`consume`](RateLimit::consume) it);
//! downloads account for bytes already read ([`RateLimit::consume`]), which may put the
//! bucket into debt, and the caller pauses reads until [`RateLimit::ready_at`]. Debt
//! is repaid before anything new is allowed, so the long-run average is the rate
//! whatever the read sizes are.
//!
//! Tokens are counted in byte-nanoseconds (bytes × 10⁹) in an `i128`, so refilling is
//! exact integer arithmetic: no rounding drift, however often the loop asks.

use std::fmt;
use std::time::{Duration, Instant};

use crate::wire::BLOCK;

/// The smallest burst: one full block and its `piece` message header (length
/// prefix, id, index, begin), so that a whole block can always pass at once.
pub const MIN_BURST: u64 = BLOCK as u64 + 13;

/// The default burst is this fraction of a second's worth of the rate (1/8 s):
/// large enough that the loop wakes for a timer at most a few times per 100 ms at
/// any rate, small enough that a transfer starting after an idle spell is not a spike.
pub const BURST_DIVISOR: u64 = 8;

const NANOS: i128 = 1_000_000_000;

/// A token bucket for one direction. `None` rate (or 0) means unlimited, and then
/// every call returns at once without arithmetic.
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Bytes per second; `None` when unlimited.
    rate: Option<u64>,
    burst: u64,
    /// Tokens in byte-nanoseconds; negative while in debt.
    tokens: i128,
    last: Instant,
}

impl RateLimit {
    /// A bucket for `bytes_per_second` (`None` or `Some(0)`: unlimited) with the
    /// default burst ([`default_burst`]). It starts empty, so that the first second
    /// of a transfer is held to the rate too, not to the rate plus a burst.
    pub fn new(bytes_per_second: Option<u64>, now: Instant) -> RateLimit {
        let rate = bytes_per_second.filter(|&r| r > 0);
        RateLimit {
            rate,
            burst: rate.map_or(0, default_burst),
            tokens: 0,
            last: now,
        }
    }

    /// Sets the burst (at least [`MIN_BURST`]); tokens above it are dropped.
    pub fn with_burst(mut self, burst: u64) -> RateLimit {
        if self.rate.is_some() {
            self.burst = burst.max(MIN_BURST);
            self.tokens = self.tokens.min(scaled(self.burst));
        }
        self
    }

    /// Changes the rate from `now` on, with the default burst for the new rate (what
    /// was earned so far at the old rate stays, up to the new burst).
    pub fn set_rate(&mut self, now: Instant, bytes_per_second: Option<u64>) {
        self.refill(now);
        let rate = bytes_per_second.filter(|&r| r > 0);
        self.rate = rate;
        self.burst = rate.map_or(0, default_burst);
        self.tokens = if rate.is_some() {
            self.tokens.min(scaled(self.burst))
        } else {
            0
        };
    }

    /// The rate in bytes per second, `None` when unlimited.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// The most bytes that can pass at once after an idle spell.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Grants up to `bytes` now and takes them from the bucket; returns how many
    /// (0 while in debt or empty). For uploads: how much we may send now.
    pub fn take(&mut self, now: Instant, bytes: u64) -> u64 {
        if self.rate.is_none() {
            return bytes;
        }
        self.refill(now);
        if self.tokens <= 0 {
            return 0;
        }
        let available = (self.tokens / NANOS) as u64; // whole bytes only
        let granted = bytes.min(available);
        self.tokens -= scaled(granted);
        granted
    }

    /// Accounts for `bytes` that have already moved (downloads: bytes read). The
    /// bucket may go into debt; [`is_blocked`](Self::is_blocked) stays true until it
    /// is repaid.
    pub fn consume(&mut self, now: Instant, bytes: u64) {
        if self.rate.is_none() {
            return;
        }
        self.refill(now);
        self.tokens -= scaled(bytes);
    }

    /// No bytes may move now (empty or in debt). Never true when unlimited.
    pub fn is_blocked(&mut self, now: Instant) -> bool {
        if self.rate.is_none() {
            return false;
        }
        self.refill(now);
        self.tokens < NANOS // less than one whole byte
    }

    /// When at least one byte may move again: `None` when unlimited, `Some(now)`
    /// when not blocked, else the instant the debt is repaid (arm a timer for it).
    pub fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        let rate = self.rate?;
        self.refill(now);
        let missing = NANOS - self.tokens; // byte-ns until one whole byte is there
        if missing <= 0 {
            return Some(now);
        }
        // The bucket gains `rate` byte-ns per nanosecond; round up so the timer
        // never fires a moment too early.
        let rate = i128::from(rate);
        let nanos = (missing + rate - 1) / rate;
        Some(now + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }

    fn refill(&mut self, now: Instant) {
        let Some(rate) = self.rate else { return };
        let elapsed = now.saturating_duration_since(self.last);
        if elapsed.is_zero() {
            return;
        }
        self.last = now;
        let earned = i128::from(rate) * elapsed.as_nanos() as i128;
        self.tokens = (self.tokens + earned).min(scaled(self.burst));
    }
}

/// The default burst for `rate`: [`BURST_DIVISOR`]ths of a second, at least [`MIN_BURST`].
pub fn default_burst(rate: u64) -> u64 {
    (rate / BURST_DIVISOR).max(MIN_BURST)
}

fn scaled(bytes: u64) -> i128 {
    i128::from(bytes) * NANOS
}

/// What was wrong with a rate value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateParseError {
    /// Nothing was given.
    Empty,
    /// The number part is not a plain decimal like `500` or `1.5`.
    BadNumber(String),
    /// The unit is none of `B`, `K`/`KiB`, `M`/`MiB`, `G`/`GiB`.
    UnknownUnit(String),
    /// More than nine digits after the decimal point.
    TooPrecise(String),
    /// A fraction of a byte (`1.5` or `1.5B`): bytes are whole.
    FractionalBytes(String),
    /// More than `u64::MAX` bytes per second.
    TooLarge(String),
}

impl fmt::Display for RateParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateParseError::Empty => write!(f, "empty rate: give bytes per second, like 500K or 2M"),
            RateParseError::BadNumber(s) => {
                write!(f, "{s:?} is not a rate: expected a number like 500, 500K or 1.5M")
            }
            RateParseError::UnknownUnit(s) => {
                write!(
                    f,
                    "unknown unit {s:?}: use B, K or KiB (1024 bytes), M or MiB, G or GiB"
                )
            }
            RateParseError::TooPrecise(s) => write!(f, "{s:?} has more than 9 decimal places"),
            RateParseError::FractionalBytes(s) => {
                write!(
                    f,
                    "{s:?} is a fraction of a byte: bytes are whole (did you mean K or M?)"
                )
            }
            RateParseError::TooLarge(s) => write!(f, "{s:?} is too large a rate"),
        }
    }
}

impl std::error::Error for RateParseError {}

/// Parses a rate in bytes per second: a decimal number and an optional binary unit.
///
/// Units are powers of 1024, case-insensitive: `B` (or none) = 1, `K`/`KiB` = 1024,
/// `M`/`MiB` = 1024², `G`/`GiB` = 1024³. So `500K` is 512000 and `1.5M` is 1572864.
/// Fractions are allowed with a unit and rounded down to whole bytes. `0` is valid
/// and means unlimited to [`RateLimit::new`]. Whitespace around and between the
/// parts is ignored. The result suits clap's `value_parser`.
pub fn parse_rate(input: &str) -> Result<u64, RateParseError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(RateParseError::Empty);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let bad = || RateParseError::BadNumber(input.to_string());
    if number.is_empty() {
        return Err(bad());
    }
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(RateParseError::UnknownUnit(unit.to_string())),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(bad());
    }
    if fraction.len() > 9 {
        return Err(RateParseError::TooPrecise(input.to_string()));
    }
    let too_large = || RateParseError::TooLarge(input.to_string());
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| bad())?;
        let scale = 10u128.pow(fraction.len() as u32);
        if multiplier == 1 && digits != 0 {
            return Err(RateParseError::FractionalBytes(input.to_string()));
        }
        bytes += digits * multiplier / scale; // < multiplier, cannot overflow
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u64 = 1_000_000;

    /// A greedy sender asking for 64 KiB every millisecond for `seconds`; returns bytes granted.
    fn greedy_take(limit: &mut RateLimit, t0: Instant, seconds: u64) -> u64 {
        let mut total = 0;
        for ms in 0..=seconds * 1000 {
            total += limit.take(t0 + Duration::from_millis(ms), 64 * 1024);
        }
        total
    }

    #[test]
    fn greedy_upload_averages_the_rate_within_two_percent_over_five_seconds() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(Some(RATE), t0);
        let total = greedy_take(&mut limit, t0, 5);
        let average = total as f64 / 5.0;
        assert!(
            (average / RATE as f64 - 1.0).abs() < 0.02,
            "average {average} B/s"
        );
    }

    #[test]
    fn greedy_download_in_debt_averages_the_rate_within_two_percent() {
        // The reader reads 64 KiB whenever it is not blocked and sleeps until ready_at.
        let t0 = Instant::now();
        let mut limit = RateLimit::new(Some(RATE), t0);
        let (mut now, mut total, mut reads) = (t0, 0u64, 0);
        let end = t0 + Duration::from_secs(5);
        while now < end {
            if limit.is_blocked(now) {
                let ready = limit.ready_at(now).expect("limited");
                assert!(ready > now, "a blocked bucket is ready later");
                now = ready;
                continue;
            }
            limit.consume(now, 64 * 1024);
            total += 64 * 1024;
            reads += 1;
        }
        let average = total as f64 / 5.0;
        assert!(
            (average / RATE as f64 - 1.0).abs() < 0.02,
            "average {average} B/s"
        );
        assert!(reads > 10, "the reader was woken repeatedly ({reads} reads)");
    }

    #[test]
    fn a_burst_after_idle_is_bounded_by_the_burst_size() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(Some(RATE), t0);
        assert_eq!(limit.burst(), RATE / BURST_DIVISOR);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(limit.take(later, u64::MAX), limit.burst());
        assert_eq!(limit.take(later, u64::MAX), 0, "nothing more at the same instant");
        // A slow rate still lets one whole block through at once.
        let mut slow = RateLimit::new(Some(1000), t0);
        assert_eq!(slow.burst(), MIN_BURST);
        assert_eq!(slow.take(later, u64::MAX), MIN_BURST);
        let custom = RateLimit::new(Some(RATE), t0).with_burst(1);
        assert_eq!(custom.burst(), MIN_BURST);
    }

    #[test]
    fn debt_is_repaid_before_new_bytes_are_allowed() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(Some(RATE), t0);
        limit.consume(t0, 500_000); // half a second of debt
        let ready = limit.ready_at(t0).unwrap();
        // Ready when one whole byte is back: 500,001 bytes at 1 MB/s.
        assert_eq!(ready - t0, Duration::from_nanos(500_001_000));
        for ms in [1, 100, 499] {
            let now = t0 + Duration::from_millis(ms);
            assert!(limit.is_blocked(now), "still in debt at {ms} ms");
            assert_eq!(limit.take(now, 1000), 0);
        }
        let after = t0 + Duration::from_millis(510);
        assert!(!limit.is_blocked(after));
        assert_eq!(limit.take(after, 1_000_000), 10_000);
    }

    #[test]
    fn unlimited_grants_everything_and_never_blocks() {
        let t0 = Instant::now();
        for rate in [None, Some(0)] {
            let mut limit = RateLimit::new(rate, t0);
            assert_eq!(limit.rate(), None);
            assert_eq!(limit.take(t0, u64::MAX), u64::MAX);
            limit.consume(t0, u64::MAX);
            assert!(!limit.is_blocked(t0));
            assert_eq!(limit.ready_at(t0), None);
        }
    }

    #[test]
    fn changing_the_rate_takes_effect_from_then_on() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(Some(RATE), t0);
        limit.set_rate(t0, Some(2 * RATE));
        let granted = greedy_take(&mut limit, t0, 2);
        assert!(
            (granted as f64 / (4 * RATE) as f64 - 1.0).abs() < 0.02,
            "{granted}"
        );
        limit.set_rate(t0 + Duration::from_secs(2), None);
        assert_eq!(limit.take(t0 + Duration::from_secs(2), 7), 7);
    }

    #[test]
    fn rates_parse_with_binary_units() {
        assert_eq!(parse_rate("500K"), Ok(512_000));
        assert_eq!(parse_rate("500k"), Ok(512_000));
        assert_eq!(parse_rate("500KiB"), Ok(512_000));
        assert_eq!(parse_rate("2M"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_rate("2 MiB"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_rate("1.5M"), Ok(1_572_864));
        assert_eq!(parse_rate(".5k"), Ok(512));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        assert_eq!(parse_rate(" 12345 "), Ok(12_345));
        assert_eq!(parse_rate("12345B"), Ok(12_345));
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("1.0"), Ok(1));
    }

    #[test]
    fn bad_rates_say_what_is_wrong() {
        assert_eq!(parse_rate("  "), Err(RateParseError::Empty));
        assert_eq!(parse_rate("fast"), Err(RateParseError::BadNumber("fast".into())));
        assert_eq!(
            parse_rate("5 fast"),
            Err(RateParseError::UnknownUnit("fast".into()))
        );
        assert_eq!(parse_rate("5KB"), Err(RateParseError::UnknownUnit("KB".into())));
        assert_eq!(parse_rate("-5K"), Err(RateParseError::BadNumber("-5K".into())));
        assert_eq!(
            parse_rate("1.2.3K"),
            Err(RateParseError::BadNumber("1.2.3K".into()))
        );
        assert_eq!(parse_rate("K"), Err(RateParseError::BadNumber("K".into())));
        assert_eq!(
            parse_rate("1.5"),
            Err(RateParseError::FractionalBytes("1.5".into()))
        );
        assert_eq!(
            parse_rate("1.0000000001M"),
            Err(RateParseError::TooPrecise("1.0000000001M".into()))
        );
        assert_eq!(
            parse_rate("99999999999999999999G"),
            Err(RateParseError::TooLarge("99999999999999999999G".into()))
        );
        let message = parse_rate("5KB").unwrap_err().to_string();
        assert!(message.contains("1024"), "{message}");
    }
}
