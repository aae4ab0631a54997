//! Time budgets. A webhook's caller is on the line: Twilio gives up on a webhook after 15 s
//! (and plays its own error), and Lambda stops every HTTP function at 10 s (template.yaml).
//! So each request gets one deadline that all its waits on others share — Twilio's REST API
//! with its retries, the platform's callbacks — and a hard limit after which it answers
//! anyway. DynamoDB and Secrets Manager are bounded per request by the SDK's own timeouts
//! (`app::sdk_timeouts`).

use std::time::Duration;

use tokio::time::Instant;

/// A webhook answers by then whatever happens: under Lambda's 10 s and Twilio's 15 s, with
/// 3 s to spare for a cold start, API Gateway and a busy host.
pub const WEBHOOK_ANSWER: Duration = Duration::from_secs(7);
/// All of a webhook's Twilio REST attempts end by then, which leaves 2 s before
/// `WEBHOOK_ANSWER` to record what happened and answer with TwiML of our own.
pub const WEBHOOK_REST: Duration = Duration::from_secs(5);
/// A caller is waiting: one retry at most, and only when there is time for it.
pub const WEBHOOK_ATTEMPTS: u32 = 2;

/// The `/v1` API: nobody is on the phone, but Lambda still stops at 10 s; the last second
/// is left to answer.
pub const API_ANSWER: Duration = Duration::from_secs(9);
/// The API's REST attempts end by then, leaving 2 s for the writes that follow them.
pub const API_REST: Duration = Duration::from_secs(7);
pub const API_ATTEMPTS: u32 = 3;

/// The sweep is bounded by its own Lambda timeout (300 s), so per attempt only.
pub const BACKGROUND_ATTEMPTS: u32 = 3;

/// One REST attempt at most: a healthy Twilio answers in well under a second.
pub const REST_ATTEMPT: Duration = Duration::from_secs(5);
/// No attempt starts with less time than this left: it could hardly get an answer, and a
/// request cut off mid-way may still have been carried out by Twilio.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(500);
/// The wait before retry n is this, doubled n times: 300 ms, 600 ms.
const BACKOFF_BASE: Duration = Duration::from_millis(150);

/// The platform's intercept and out-of-session callbacks (also cut to the time left): a slow
/// platform must not silence its users.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(3);

// The budgets fit Twilio's 15 s and Lambda's 10 s, checked when building.
const LAMBDA_TIMEOUT_MS: u128 = 10_000;
const _: () = assert!(WEBHOOK_REST.as_millis() + 2_000 <= WEBHOOK_ANSWER.as_millis());
const _: () = assert!(WEBHOOK_ANSWER.as_millis() + 1_000 < LAMBDA_TIMEOUT_MS);
const _: () = assert!(API_REST.as_millis() < API_ANSWER.as_millis());
const _: () = assert!(API_ANSWER.as_millis() < LAMBDA_TIMEOUT_MS);
const _: () = assert!(CALLBACK_TIMEOUT.as_millis() < WEBHOOK_REST.as_millis());
const _: () = assert!(API_ATTEMPTS > WEBHOOK_ATTEMPTS);

/// How long one request may still wait on others, and how often it may try Twilio.
/// `Copy`: every clone shares the same instant, not a fresh allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    deadline: Option<Instant>,
    attempts: u32,
}

/// One REST attempt: wait `backoff`, then try for at most `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub backoff: Duration,
    pub timeout: Duration,
}

impl Budget {
    /// For a webhook starting now.
    pub fn webhook() -> Self {
        Self::until(Instant::now() + WEBHOOK_REST, WEBHOOK_ATTEMPTS)
    }

    /// For an API request starting now.
    pub fn api() -> Self {
        Self::until(Instant::now() + API_REST, API_ATTEMPTS)
    }

    /// No caller waiting (the sweep): each attempt is bounded, not the whole.
    pub fn background() -> Self {
        Self {
            deadline: None,
            attempts: BACKGROUND_ATTEMPTS,
        }
    }

    pub fn until(deadline: Instant, attempts: u32) -> Self {
        Self {
            deadline: Some(deadline),
            attempts,
        }
    }

    /// Time left before the deadline; `None` when there is none.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// `timeout`, cut to the time left (zero once it is spent).
    pub fn cap(&self, timeout: Duration) -> Duration {
        self.remaining().map_or(timeout, |left| left.min(timeout))
    }

    /// How to make REST attempt `n` (0 is the first) now; `None`: make no more.
    pub fn attempt(&self, n: u32) -> Option<Attempt> {
        plan(n, self.attempts, self.remaining())
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::background()
    }
}

