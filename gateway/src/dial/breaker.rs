//! Per-destination circuit breakers: after `threshold` consecutive connectivity failures the
//! circuit opens and dials fail fast for `cooldown`; then one probe is let through (half-open) —
//! success closes it, failure opens it again. Only connectivity failures count: a denied or
//! unauthenticated dial says nothing about the path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Dial, Dialed, Target};
use crate::Error;

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub threshold: u32,
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { threshold: 5, cooldown: Duration::from_secs(30) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, failures: u32 },
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker<D> {
    inner: D,
    config: BreakerConfig,
    states: Mutex<HashMap<String, State>>,
}

impl<D> Breaker<D> {
    pub fn new(inner: D, config: BreakerConfig) -> Self {
        Breaker { inner, config, states: Mutex::new(HashMap::new()) }
    }

    /// Whether a dial may go ahead; moves an expired open circuit to half-open (one probe).
    fn admit(&self, key: &str) -> Result<(), Error> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states.entry(key.to_owned()).or_insert(State::Closed { failures: 0 });
        match *state {
            State::Open { until, failures } if Instant::now() < until => Err(Error::CircuitOpen {
                destination: key.to_owned(),
                failures,
                retry_in: until - Instant::now(),
            }),
            State::Open { .. } => {
                *state = State::HalfOpen;
                Ok(())
            }
            State::HalfOpen => Err(Error::CircuitOpen {
                destination: key.to_owned(),
                failures: self.config.threshold,
                retry_in: Duration::ZERO,
            }),
            State::Closed { .. } => Ok(()),
        }
    }

    fn record(&self, key: &str, result: &Result<Dialed, Error>) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states.entry(key.to_owned()).or_insert(State::Closed { failures: 0 });
        match result {
            Ok(_) => *state = State::Closed { failures: 0 },
            Err(e) if e.retryable() => {
                let failures = match *state {
                    State::Closed { failures } => failures + 1,
                    State::HalfOpen | State::Open { .. } => self.config.threshold,
                };
                *state = if failures >= self.config.threshold {
                    tracing::warn!(destination = key, failures, "Circuit opened.");
                    State::Open { until: Instant::now() + self.config.cooldown, failures }
                } else {
                    State::Closed { failures }
                };
            }
            Err(_) => {
                if *state == State::HalfOpen {
                    *state = State::Closed { failures: 0 };
                }
            }
        }
    }
}

impl<D: Dial> Dial for Breaker<D> {
    async fn dial(&self, target: &Target) -> Result<Dialed, Error> {
        let key = target.label();
        self.admit(&key)?;
        let result = self.inner.dial(target).await;
        self.record(&key, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dial::TcpDialer;

    #[tokio::test]
    async fn opens_after_consecutive_failures_and_probes_after_cooldown() {
        // Nothing listens on this port: every dial is refused (a connectivity failure).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let tcp = TcpDialer::new("127.0.0.1".parse().unwrap(), Duration::from_secs(1));
        let breaker = Breaker::new(tcp, BreakerConfig { threshold: 3, cooldown: Duration::from_millis(200) });
        let target = Target::parse("127.0.0.1", port).unwrap();
        for _ in 0..3 {
            assert!(matches!(breaker.dial(&target).await, Err(Error::Refused { .. })));
        }
        assert!(
            matches!(breaker.dial(&target).await, Err(Error::CircuitOpen { .. })),
            "fails fast while open"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        assert!(breaker.dial(&target).await.is_ok(), "the half-open probe goes through and closes it");
        drop(listener);
    }
}
