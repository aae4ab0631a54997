//! What one call leg costs, in yen.
//!
//! Twilio bills voice per started minute at a per-minute rate that depends on the direction
//! and, for outbound legs, on the kind of number called. Rates are configuration; the
//! defaults are Twilio Japan's published prices.

use std::fmt;
use std::iter::Sum;
use std::ops::Add;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::phone::NumberClass;

/// Decimal places a yen amount may have; amounts are stored in thousandths.
const DECIMALS: usize = 3;
const MILLI_PER_YEN: u64 = 1_000;

/// An amount of yen kept in thousandths, so 5.4 JPY/min times 2 minutes is exactly 10.8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Yen {
    milli: u64,
}

impl Yen {
    pub const ZERO: Yen = Yen { milli: 0 };

    pub const fn from_milli(milli: u64) -> Yen {
        Yen { milli }
    }

    pub const fn milli(&self) -> u64 {
        self.milli
    }

    /// Parses a non-negative decimal with at most 3 decimal places: "5.4", "16.2", "1",
    /// "0.125". Surrounding whitespace is ignored (env values often carry a newline).
    pub fn parse(s: &str) -> Result<Yen, RateError> {
        parse_milli(s.trim())
            .map(Yen::from_milli)
            .map_err(|problem| RateError::Amount {
                value: s.to_owned(),
                problem,
            })
    }

    /// Rate × minutes. Saturates rather than wrapping: an absurd total must not become small.
    fn times(self, n: u64) -> Yen {
        Yen::from_milli(self.milli.saturating_mul(n))
    }
}

/// Digits, optionally '.' and 1 to 3 digits; no sign, exponent or grouping.
fn parse_milli(s: &str) -> Result<u64, AmountProblem> {
    if s.is_empty() {
        return Err(AmountProblem::Empty);
    }
    if s.starts_with('-') {
        return Err(AmountProblem::Negative);
    }
    let (whole, fraction) = match s.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (s, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !fraction.is_none_or(all_digits) {
        return Err(AmountProblem::NotANumber);
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > DECIMALS {
        return Err(AmountProblem::TooManyDecimals);
    }
    // Right-pad the fraction to thousandths: "4" → 400, "125" → 125.
    let fraction_milli = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(DECIMALS)
        .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
    whole
        .bytes()
        .try_fold(0u64, |acc, b| {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .and_then(|yen| yen.checked_mul(MILLI_PER_YEN))
        .and_then(|milli| milli.checked_add(fraction_milli))
        .ok_or(AmountProblem::TooLarge)
}

impl FromStr for Yen {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Yen::parse(s)
    }
}

impl fmt::Display for Yen {
    /// "10.8", "16", "0.125": no trailing zeros, no trailing point.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.milli / MILLI_PER_YEN;
        let fraction = self.milli % MILLI_PER_YEN;
        let text = if fraction == 0 {
            whole.to_string()
        } else {
            let digits = format!("{fraction:03}");
            format!("{whole}.{}", digits.trim_end_matches('0'))
        };
        f.pad(&text)
    }
}

impl Serialize for Yen {
    /// A JSON number: 32.4, or 16 for whole yen. Via f64, which is exact to the thousandth
    /// below 2^53 milli-yen (about 9 trillion yen), far beyond any call cost.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.milli.is_multiple_of(MILLI_PER_YEN) {
            serializer.serialize_u64(self.milli / MILLI_PER_YEN)
        } else {
            // Both operands are exact and division is correctly rounded, so this is the f64
            // nearest the decimal value and prints as its shortest form (10800 → 10.8).
            serializer.serialize_f64(self.milli as f64 / MILLI_PER_YEN as f64)
        }
    }
}

impl<'de> Deserialize<'de> for Yen {
    /// From a JSON number (32.4, 16) or a string ("32.4"), under the same rules as `parse`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct YenVisitor;

        impl Visitor<'_> for YenVisitor {
            type Value = Yen;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative yen amount with at most 3 decimals, e.g. 5.4")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Yen, E> {
                v.checked_mul(MILLI_PER_YEN)
                    .map(Yen::from_milli)
                    .ok_or_else(|| E::custom(RateError::amount(v, AmountProblem::TooLarge)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Yen, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(RateError::amount(v, AmountProblem::Negative))),
                }
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Yen, E> {
                // f64's Display is the shortest decimal that round-trips and never uses an
                // exponent, so 32.4 reads back as "32.4" and is parsed exactly, not rounded.
                Yen::parse(&v.to_string()).map_err(E::custom)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Yen, E> {
                Yen::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(YenVisitor)
    }
}

impl Add for Yen {
    type Output = Yen;

