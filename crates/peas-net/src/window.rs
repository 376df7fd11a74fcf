//! Sizing the receive window of each data connection: how many bytes one peer may have on
//! their way to us (sent, queued in the network, or buffered in its QUIC stack) beyond what
//! we have read.
//!
//! Why: a seeder writes an upload as fast as QUIC takes it. With QUIC's default flow control
//! (1.25 MB per stream, no limit per connection) megabytes of every upload sit in the sender's
//! buffers and in the queue of a shaped or congested uplink. Each request the planner moves or
//! cancels then wastes what was already on its way, and the queueing delay makes requests look
//! silent, so the planner moves more of them. Measured with `cargo xtask e2e --netns` (links
//! shaped by `tc`, no application cap): the 8-node fan-out took 1.6–1.8 × F/u with the default
//! windows (see `docs/network.md`).
//!
//! So the downloader sizes each data connection's window from what that peer delivers, as BBR
//! sizes what it keeps in flight: four bandwidth-delay products (the rate measured over the
//! last period times the smallest round trip seen on the connection), never below
//! [`MIN_WINDOW`] nor above [`MAX_WINDOW`]. A window that limits the rate grows four times as
//! large each period while the round trip stays near its minimum (the link is not queueing), so
//! a long fat link is filled within a few periods; a window that does not limit it shrinks, at
//! most by half per period, down to the floor. (Four rather than BBR's two: with two, a
//! single-peer download over a 50 ms round trip was 17 % slower than with QUIC's default
//! windows; with four it was as fast. On a LAN the floor decides either way.)
//!
//! [`WindowSizer`] is the arithmetic, with time and byte counts passed in; the driver feeds it
//! each connection's statistics and applies the result with `set_receive_window`.

use std::time::Duration;

/// The smallest window, and the one a connection starts with: enough for a link of 250 MiB/s
/// at 1 ms round trip, small enough that a cancelled request wastes little.
pub const MIN_WINDOW: u64 = 256 * 1024;

/// How many bandwidth-delay products a window holds (see the module docs).
const GAIN: f64 = 4.0;

/// The largest window: 320 MiB/s from one peer at a 50 ms round trip.
pub const MAX_WINDOW: u64 = 16 * 1024 * 1024;

/// Receive-window arithmetic for one connection (see the module docs).
#[derive(Debug, Clone)]
pub struct WindowSizer {
    window: u64,
    min_rtt: Option<Duration>,
    /// The previous sample: (time, bytes received on the connection so far).
    last: Option<(Duration, u64)>,
}

impl Default for WindowSizer {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowSizer {
    /// A connection that starts with a window of [`MIN_WINDOW`].
    pub fn new() -> Self {
        Self {
            window: MIN_WINDOW,
            min_rtt: None,
            last: None,
        }
    }

