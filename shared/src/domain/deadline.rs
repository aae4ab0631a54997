//! A live call's effective deadline: the earlier of its time limit (cut to the session's
//! `date_expiry`) and the moment its running cost would pass the session's `max_cost`.
//!
//! Every place that sets a live call's deadline asks `effective_deadline`, and the warning,
//! the end and any timer are computed from the stored deadline, so the cost cap needs no
//! rule of its own in the sweep.
//!
//! The running cost is the live call's legs only (not the session's earlier calls), each at
//! its own per-minute rate plus, for a call through the room, the conference fee, billed per
//! started minute as `pricing::room_leg_cost` bills it afterwards.

use crate::domain::ports::{Ctx, StoreError};
use crate::model::{CallMode, Session};
use crate::pricing::{Direction, Rates, Yen};

/// The call ends this long before the minute that would pass `max_cost` starts: ending a
/// call takes a Twilio request or two, and a leg that outlives its minute by one second is
/// billed the whole next minute ("per started minute", see README "What a call costs").
pub const END_MARGIN_SECONDS: i64 = 2;

/// How far ahead the cost cap is looked for: Twilio's own four-hour limit on a call.
const HORIZON_SECONDS: i64 = crate::domain::sessions::MAX_CALL_SECONDS as i64;

/// One leg of the live call as the bill sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BilledLeg {
    /// When its billing starts. A leg's creation is used for it: at or before its answer,
    /// so its minutes are counted no later than Twilio counts them, never fewer.
    pub billed_from: i64,
    /// Its rate, the conference fee included when it goes through the room.
    pub per_minute: Yen,
}

/// Started minutes of a leg billed from `from`, if the call ended at `t`.
fn minutes(from: i64, t: i64) -> u64 {
    crate::pricing::billed_minutes((t - from).max(0) as u64)
}

/// What the legs cost if the call ended at `t`.
pub fn running_cost(legs: &[BilledLeg], t: i64) -> Yen {
    legs.iter()
        .map(|l| Yen::from_milli(l.per_minute.milli() * minutes(l.billed_from, t)))
        .sum()
}

/// The latest instant, at or after `now`, at which the call may end with its legs costing at
/// most `max_cost`: `END_MARGIN_SECONDS` before the start of the first billed minute that
/// would pass it. `now` when the minutes already begun pass it; `None` when the cap is not
/// reached within four hours.
pub fn cost_deadline(legs: &[BilledLeg], max_cost: Yen, now: i64) -> Option<i64> {
    let mut cost = running_cost(legs, now);
    if cost > max_cost {
        return Some(now);
    }
    // Each leg's next minute starts just after `billed_from + 60 k`: the first such instant
    // at or after now (at exactly that instant the leg has k minutes, a second later k + 1).
    let mut next: Vec<i64> = legs
        .iter()
        .map(|l| {
            let since = (now - l.billed_from).max(0);
            l.billed_from + (since as u64).div_ceil(60) as i64 * 60
        })
        .collect();
    loop {
        let boundary = *next.iter().min()?;
        if boundary > now + HORIZON_SECONDS {
            return None;
        }
        for (leg, at) in legs.iter().zip(next.iter_mut()) {
            if *at == boundary {
                cost = cost + leg.per_minute;
                *at += 60;
            }
        }
        if cost > max_cost {
            return Some((boundary - END_MARGIN_SECONDS).max(now));
        }
    }
}

/// The deadline of a call whose clock starts at `now` with `limit` seconds: the earliest of
/// `now + limit`, the session's `date_expiry` and the cost cap's deadline.
pub fn effective_deadline(
    now: i64,
    limit: u64,
    date_expiry: Option<i64>,
    cost_deadline: Option<i64>,
) -> i64 {
    [Some(now + limit as i64), date_expiry, cost_deadline]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + limit as i64)
}

/// The live call's legs as billed: every leg of the session not yet ended, at its rate, and
/// with the conference fee when the live call runs through the room. A participant with no
/// live leg yet (a bridge's second party, dialled as the clock starts) is counted as an
/// outbound leg to them from `now`, so the cap holds for the legs still to come.
pub fn billed_legs(
    session: &Session,
    legs: &[crate::model::Interaction],
    rates: &Rates,
    now: i64,
) -> Vec<BilledLeg> {
    let in_room = session
        .live_call
        .as_ref()
        .is_some_and(|l| l.mode == CallMode::Conference);
    let fee = if in_room { rates.conference } else { Yen::ZERO };
    let live: Vec<_> = legs
        .iter()
        .filter(|l| l.session_sid == session.sid && !l.status.is_final())
        .collect();
    // Whose phone a leg is: the caller of an inbound leg, the callee of an outbound one.
    let party = |l: &crate::model::Interaction| match l.direction {
        Direction::Inbound => l.from_participant_sid.clone(),
        Direction::Outbound => l.to_participant_sid.clone(),
    };
    let to_come = session
        .participants
        .iter()
        .filter(|p| {
            !live
                .iter()
                .any(|l| party(l).as_deref() == Some(p.sid.as_str()))
        })
        .map(|p| BilledLeg {
            billed_from: now,
            per_minute: rates.per_minute(Direction::Outbound, p.identifier.class()) + fee,
        });
    live.iter()
        .map(|l| BilledLeg {
            billed_from: l.date_created,
            per_minute: rates.per_minute(l.direction, l.callee_class) + fee,
        })
        .chain(to_come)
        .collect()
}

