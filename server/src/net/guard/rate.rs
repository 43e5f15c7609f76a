//! Token buckets: `rate` tokens a second, at most `burst` saved up. Each chat connection has
//! one for its messages (a refusal is an `error` `rate_limited` with the wait) and one for all
//! its frames, pings included (a flood closes the connection, 4003).

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        TokenBucket { rate: rate.max(0.001), burst: burst.max(1.0), tokens: burst.max(1.0), last: Instant::now() }
    }

    /// Takes a token, or says how long until one is there.
    pub(crate) fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_burst_passes_then_the_rate_refills() {
        let mut bucket = TokenBucket::new(10.0, 5.0);
        for _ in 0..5 {
            assert!(bucket.take().is_ok());
        }
        let wait = bucket.take().unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(bucket.take().is_ok());
        assert!(bucket.take().is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..5 {
            assert!(bucket.take().is_ok(), "refills up to the burst only");
        }
        assert!(bucket.take().is_err());
    }
}
