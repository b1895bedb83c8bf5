//! A moving estimate of a transfer rate, sans-IO: bytes in, bytes per second out.

use std::time::{Duration, Instant};

/// Bytes per second, from samples of at least 100 ms.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    bytes_per_second: f64,
    window_start: Instant,
    window_bytes: u64,
}

impl Rate {
    pub fn new(now: Instant) -> Rate {
        Rate {
            bytes_per_second: 0.0,
            window_start: now,
            window_bytes: 0,
        }
    }

    pub fn add(&mut self, now: Instant, bytes: u64) {
        self.window_bytes += bytes;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Duration::from_millis(100) {
            let sample = self.window_bytes as f64 / elapsed.as_secs_f64();
            // Rise fast, fall slowly: a quiet moment should not starve the pipeline.
            self.bytes_per_second = if sample > self.bytes_per_second {
                sample
            } else {
                0.7 * self.bytes_per_second + 0.3 * sample
            };
            self.window_start = now;
            self.window_bytes = 0;
        }
    }

    /// The estimate as of `now`: a rate that has not been fed for a while decays,
    /// so a peer that stopped sending does not keep its old figure forever.
    pub fn at(&self, now: Instant) -> f64 {
        let idle = now.saturating_duration_since(self.window_start).as_secs_f64();
        if idle <= 1.0 {
            return self
                .bytes_per_second
                .max(self.window_bytes as f64 / idle.max(0.1));
        }
        // Average over the idle window, which the next add() would sample anyway.
        let pending = self.window_bytes as f64 / idle;
        (self.bytes_per_second / idle).max(pending)
    }

    pub fn bytes_per_second(&self) -> f64 {
        self.bytes_per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_fast_falls_slowly_and_decays_when_idle() {
        let t0 = Instant::now();
        let mut r = Rate::new(t0);
        r.add(t0 + Duration::from_millis(100), 100_000);
        assert!((r.bytes_per_second() - 1_000_000.0).abs() < 1.0);
        r.add(t0 + Duration::from_millis(200), 0);
        assert!(r.bytes_per_second() > 600_000.0);
        assert!(r.at(t0 + Duration::from_secs(10)) < 100_000.0);
    }
}