    /// Saturating: a total can't wrap around to a small number.
    fn add(self, rhs: Yen) -> Yen {
        Yen::from_milli(self.milli.saturating_add(rhs.milli))
    }
}

impl Sum for Yen {
    fn sum<I: Iterator<Item = Yen>>(iter: I) -> Yen {
        iter.fold(Yen::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Yen> for Yen {
    fn sum<I: Iterator<Item = &'a Yen>>(iter: I) -> Yen {
        iter.copied().sum()
    }
}

/// Which way a call leg goes, from Twilio's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Per-minute rates. The optional Japanese ones fall back to `outbound_landline` when unset;
/// an unset `outbound_foreign` means foreign numbers are refused as participants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    pub inbound: Yen,
    pub outbound_mobile: Yen,
    pub outbound_landline: Yen,
    pub outbound_ip: Option<Yen>,
    pub outbound_toll_free: Option<Yen>,
    /// Japanese M2M (020) numbers.
    pub outbound_other: Option<Yen>,
    /// Navi dial (0570) and teledome (0180).
    pub outbound_special_service: Option<Yen>,
    /// Every number outside Japan; `None`: not called at all.
    pub outbound_foreign: Option<Yen>,
    /// Per participant and started minute in a conference, on top of the leg's own rate:
    /// Twilio bills every participant of a conference per minute ("Conference" on
    /// https://www.twilio.com/en-us/voice/pricing/jp), rounded up to the minute since
    /// 2022-10-01 (Twilio changelog "Billing Changes for Conference, Voice Insights, and
    /// BYOC Usage", 2022-09-27).
    pub conference: Yen,
}

impl Default for Rates {
    /// Twilio Japan: inbound 1 JPY/min, outbound 5.4 to landlines and 16.2 to mobiles; the
    /// conference fee is Twilio's USD 0.0018 per participant-minute at about 150 JPY/USD,
    /// rounded up to 0.3 JPY. Check them against your account's prices (Pricing API).
    fn default() -> Rates {
        Rates {
            inbound: Yen::from_milli(1_000),
            outbound_mobile: Yen::from_milli(16_200),
            outbound_landline: Yen::from_milli(5_400),
            outbound_ip: None,
            outbound_toll_free: None,
            outbound_other: None,
            outbound_special_service: None,
            outbound_foreign: None,
            conference: Yen::from_milli(300),
        }
    }
}

pub const RATE_INBOUND_VAR: &str = "RATE_INBOUND_JPY_PER_MIN";
pub const RATE_OUTBOUND_MOBILE_VAR: &str = "RATE_OUTBOUND_MOBILE_JPY_PER_MIN";
pub const RATE_OUTBOUND_LANDLINE_VAR: &str = "RATE_OUTBOUND_LANDLINE_JPY_PER_MIN";
pub const RATE_OUTBOUND_IP_VAR: &str = "RATE_OUTBOUND_IP_JPY_PER_MIN";
pub const RATE_OUTBOUND_TOLL_FREE_VAR: &str = "RATE_OUTBOUND_TOLL_FREE_JPY_PER_MIN";
pub const RATE_OUTBOUND_OTHER_VAR: &str = "RATE_OUTBOUND_OTHER_JPY_PER_MIN";
pub const RATE_OUTBOUND_SPECIAL_SERVICE_VAR: &str = "RATE_OUTBOUND_SPECIAL_SERVICE_JPY_PER_MIN";
pub const RATE_OUTBOUND_FOREIGN_VAR: &str = "RATE_OUTBOUND_FOREIGN_JPY_PER_MIN";
pub const RATE_CONFERENCE_VAR: &str = "RATE_CONFERENCE_JPY_PER_MIN";

impl Rates {
    /// Reads RATE_INBOUND_JPY_PER_MIN, RATE_OUTBOUND_MOBILE_JPY_PER_MIN,
    /// RATE_OUTBOUND_LANDLINE_JPY_PER_MIN, RATE_OUTBOUND_IP_JPY_PER_MIN,
    /// RATE_OUTBOUND_TOLL_FREE_JPY_PER_MIN, RATE_OUTBOUND_OTHER_JPY_PER_MIN,
    /// RATE_OUTBOUND_SPECIAL_SERVICE_JPY_PER_MIN, RATE_OUTBOUND_FOREIGN_JPY_PER_MIN and
    /// RATE_CONFERENCE_JPY_PER_MIN; absent → default;
    /// malformed → RateError naming the variable and the value.
    ///
    /// A variable set to an empty (or blank) string is malformed, not absent: a rate is money,
    /// and a blank left in a deployment template should stop the function at start rather
    /// than be silently defaulted. `Config::from_lookup` passes `RATE_*` values through
    /// unfiltered for this. Takes a lookup so tests need not mutate the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Rates, RateError> {
        let read = |variable: &'static str| -> Result<Option<Yen>, RateError> {
            lookup(variable)
                .map(|value| match parse_milli(value.trim()) {
                    Ok(milli) => Ok(Yen::from_milli(milli)),
                    Err(problem) => Err(RateError::Variable {
                        variable,
                        value,
                        problem,
                    }),
                })
                .transpose()
        };
        let defaults = Rates::default();
        Ok(Rates {
            inbound: read(RATE_INBOUND_VAR)?.unwrap_or(defaults.inbound),
            outbound_mobile: read(RATE_OUTBOUND_MOBILE_VAR)?.unwrap_or(defaults.outbound_mobile),
            outbound_landline: read(RATE_OUTBOUND_LANDLINE_VAR)?
                .unwrap_or(defaults.outbound_landline),
            outbound_ip: read(RATE_OUTBOUND_IP_VAR)?.or(defaults.outbound_ip),
            outbound_toll_free: read(RATE_OUTBOUND_TOLL_FREE_VAR)?.or(defaults.outbound_toll_free),
            outbound_other: read(RATE_OUTBOUND_OTHER_VAR)?.or(defaults.outbound_other),
            outbound_special_service: read(RATE_OUTBOUND_SPECIAL_SERVICE_VAR)?
                .or(defaults.outbound_special_service),
            outbound_foreign: read(RATE_OUTBOUND_FOREIGN_VAR)?.or(defaults.outbound_foreign),
            conference: read(RATE_CONFERENCE_VAR)?.unwrap_or(defaults.conference),
        })
    }