/// Attempt `n` of at most `attempts`, with `left` before the deadline (`None`: no deadline).
/// Each attempt gets `REST_ATTEMPT` or what is left after its backoff, whichever is less, and
/// none is made (nor its backoff slept) unless `MIN_ATTEMPT` would remain for it.
pub fn plan(n: u32, attempts: u32, left: Option<Duration>) -> Option<Attempt> {
    if n >= attempts {
        return None;
    }
    let backoff = if n == 0 {
        Duration::ZERO
    } else {
        BACKOFF_BASE * 2u32.pow(n.min(8))
    };
    let timeout = match left {
        None => REST_ATTEMPT,
        Some(left) => {
            let after_backoff = left.checked_sub(backoff)?;
            if after_backoff < MIN_ATTEMPT {
                return None;
            }
            after_backoff.min(REST_ATTEMPT)
        }
    };
    Some(Attempt { backoff, timeout })
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Every attempt a budget allows when each one fails at once.
    fn attempts(attempts: u32, left: Duration) -> Vec<Attempt> {
        let mut left = left;
        let mut out = Vec::new();
        for n in 0.. {
            let Some(a) = plan(n, attempts, Some(left)) else {
                break;
            };
            left -= a.backoff;
            out.push(a);
        }
        out
    }

    #[test]
    fn with_time_to_spare_every_attempt_gets_the_full_timeout() {
        let full = |backoff| Attempt {
            backoff,
            timeout: REST_ATTEMPT,
        };
        assert_eq!(
            attempts(3, Duration::from_secs(60)),
            vec![full(ms(0)), full(ms(300)), full(ms(600))]
        );
        assert_eq!(plan(0, 3, None), Some(full(ms(0))));
        assert_eq!(plan(2, 3, None), Some(full(ms(600))));
        assert_eq!(
            plan(3, 3, None),
            None,
            "never more than the attempts allowed"
        );
    }

    #[test]
    fn each_attempt_is_cut_to_the_time_left_after_its_backoff() {
        assert_eq!(
            plan(0, 2, Some(ms(3_000))),
            Some(Attempt {
                backoff: ms(0),
                timeout: ms(3_000)
            })
        );
        assert_eq!(
            plan(1, 2, Some(ms(2_000))),
            Some(Attempt {
                backoff: ms(300),
                timeout: ms(1_700)
            })
        );
    }

    #[test]
    fn no_attempt_or_backoff_without_time_for_an_answer() {
        assert_eq!(plan(0, 2, Some(ms(499))), None);
        assert_eq!(plan(0, 2, Some(Duration::ZERO)), None);
        assert_eq!(
            plan(1, 2, Some(ms(799))),
            None,
            "300 ms of backoff would leave 499 ms: no sleep, no retry"
        );
        assert_eq!(plan(1, 2, Some(ms(200))), None, "less than the backoff");
    }

    #[test]
    fn a_webhook_tries_twice_at_most_and_never_past_its_deadline() {
        // A webhook that starts with its whole REST budget and meets instant failures.
        let made = attempts(WEBHOOK_ATTEMPTS, WEBHOOK_REST);
        assert_eq!(made.len(), 2);
        assert_eq!(made[0].timeout, REST_ATTEMPT.min(WEBHOOK_REST));
        // A first attempt that timed out leaves nothing for a second.
        assert_eq!(
            plan(1, WEBHOOK_ATTEMPTS, WEBHOOK_REST.checked_sub(REST_ATTEMPT)),
            None
        );
        // Worst case: every attempt runs to its timeout after its backoff.
        let mut left = WEBHOOK_REST;
        let mut spent = Duration::ZERO;
        for n in 0.. {
            let Some(a) = plan(n, WEBHOOK_ATTEMPTS, Some(left)) else {
                break;
            };
            spent += a.backoff + a.timeout;
            left = left.saturating_sub(a.backoff + a.timeout);
        }
        assert!(spent <= WEBHOOK_REST, "{spent:?}");
    }

    #[test]
    fn a_spent_budget_caps_everything_to_zero() {
        let spent = Budget::until(Instant::now(), WEBHOOK_ATTEMPTS);
        assert_eq!(spent.remaining(), Some(Duration::ZERO));
        assert_eq!(spent.cap(CALLBACK_TIMEOUT), Duration::ZERO);
        assert_eq!(spent.attempt(0), None);

        let fresh = Budget::webhook();
        assert!(fresh.remaining().unwrap() <= WEBHOOK_REST);
        assert!(fresh.cap(CALLBACK_TIMEOUT) == CALLBACK_TIMEOUT);
        assert_eq!(fresh.attempt(0).map(|a| a.backoff), Some(Duration::ZERO));
        assert_eq!(fresh.attempt(WEBHOOK_ATTEMPTS), None);

        let background = Budget::background();
        assert_eq!(background.remaining(), None);
        assert_eq!(background.cap(CALLBACK_TIMEOUT), CALLBACK_TIMEOUT);
        assert_eq!(background.attempt(2).map(|a| a.timeout), Some(REST_ATTEMPT));
    }
}