    /// The current window in bytes.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Takes one sample at `now`: `received`, the bytes received on the connection so far,
    /// and its current round-trip estimate if known. Returns the new window when it changed.
    pub fn sample(&mut self, now: Duration, received: u64, rtt: Option<Duration>) -> Option<u64> {
        if let Some(r) = rtt.filter(|r| !r.is_zero()) {
            self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        }
        let (t0, b0) = self.last.replace((now, received))?;
        let dt = now.checked_sub(t0).filter(|d| !d.is_zero())?;
        let rate = received.saturating_sub(b0) as f64 / dt.as_secs_f64();
        let bdp = rate * self.min_rtt?.as_secs_f64();
        let target = ((GAIN * bdp) as u64).clamp(MIN_WINDOW, MAX_WINDOW);
        let next = if target >= self.window {
            target
        } else {
            target.max(self.window / 2)
        };
        (next != self.window).then(|| {
            self.window = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const PERIOD: Duration = Duration::from_millis(200);

    /// Feeds a connection whose peer sends at min(link, window / rtt) for `periods` periods;
    /// returns the last window.
    fn run(w: &mut WindowSizer, link: f64, rtt: Duration, periods: u32) -> u64 {
        let mut now = Duration::ZERO;
        let mut received = 0u64;
        w.sample(now, received, Some(rtt));
        for _ in 0..periods {
            let rate = link.min(w.window() as f64 / rtt.as_secs_f64());
            now += PERIOD;
            received += (rate * PERIOD.as_secs_f64()) as u64;
            w.sample(now, received, Some(rtt));
        }
        w.window()
    }

    #[test]
    fn starts_at_the_floor_and_needs_two_samples() {
        let mut w = WindowSizer::new();
        assert_eq!(w.window(), MIN_WINDOW);
        assert_eq!(w.sample(Duration::ZERO, 0, Some(MS)), None);
        assert_eq!(w.window(), MIN_WINDOW);
    }

    #[test]
    fn a_short_link_keeps_the_floor() {
        // 100 MiB/s at 0.5 ms: four bandwidth-delay products (200 KiB) are under the floor.
        let mut w = WindowSizer::new();
        assert_eq!(run(&mut w, 100.0 * 1048576.0, MS / 2, 20), MIN_WINDOW);
    }

    /// Whether `w` is within 0.1 % of `want`.
    fn near(w: u64, want: u64) -> bool {
        w.abs_diff(want) <= want / 1000
    }

    #[test]
    fn a_long_fat_link_is_filled_within_a_few_periods() {
        // 100 MiB/s at 20 ms: the floor alone allows 12.5 MiB/s; the window grows fourfold
        // each period until it holds four 2 MiB bandwidth-delay products.
        let mut w = WindowSizer::new();
        let rtt = 20 * MS;
        let w2 = run(&mut w, 100.0 * 1048576.0, rtt, 2);
        assert!(near(w2, 4 << 20), "{w2}");
        let w3 = run(&mut w, 100.0 * 1048576.0, rtt, 1);
        assert!(near(w3, 8 << 20), "{w3}");
        let w10 = run(&mut w, 100.0 * 1048576.0, rtt, 8);
        assert!(near(w10, 8 << 20), "{w10}");
    }

    #[test]
    fn the_window_is_capped() {
        let mut w = WindowSizer::new();
        assert_eq!(run(&mut w, 10e9, 100 * MS, 20), MAX_WINDOW);
    }

    #[test]
    fn an_idle_connection_shrinks_by_half_per_period_to_the_floor() {
        let mut w = WindowSizer::new();
        run(&mut w, 100.0 * 1048576.0, 50 * MS, 8);
        let big = w.window();
        // (the counter read 0: a reset counts as nothing received since the last sample)
        let t = Duration::from_secs(100);
        assert_eq!(w.sample(t, 0, None), Some(big / 2));
        assert_eq!(w.sample(t + PERIOD, 0, None), Some(big / 4));
        for k in 3..20 {
            w.sample(t + PERIOD * k, 0, None);
        }
        assert_eq!(w.window(), MIN_WINDOW);
    }

    #[test]
    fn queueing_delay_does_not_grow_the_window() {
        // The round trip grows with the queue, the minimum does not: a window limited by a
        // slow link stays near four real bandwidth-delay products.
        let mut w = WindowSizer::new();
        let mut now = Duration::ZERO;
        let mut received = 0;
        w.sample(now, received, Some(20 * MS));
        for _ in 0..50 {
            now += PERIOD;
            received += 8 * 1024 * 1024 / 5; // 8 MiB/s
            w.sample(now, received, Some(400 * MS));
        }
        // 4 × 8 MiB/s × 20 ms = 671 088 bytes.
        let w = w.window();
        assert!(near(w, 671_088), "{w}");
    }

    #[test]
    fn odd_samples_change_nothing() {
        let mut w = WindowSizer::new();
        w.sample(Duration::from_secs(1), 1000, Some(MS));
        // time going backwards, or no time passed: ignored
        assert_eq!(w.sample(Duration::ZERO, 5000, Some(MS)), None);
        assert_eq!(w.sample(Duration::ZERO, 9000, Some(MS)), None);
        // a counter going backwards (a new connection) counts as nothing received
        assert_eq!(w.sample(Duration::from_secs(2), 10, Some(MS)), None);
        assert_eq!(w.window(), MIN_WINDOW);
    }

    #[test]
    fn no_round_trip_yet_keeps_the_window() {
        let mut w = WindowSizer::new();
        w.sample(Duration::ZERO, 0, None);
        assert_eq!(w.sample(PERIOD, 100 << 20, None), None);
    }
}