    /// The rate for one minute of a leg. Inbound legs are billed the same whatever the
    /// caller, so `callee` only matters outbound. A foreign callee without a configured rate
    /// is never called (see `calls`); a leg that reached one anyway, created before the rate
    /// was removed, is priced at the `other` rate so its cost is not silently zero.
    pub fn per_minute(&self, direction: Direction, callee: NumberClass) -> Yen {
        let landline = self.outbound_landline;
        match direction {
            Direction::Inbound => self.inbound,
            Direction::Outbound => match callee {
                NumberClass::Mobile => self.outbound_mobile,
                NumberClass::Landline => landline,
                NumberClass::IpPhone => self.outbound_ip.unwrap_or(landline),
                NumberClass::TollFree => self.outbound_toll_free.unwrap_or(landline),
                NumberClass::Other => self.outbound_other.unwrap_or(landline),
                NumberClass::SpecialService => self.outbound_special_service.unwrap_or(landline),
                NumberClass::Foreign => self
                    .outbound_foreign
                    .or(self.outbound_other)
                    .unwrap_or(landline),
            },
        }
    }

    /// Whether Tsunagu may call numbers of this class: foreign numbers only when their rate
    /// is configured, so no call is placed at a price nobody set.
    pub fn calls(&self, callee: NumberClass) -> bool {
        callee != NumberClass::Foreign || self.outbound_foreign.is_some()
    }
}

/// Twilio bills per started minute: 1 s is a minute, 60 s one, 61 s two, 0 s none.
pub fn billed_minutes(duration_secs: u64) -> u64 {
    duration_secs.div_ceil(60)
}

/// The cost of one call leg.
pub fn leg_cost(
    rates: &Rates,
    direction: Direction,
    callee: NumberClass,
    duration_secs: u64,
) -> Yen {
    rates
        .per_minute(direction, callee)
        .times(billed_minutes(duration_secs))
}

