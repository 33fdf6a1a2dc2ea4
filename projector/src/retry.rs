//! One retry schedule for every retry loop of the projector: exponential
//! backoff with full jitter, capped, with a bound on attempts.
//!
//! The loops differ in what they retry (a transaction cancelled by a
//! concurrent writer, keys `BatchGetItem` left unprocessed, feed entries SQS
//! refused) but not in how they wait. Full jitter (a delay drawn uniformly
//! below the ceiling) spreads writers that collided, so they do not collide
//! again in step; the cap bounds one wait and the attempt limit the whole
//! loop, so a batch fails (and Lambda retries it) instead of outliving its
//! timeout.
//!
//! A loop holds an [`Attempts`] and asks it, after each failed attempt, for
//! the wait before the next one; it keeps its own state, so no closure has to
//! borrow it across an `await`.

use std::time::Duration;

/// How a loop retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Ceiling of the wait before the first retry; it doubles with each retry.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
    /// Attempts in all, the first one included (so `1` never retries).
    pub max_attempts: u32,
}

impl Policy {
    /// A policy (a `const fn`, so loops keep theirs in a `const`).
    pub const fn new(base: Duration, cap: Duration, max_attempts: u32) -> Self {
        Policy {
            base,
            cap,
            max_attempts,
        }
    }

    /// The ceiling of the wait before retry `retry` (1 for the first retry):
    /// `base * 2^(retry - 1)`, at most `cap`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        // Past 2^31 the cap has long been reached; the shift must not overflow.
        let factor = 1u32 << retry.saturating_sub(1).min(31);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Full jitter: the wait before retry `retry` for a uniform draw
    /// `fraction` in `[0, 1)`, so uniform in `[0, ceiling(retry))`. A fraction
    /// out of range is clamped (and NaN counts as 0), so the wait never
    /// exceeds the ceiling whatever the source.
    pub fn delay(&self, retry: u32, fraction: f64) -> Duration {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let ceiling = self.ceiling(retry);
        // Through `try_`: a ceiling near `Duration::MAX` does not survive the
        // float round trip; `min`: the round trip must not add a nanosecond.
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * fraction).map_or(ceiling, |d| d.min(ceiling))
    }

    /// The attempts of one run of a loop, the first one under way, with
    /// jitter drawn from the thread's random generator.
    pub fn start(&self) -> Attempts {
        Attempts {
            policy: *self,
            made: 1,
            jitter: uniform,
        }
    }
}

/// A uniform draw in `[0, 1)`. The generator is not held: the futures that
/// wait stay `Send`.
fn uniform() -> f64 {
    rand::random::<f64>()
}

/// The attempts of one run of a loop: how many were made, and the wait
/// before the next.
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: Policy,
    made: u32,
    jitter: fn() -> f64,
}

impl Attempts {
    /// Draw jitter from `jitter` instead (a fixed fraction makes the schedule
    /// deterministic, for tests).
    pub fn with_jitter(mut self, jitter: fn() -> f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Attempts made so far, the one under way included.
    pub fn made(&self) -> u32 {
        self.made
    }

    /// After a failed attempt: the wait before the next one (which is then
    /// counted as made), or `None` when every attempt is used.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.made >= self.policy.max_attempts {
            return None;
        }
        let delay = self.policy.delay(self.made, (self.jitter)());
        self.made += 1;
        Some(delay)
    }

    /// After a failed attempt: wait before the next one and return `true`,
    /// or return `false` at once when every attempt is used (the caller
    /// gives up).
    pub async fn pause(&mut self) -> bool {
        match self.next_delay() {
            Some(delay) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy::new(Duration::from_millis(10), Duration::from_millis(500), 9);

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let ms: Vec<u128> = (1..=8).map(|r| P.ceiling(r).as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 500, 500]);
        assert_eq!(P.ceiling(0), P.base, "retry 0 is read as the first");
        assert_eq!(P.ceiling(u32::MAX), P.cap, "no overflow far out");
        let huge = Policy::new(Duration::MAX, Duration::from_secs(1), 3);
        assert_eq!(
            huge.ceiling(5),
            Duration::from_secs(1),
            "a saturated ceiling is still capped"
        );
        let unbounded = Policy::new(Duration::MAX, Duration::MAX, 3);
        // No panic at the top of the range.
        assert!(unbounded.delay(3, 1.0) > Duration::ZERO);
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling() {
        for retry in 1..=12 {
            let ceiling = P.ceiling(retry);
            assert_eq!(P.delay(retry, 0.0), Duration::ZERO);
            for f in [
                0.0,
                0.25,
                0.5,
                0.999_999,
                1.0,
                -1.0,
                2.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ] {
                let d = P.delay(retry, f);
                assert!(d <= ceiling, "retry {retry}, fraction {f}: {d:?} > {ceiling:?}");
            }
            let half = P.delay(retry, 0.5);
            assert!(half.abs_diff(ceiling / 2) <= Duration::from_micros(1), "{half:?}");
        }
    }

    #[test]
    fn random_draws_stay_within_the_ceiling() {
        let mut a = Policy::new(Duration::from_millis(1), Duration::from_millis(8), 1000).start();
        for retry in 1..1000 {
            let d = a.next_delay().unwrap();
            assert!(d <= Duration::from_millis(8), "retry {retry}: {d:?}");
        }
    }

    #[test]
    fn attempts_stop_at_the_limit_on_a_fixed_schedule() {
        let policy = Policy::new(Duration::from_millis(100), Duration::from_secs(1), 4);
        let mut a = policy.start().with_jitter(|| 0.5);
        assert_eq!(a.made(), 1);
        let mut delays = Vec::new();
        while let Some(d) = a.next_delay() {
            delays.push(d);
        }
        assert_eq!(
            delays,
            [policy.delay(1, 0.5), policy.delay(2, 0.5), policy.delay(3, 0.5)],
            "three retries after the first attempt, each half its ceiling"
        );
        assert_eq!(a.made(), 4);
        assert_eq!(a.next_delay(), None, "and no more");
        let mut once = Policy::new(Duration::from_millis(1), Duration::from_millis(1), 1).start();
        assert_eq!(once.next_delay(), None, "one attempt never retries");
    }

    #[tokio::test]
    async fn pause_waits_then_gives_up() {
        let mut a = Policy::new(Duration::from_millis(1), Duration::from_millis(2), 3)
            .start()
            .with_jitter(|| 0.0);
        assert!(a.pause().await && a.pause().await);
        assert!(!a.pause().await);
        assert_eq!(a.made(), 3);
    }
}
