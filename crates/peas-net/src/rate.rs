//! Byte-rate limiting: a token bucket shared by every transfer of a node.
//!
//! The bucket is split in two: [`Bucket`] is the pure arithmetic (time passed in, so it is unit
//! tested without a clock) and [`RateLimiter`] is the shared async wrapper the driver and the
//! upload hooks await before moving bytes.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// The smallest burst a limited bucket allows, in bytes: two 16 KiB chunk groups, so a single
/// chunk group never has to wait for more tokens than the bucket can hold.
pub const MIN_BURST: u64 = 32 * 1024;

/// Token-bucket arithmetic over an externally supplied clock.
///
/// Invariant: `tokens <= burst`. Tokens may go negative ("debt"): a caller that takes more than
/// is available is told how long to wait until the debt is repaid, which keeps the long-run rate
/// exactly `rate` bytes per second while letting each caller proceed after one wait.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl Bucket {
    /// A bucket refilling at `rate` bytes/s (must be > 0; 0 is treated as 1), full at creation,
    /// holding at most max(`rate`/10, [`MIN_BURST`]) bytes.
    pub fn new(rate: u64, now: Duration) -> Self {
        let rate = rate.max(1) as f64;
        let burst = (rate / 10.0).max(MIN_BURST as f64);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// The configured rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    fn refill(&mut self, now: Duration) {
        if now > self.last {
            let dt = (now - self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Takes `n` bytes at time `now` and returns how long the caller must wait before sending
    /// them (zero if the bucket had enough tokens).
    pub fn take(&mut self, now: Duration, n: u64) -> Duration {
        self.refill(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A shared, cloneable rate limiter; `None` rate means unlimited (every call returns at once).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Option<Arc<Mutex<Bucket>>>,
    start: tokio::time::Instant,
}

impl RateLimiter {
    /// A limiter for `rate` bytes per second, or an unlimited one for `None`.
    pub fn new(rate: Option<u64>) -> Self {
        Self {
            inner: rate.map(|r| Arc::new(Mutex::new(Bucket::new(r, Duration::ZERO)))),
            start: tokio::time::Instant::now(),
        }
    }

    /// An unlimited limiter.
    pub fn unlimited() -> Self {
        Self::new(None)
    }

    /// The configured rate, if any.
    pub fn rate(&self) -> Option<u64> {
        self.inner
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()).rate())
    }

    /// How long a transfer of `n` bytes must wait now; the bytes are accounted immediately.
    pub fn reserve(&self, n: u64) -> Duration {
        match &self.inner {
            None => Duration::ZERO,
            Some(b) => {
                let now = self.start.elapsed();
                b.lock().unwrap_or_else(|e| e.into_inner()).take(now, n)
            }
        }
    }

    /// Waits until `n` bytes may be sent or received.
    pub async fn acquire(&self, n: u64) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_bucket_serves_burst_without_wait() {
        let mut b = Bucket::new(1_000_000, Duration::ZERO);
        assert_eq!(b.take(Duration::ZERO, 100_000), Duration::ZERO);
        // the bucket is now empty: the next byte waits
        assert!(b.take(Duration::ZERO, 1_000) > Duration::ZERO);
    }

    #[test]
    fn debt_is_repaid_at_the_configured_rate() {
        let mut b = Bucket::new(1_000_000, Duration::ZERO);
        b.take(Duration::ZERO, 100_000); // drain the burst
        let wait = b.take(Duration::ZERO, 500_000);
        assert_eq!(wait, Duration::from_millis(500));
        // after the wait has passed the bucket is back at zero: a small take waits a little
        let wait2 = b.take(Duration::from_millis(500), 1_000);
        assert_eq!(wait2, Duration::from_millis(1));
    }

    #[test]
    fn long_run_rate_matches() {
        // send 16 KiB groups back to back, advancing time by each wait: total time = bytes/rate
        let rate = 4 * 1024 * 1024;
        let mut b = Bucket::new(rate, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut sent = 0u64;
        while sent < 64 * 1024 * 1024 {
            now += b.take(now, 16 * 1024);
            sent += 16 * 1024;
        }
        let expected = (sent - b.burst as u64) as f64 / rate as f64;
        assert!(
            (now.as_secs_f64() - expected).abs() < 0.01,
            "{now:?} vs {expected}"
        );
    }

    #[test]
    fn refill_never_exceeds_burst() {
        let mut b = Bucket::new(1_000_000, Duration::ZERO);
        b.take(Duration::ZERO, 100_000);
        // an hour idle refills only up to the burst
        assert_eq!(b.take(Duration::from_secs(3600), 100_000), Duration::ZERO);
        assert!(b.take(Duration::from_secs(3600), 1) > Duration::ZERO);
    }

    #[test]
    fn small_rates_keep_min_burst() {
        let mut b = Bucket::new(1024, Duration::ZERO);
        assert_eq!(b.take(Duration::ZERO, MIN_BURST), Duration::ZERO);
        assert_eq!(b.take(Duration::ZERO, 1024), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let l = RateLimiter::unlimited();
        assert_eq!(l.rate(), None);
        assert_eq!(l.reserve(u64::MAX / 2), Duration::ZERO);
        l.acquire(1 << 40).await;
    }
}