/// The cost of one call leg that went through a conference room: its own rate plus the
/// conference fee for each started minute. The fee is counted on the leg's whole duration:
/// a leg Tsunagu sends to a room joins it with its first TwiML, so the seconds before are
/// at most a greeting, and Twilio rounds both up to the minute anyway.
pub fn room_leg_cost(
    rates: &Rates,
    direction: Direction,
    callee: NumberClass,
    duration_secs: u64,
) -> Yen {
    leg_cost(rates, direction, callee, duration_secs)
        + rates.conference.times(billed_minutes(duration_secs))
}

/// What is wrong with a yen amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountProblem {
    Empty,
    Negative,
    TooManyDecimals,
    TooLarge,
    NotANumber,
}

impl fmt::Display for AmountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AmountProblem::Empty => "it is empty; give a number such as 5.4",
            AmountProblem::Negative => "amounts cannot be negative",
            AmountProblem::TooManyDecimals => {
                "use at most 3 decimal places (amounts are kept to thousandths of a yen)"
            }
            AmountProblem::TooLarge => "it is too large",
            AmountProblem::NotANumber => {
                "expected a plain decimal number such as 5.4 or 16 (no sign, unit, comma or exponent)"
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// A yen amount given directly (parse, JSON).
    #[error("{value:?} is not a valid yen amount: {problem}")]
    Amount {
        value: String,
        problem: AmountProblem,
    },
    /// A rate read from configuration.
    #[error(
        "{variable}={value:?} is not a valid rate in JPY per minute: {problem}; fix it or unset it to use the default"
    )]
    Variable {
        variable: &'static str,
        value: String,
        problem: AmountProblem,
    },
}