/// The cost cap's deadline for the session's live call at `now`, from its live legs; `None`
/// when the session has no `max_cost` (no read is made then).
pub async fn cost_deadline_of(
    ctx: Ctx<'_>,
    session: &Session,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let Some(max_cost) = session.max_cost() else {
        return Ok(None);
    };
    let legs = ctx.store.list_interactions(&session.sid).await?;
    let legs = billed_legs(session, &legs, &ctx.settings.rates, now);
    Ok(cost_deadline(&legs, max_cost, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn yen(s: &str) -> Yen {
        Yen::parse(s).unwrap()
    }

    fn leg(from: i64, rate: &str) -> BilledLeg {
        BilledLeg {
            billed_from: from,
            per_minute: yen(rate),
        }
    }

    #[test]
    fn rates_and_max_cost_give_the_deadline() {
        let m = END_MARGIN_SECONDS;
        // (legs, max_cost, expected deadline)
        let table: Vec<(Vec<BilledLeg>, &str, Option<i64>)> = vec![
            // Conference V-call to two mobiles, both legs from now: 33 yen a minute.
            // 100 yen buys 3 minutes (99); the 4th starts at now + 180.
            (
                vec![leg(NOW, "16.5"), leg(NOW, "16.5")],
                "100",
                Some(NOW + 180 - m),
            ),
            // Exactly 99 yen still buys 3 minutes.
            (
                vec![leg(NOW, "16.5"), leg(NOW, "16.5")],
                "99",
                Some(NOW + 180 - m),
            ),
            // 98.999 buys 2.
            (
                vec![leg(NOW, "16.5"), leg(NOW, "16.5")],
                "98.999",
                Some(NOW + 120 - m),
            ),
            // A timed masked call: the caller's inbound leg (1 + 0.3) began 10 s before the
            // other's mobile leg (16.2 + 0.3). At now: 1.3 (inbound's first minute).
            // Minutes start at NOW-10+60k for the inbound leg, NOW+60k for the mobile one:
            // NOW: +16.5 → 17.8; NOW+50: +1.3 → 19.1; NOW+60: +16.5 → 35.6; NOW+110: 36.9;
            // NOW+120: 53.4. A cap of 36 ends the call before NOW+110.
            (
                vec![leg(NOW - 10, "1.3"), leg(NOW, "16.5")],
                "36",
                Some(NOW + 110 - m),
            ),
            (
                vec![leg(NOW - 10, "1.3"), leg(NOW, "16.5")],
                "53",
                Some(NOW + 120 - m),
            ),
            // A bridge to a landline (no conference fee): 1 + 5.4 a minute; 64 yen → 10 min.
            (
                vec![leg(NOW, "1"), leg(NOW, "5.4")],
                "64",
                Some(NOW + 600 - m),
            ),
            // The minutes already begun pass the cap: end now.
            (vec![leg(NOW - 70, "16.5")], "20", Some(NOW)),
            // A first minute that alone passes the cap: end now (not before it).
            (vec![leg(NOW, "16.5")], "10", Some(NOW)),
            // Beyond four hours at these rates: no cost deadline.
            (vec![leg(NOW, "1")], "100000", None),
            // Free legs never reach a cap.
            (vec![leg(NOW, "0")], "1", None),
            (vec![], "1", None),
        ];
        for (legs, max, expected) in table {
            assert_eq!(
                cost_deadline(&legs, yen(max), NOW),
                expected,
                "{legs:?} with max_cost {max}"
            );
            // Ending at the deadline costs at most max_cost.
            if let Some(d) = expected
                && d > NOW
            {
                assert!(running_cost(&legs, d) <= yen(max), "{legs:?} at {d}");
            }
        }
    }

    #[test]
    fn ending_at_the_cost_deadline_never_passes_max_cost() {
        // Every cap from 1 to 200 yen, legs offset by 0 to 59 s: the cost at the deadline is
        // within the cap, and one minute later it would not be.
        for offset in 0..60 {
            let legs = [leg(NOW - offset, "1.3"), leg(NOW, "16.5")];
            for max in 18..200 {
                let max = Yen::from_milli(max * 1_000);
                let d = cost_deadline(&legs, max, NOW).unwrap();
                assert!(running_cost(&legs, d) <= max, "offset {offset}, max {max}");
                assert!(
                    running_cost(&legs, d + END_MARGIN_SECONDS + 1) > max,
                    "offset {offset}, max {max}: the deadline is not needlessly early"
                );
            }
        }
    }

    #[test]
    fn the_effective_deadline_is_the_earliest_bound() {
        assert_eq!(effective_deadline(NOW, 600, None, None), NOW + 600);
        assert_eq!(
            effective_deadline(NOW, 600, Some(NOW + 300), None),
            NOW + 300
        );
        assert_eq!(
            effective_deadline(NOW, 600, Some(NOW + 300), Some(NOW + 178)),
            NOW + 178
        );
        assert_eq!(
            effective_deadline(NOW, 600, None, Some(NOW + 900)),
            NOW + 600
        );
    }
}