impl RateError {
    fn amount(value: impl fmt::Display, problem: AmountProblem) -> RateError {
        RateError::Amount {
            value: value.to_string(),
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn yen(s: &str) -> Yen {
        match Yen::parse(s) {
            Ok(y) => y,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn problem(s: &str) -> Option<AmountProblem> {
        match Yen::parse(s) {
            Err(RateError::Amount { value, problem }) => {
                assert_eq!(value, s, "the error keeps the raw value");
                Some(problem)
            }
            _ => None,
        }
    }

    fn rates_from(vars: &[(&str, &str)]) -> Result<Rates, RateError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Rates::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn billed_minutes_round_up_per_started_minute() {
        assert_eq!(billed_minutes(0), 0);
        assert_eq!(billed_minutes(1), 1);
        assert_eq!(billed_minutes(59), 1);
        assert_eq!(billed_minutes(60), 1);
        assert_eq!(billed_minutes(61), 2);
        assert_eq!(billed_minutes(120), 2);
        assert_eq!(billed_minutes(3601), 61);
        assert_eq!(billed_minutes(u64::MAX), u64::MAX / 60 + 1);
    }

    #[test]
    fn outbound_mobile_65_seconds_is_two_minutes_at_16_2() {
        let cost = leg_cost(
            &Rates::default(),
            Direction::Outbound,
            NumberClass::Mobile,
            65,
        );
        assert_eq!(cost, yen("32.4"));
        assert_eq!(cost.to_string(), "32.4");
    }

    #[test]
    fn inbound_65_seconds_is_two_yen_whatever_the_number() {
        let rates = Rates::default();
        for class in [
            NumberClass::Mobile,
            NumberClass::Landline,
            NumberClass::Other,
        ] {
            assert_eq!(leg_cost(&rates, Direction::Inbound, class, 65), yen("2"));
        }
    }

    #[test]
    fn landline_two_minutes_is_exactly_10_8() {
        let cost = leg_cost(
            &Rates::default(),
            Direction::Outbound,
            NumberClass::Landline,
            120,
        );
        assert_eq!(cost.milli(), 10_800);
        assert_eq!(cost.to_string(), "10.8");
    }

    #[test]
    fn zero_seconds_costs_nothing() {
        let cost = leg_cost(
            &Rates::default(),
            Direction::Outbound,
            NumberClass::Mobile,
            0,
        );
        assert_eq!(cost, Yen::ZERO);
    }

    #[test]
    fn unconfigured_classes_fall_back_to_landline() {
        let rates = Rates::default();
        for class in [
            NumberClass::IpPhone,
            NumberClass::TollFree,
            NumberClass::Other,
        ] {
            assert_eq!(
                rates.per_minute(Direction::Outbound, class),
                yen("5.4"),
                "{class}"
            );
        }
        let custom = Rates {
            outbound_landline: yen("7"),
            ..Rates::default()
        };
        assert_eq!(
            custom.per_minute(Direction::Outbound, NumberClass::IpPhone),
            yen("7")
        );
    }

    #[test]
    fn configured_rates_override_defaults() -> Result<(), RateError> {
        let rates = rates_from(&[
            (RATE_INBOUND_VAR, "0.5"),
            (RATE_OUTBOUND_MOBILE_VAR, "20"),
            (RATE_OUTBOUND_LANDLINE_VAR, "6"),
            (RATE_OUTBOUND_IP_VAR, "3.125"),
            (RATE_OUTBOUND_TOLL_FREE_VAR, "0"),
            (RATE_OUTBOUND_OTHER_VAR, " 30.5\n"),
        ])?;
        let per_minute = |d, c| rates.per_minute(d, c);
        assert_eq!(
            per_minute(Direction::Inbound, NumberClass::Mobile),
            yen("0.5")
        );
        assert_eq!(
            per_minute(Direction::Outbound, NumberClass::Mobile),
            yen("20")
        );
        assert_eq!(
            per_minute(Direction::Outbound, NumberClass::Landline),
            yen("6")
        );
        assert_eq!(
            per_minute(Direction::Outbound, NumberClass::IpPhone),
            yen("3.125")
        );
        assert_eq!(
            per_minute(Direction::Outbound, NumberClass::TollFree),
            Yen::ZERO
        );
        assert_eq!(
            per_minute(Direction::Outbound, NumberClass::Other),
            yen("30.5")
        );
        assert_eq!(
            leg_cost(&rates, Direction::Outbound, NumberClass::IpPhone, 61),
            yen("6.25")
        );
        Ok(())
    }

    #[test]
    fn absent_variables_give_the_defaults() -> Result<(), RateError> {
        assert_eq!(rates_from(&[])?, Rates::default());
        let only_landline = rates_from(&[(RATE_OUTBOUND_LANDLINE_VAR, "8")])?;
        assert_eq!(only_landline.outbound_mobile, yen("16.2"));
        assert_eq!(
            only_landline.per_minute(Direction::Outbound, NumberClass::IpPhone),
            yen("8"),
            "IP phone follows a configured landline rate"
        );
        Ok(())
    }

    #[test]
    fn malformed_variable_names_variable_and_value() {
        let err = rates_from(&[(RATE_OUTBOUND_MOBILE_VAR, "16,2")]);
        assert_eq!(
            err,
            Err(RateError::Variable {
                variable: RATE_OUTBOUND_MOBILE_VAR,
                value: "16,2".to_owned(),
                problem: AmountProblem::NotANumber,
            })
        );
        let message = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.starts_with("RATE_OUTBOUND_MOBILE_JPY_PER_MIN=\"16,2\""),
            "{message}"
        );
        assert_eq!(
            rates_from(&[(RATE_OUTBOUND_IP_VAR, "")]).err(),
            Some(RateError::Variable {
                variable: RATE_OUTBOUND_IP_VAR,
                value: String::new(),
                problem: AmountProblem::Empty,
            })
        );
        assert!(matches!(
            rates_from(&[(RATE_INBOUND_VAR, "-1")]),
            Err(RateError::Variable {
                variable: RATE_INBOUND_VAR,
                problem: AmountProblem::Negative,
                ..
            })
        ));
    }

    #[test]
    fn yen_parses_decimals_exactly() {
        assert_eq!(yen("5.4").milli(), 5_400);
        assert_eq!(yen("16.2").milli(), 16_200);
        assert_eq!(yen("1").milli(), 1_000);
        assert_eq!(yen("0.125").milli(), 125);
        assert_eq!(yen("0.05").milli(), 50);
        assert_eq!(yen("007.500").milli(), 7_500);
        assert_eq!(yen(" 3 ").milli(), 3_000);
        assert_eq!("2.5".parse::<Yen>().map(|y| y.milli()), Ok(2_500));
    }

    #[test]
    fn yen_rejects_bad_amounts() {
        assert_eq!(problem(""), Some(AmountProblem::Empty));
        assert_eq!(problem("  "), Some(AmountProblem::Empty));
        assert_eq!(problem("-5.4"), Some(AmountProblem::Negative));
        assert_eq!(problem("0.1234"), Some(AmountProblem::TooManyDecimals));
        assert_eq!(problem("5.4000"), Some(AmountProblem::TooManyDecimals));
        for garbage in [
            "abc", "5.4.1", ".5", "5.", "+5", "1e3", "5 yen", "¥5", "1,000", "５",
        ] {
            assert_eq!(
                problem(garbage),
                Some(AmountProblem::NotANumber),
                "{garbage:?}"
            );
        }
        assert_eq!(problem("18446744073709552"), Some(AmountProblem::TooLarge));
        assert_eq!(
            problem("99999999999999999999"),
            Some(AmountProblem::TooLarge)
        );
        assert_eq!(yen("18446744073709551.615").milli(), u64::MAX);
    }

    #[test]
    fn yen_error_message_is_actionable() {
        let message = Yen::parse("0.1234").err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some(
                "\"0.1234\" is not a valid yen amount: use at most 3 decimal places \
                 (amounts are kept to thousandths of a yen)"
            )
        );
    }

    #[test]
    fn yen_display_drops_trailing_zeros() {
        assert_eq!(Yen::from_milli(10_800).to_string(), "10.8");
        assert_eq!(Yen::from_milli(16_000).to_string(), "16");
        assert_eq!(Yen::from_milli(125).to_string(), "0.125");
        assert_eq!(Yen::from_milli(50).to_string(), "0.05");
        assert_eq!(Yen::from_milli(1_001).to_string(), "1.001");
        assert_eq!(Yen::ZERO.to_string(), "0");
        assert_eq!(format!("{:>6}", Yen::from_milli(10_800)), "  10.8");
    }

    #[test]
    fn yen_serializes_as_a_json_number() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&yen("32.4"))?, "32.4");
        assert_eq!(serde_json::to_string(&yen("10.8"))?, "10.8");
        assert_eq!(serde_json::to_string(&yen("2"))?, "2");
        assert_eq!(serde_json::to_string(&yen("0.125"))?, "0.125");
        assert_eq!(serde_json::to_string(&Yen::ZERO)?, "0");
        Ok(())
    }

    #[test]
    fn yen_deserializes_from_number_or_string() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::from_str::<Yen>("32.4")?.milli(), 32_400);
        assert_eq!(serde_json::from_str::<Yen>("16")?.milli(), 16_000);
        assert_eq!(serde_json::from_str::<Yen>("0.001")?.milli(), 1);
        assert_eq!(serde_json::from_str::<Yen>("\"5.4\"")?.milli(), 5_400);
        for milli in [1, 125, 5_400, 10_800, 16_200, 32_400, 123_456_789] {
            let y = Yen::from_milli(milli);
            assert_eq!(serde_json::from_str::<Yen>(&serde_json::to_string(&y)?)?, y);
        }
        Ok(())
    }

    #[test]
    fn yen_deserialize_rejects_bad_values() {
        let err = |json: &str| {
            serde_json::from_str::<Yen>(json)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("-1").contains("cannot be negative"), "{}", err("-1"));
        assert!(err("-1.5").contains("cannot be negative"));
        assert!(
            err("0.0001").contains("3 decimal places"),
            "{}",
            err("0.0001")
        );
        assert!(err("\"abc\"").contains("plain decimal number"));
        assert!(!err("true").is_empty());
        assert!(!err("null").is_empty());
    }

    #[test]
    fn yen_adds_and_sums() {
        assert_eq!(yen("5.4") + yen("16.2"), yen("21.6"));
        let legs = [yen("32.4"), yen("2"), yen("10.8")];
        assert_eq!(legs.iter().sum::<Yen>(), yen("45.2"));
        assert_eq!(legs.into_iter().sum::<Yen>(), yen("45.2"));
        assert_eq!(std::iter::empty::<Yen>().sum::<Yen>(), Yen::ZERO);
        assert_eq!(
            Yen::from_milli(u64::MAX) + yen("1"),
            Yen::from_milli(u64::MAX)
        );
    }

    #[test]
    fn long_calls_saturate_instead_of_wrapping() {
        let cost = leg_cost(
            &Rates::default(),
            Direction::Outbound,
            NumberClass::Mobile,
            u64::MAX,
        );
        assert_eq!(cost, Yen::from_milli(u64::MAX));
    }

    #[test]
    fn each_callee_class_has_its_rate() -> Result<(), RateError> {
        let rates = rates_from(&[
            (RATE_OUTBOUND_IP_VAR, "4"),
            (RATE_OUTBOUND_TOLL_FREE_VAR, "9"),
            (RATE_OUTBOUND_SPECIAL_SERVICE_VAR, "20.5"),
            (RATE_OUTBOUND_FOREIGN_VAR, "40"),
            (RATE_OUTBOUND_OTHER_VAR, "7"),
        ])?;
        let cases = [
            (NumberClass::Mobile, "16.2"),
            (NumberClass::Landline, "5.4"),
            (NumberClass::IpPhone, "4"),
            (NumberClass::TollFree, "9"),
            (NumberClass::SpecialService, "20.5"),
            (NumberClass::Foreign, "40"),
            (NumberClass::Other, "7"),
        ];
        for (class, rate) in cases {
            assert_eq!(
                rates.per_minute(Direction::Outbound, class),
                yen(rate),
                "{class}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_060_mobile_is_priced_as_a_mobile() {
        let class = crate::phone::PhoneNumber::parse("060-1234-5678")
            .map(|n| n.class())
            .ok();
        assert_eq!(class, Some(NumberClass::Mobile));
        // 61 s is two started minutes at 16.2.
        assert_eq!(
            leg_cost(
                &Rates::default(),
                Direction::Outbound,
                NumberClass::Mobile,
                61
            ),
            yen("32.4")
        );
    }

    #[test]
    fn foreign_numbers_are_called_only_with_a_configured_rate() -> Result<(), RateError> {
        let unset = Rates::default();
        assert!(!unset.calls(NumberClass::Foreign));
        for class in [
            NumberClass::Mobile,
            NumberClass::Landline,
            NumberClass::IpPhone,
            NumberClass::TollFree,
            NumberClass::SpecialService,
            NumberClass::Other,
        ] {
            assert!(unset.calls(class), "{class}");
        }
        let set = rates_from(&[(RATE_OUTBOUND_FOREIGN_VAR, "45")])?;
        assert!(set.calls(NumberClass::Foreign));
        assert_eq!(
            leg_cost(&set, Direction::Outbound, NumberClass::Foreign, 60),
            yen("45")
        );
        Ok(())
    }

    #[test]
    fn a_room_adds_the_conference_fee_per_started_minute() -> Result<(), RateError> {
        let rates = Rates::default();
        // Outbound to a mobile, 65 s: 2 minutes × (16.2 + 0.3) = 33.
        assert_eq!(
            room_leg_cost(&rates, Direction::Outbound, NumberClass::Mobile, 65),
            yen("33")
        );
        // Inbound, 65 s: 2 × (1 + 0.3) = 2.6.
        assert_eq!(
            room_leg_cost(&rates, Direction::Inbound, NumberClass::IpPhone, 65),
            yen("2.6")
        );
        assert_eq!(
            room_leg_cost(&rates, Direction::Inbound, NumberClass::IpPhone, 0),
            Yen::ZERO
        );
        let custom = rates_from(&[(RATE_CONFERENCE_VAR, "0.25")])?;
        assert_eq!(custom.conference, yen("0.25"));
        // 121 s to a landline: 3 × (5.4 + 0.25) = 16.95.
        assert_eq!(
            room_leg_cost(&custom, Direction::Outbound, NumberClass::Landline, 121),
            yen("16.95")
        );
        Ok(())
    }

    #[test]
    fn direction_serde_is_lowercase() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&Direction::Inbound)?, "\"inbound\"");
        assert_eq!(serde_json::to_string(&Direction::Outbound)?, "\"outbound\"");
        assert_eq!(
            serde_json::from_str::<Direction>("\"outbound\"")?,
            Direction::Outbound
        );
        Ok(())
    }
}
