//! Configuration from the environment (docs/DESIGN.md, Configuration), read once per
//! container.

use crate::pricing::{RateError, Rates};

pub const DEFAULT_TWILIO_API_BASE_URL: &str = "https://api.twilio.com";
/// Closed sessions are kept at most ten years; the table's TTL deletes them after that.
pub const MAX_RETENTION_DAYS: u64 = 3_650;
pub const JAPAN_CALLING_CODE: &str = "81";

/// `81,1` or `+81, +44` → `["81", "1"]`; `None` unless every entry is 1 to 3 digits.
fn parse_calling_codes(list: &str) -> Option<Vec<String>> {
    list.split(',')
        .map(|code| {
            let code = code.trim().trim_start_matches('+');
            (!code.is_empty() && code.len() <= 3 && code.bytes().all(|b| b.is_ascii_digit()))
                .then(|| code.to_owned())
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set; it is required (see README, Configuration)")]
    Missing(&'static str),
    #[error("{name}={value:?} is invalid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
    },
    #[error(transparent)]
    Rate(#[from] RateError),
}

/// What callers hear. Japanese by default; every text can be replaced by configuration.
#[derive(Debug, Clone)]
pub struct Prompts {
    pub language: String,
    pub voice: String,
    /// A caller with no open session on the number they dialled.
    pub no_session: String,
    /// A caller whose number is withheld (非通知): no route can be found without it.
    pub withheld_caller: String,
    /// The session exists but has closed or expired.
    pub session_closed: String,
    /// The platform's intercept callback refused the call.
    pub blocked: String,
    /// Something failed inside; Twilio still gets valid TwiML.
    pub apology: String,
    /// V字発信: the other party could not be reached.
    pub other_unreachable: String,
    /// A masked call's caller: the other party is busy.
    pub other_busy: String,
    /// A masked call's caller: the other party did not answer.
    pub other_no_answer: String,
    /// A masked call's caller: the other party could not be called (failed, canceled).
    pub other_failed: String,
    /// Played in the conference room until the other party joins.
    pub conference_wait: String,
    /// The end-of-call warning; `{minutes}` is the time left.
    pub warning: String,
    /// The warning when no extension is left.
    pub warning_final: String,
    /// After pressing 1; `{extension}` and `{minutes}` are minutes.
    pub extended: String,
    pub not_extended: String,
    pub no_more_extensions: String,
    /// 1 was pressed, but extending would pass the session's `max_cost`.
    pub cost_limit: String,
    /// What the other party hears at the warning while the deciding party is asked;
    /// `{minutes}` is the time left.
    pub warning_other: String,
    /// The outcome when the call is not extended, heard by both parties.
    pub ending: String,
    /// What the other party hears while the deciding party answers the warning.
    pub hold: String,
    /// What both parties hear 20 s before the deadline (`domain::timers::NOTICE_LEAD_SECONDS`).
    pub notice: String,
}

impl Default for Prompts {
    fn default() -> Self {
        Self {
            language: "ja-JP".into(),
            voice: "Polly.Mizuki".into(),
            no_session: "おかけになった番号は、現在お取り扱いしておりません。".into(),
            withheld_caller: "番号を通知しておかけ直しください。電話番号の前に186をつけておかけください。".into(),
            session_closed: "この番号でのお取り次ぎは終了しました。".into(),
            blocked: "申し訳ございません。この通話はおつなぎできません。".into(),
            apology: "申し訳ございません。ただいま通話をおつなぎできません。しばらくしてからおかけ直しください。".into(),
            other_unreachable: "お相手の方は、ただいま電話に出ることができません。".into(),
            other_busy: "お相手の方は、ただいま話し中です。".into(),
            other_no_answer: "お相手の方が応答されませんでした。".into(),
            other_failed: "申し訳ございません。お相手の方におつなぎできませんでした。".into(),
            conference_wait: "お相手の方をお呼び出ししています。少々お待ちください。".into(),
            warning: "通話終了まで残り{minutes}分です。延長する場合は1を押してください。".into(),
            warning_final: "通話終了まで残り{minutes}分です。".into(),
            extended: "通話を{extension}分延長しました。残りは{minutes}分です。".into(),
            not_extended: "延長はしませんでした。".into(),
            no_more_extensions: "これ以上の延長はできません。".into(),
            cost_limit: "ご利用上限額に達するため、延長はできません。".into(),
            warning_other:
                "通話終了まで残り{minutes}分です。お相手の方に延長を確認しています。".into(),
            ending: "まもなく通話を終了します。".into(),
            hold: "少々お待ちください。".into(),
            notice: "あと20秒で通話が終わります。".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    pub twilio_secret_id: String,
    /// Scheme, host, optional port and optional path prefix, without a trailing slash.
    pub public_base_url: String,
    pub twilio_api_base_url: String,
    /// Session ttl when a create request gives none; 0 means no inactivity limit.
    pub default_ttl_seconds: u64,
    pub default_warning_lead_seconds: u64,
    pub default_extension_seconds: u64,
    pub default_extension_max_count: u32,
    pub retention_days: u64,
    /// Country calling codes participants' numbers may have (`ALLOWED_COUNTRIES`, e.g.
    /// `81` for Japan, the default): anything else is refused, a guard against toll fraud.
    pub allowed_countries: Vec<String>,
    /// How long Twilio rings the other party before giving up.
    pub dial_timeout_seconds: u32,
    pub intercept_callback_url: Option<String>,
    pub out_of_session_callback_url: Option<String>,
    /// The EventBridge Scheduler group of the live calls' exact timers; without it there are
    /// none and the minute sweep alone keeps time.
    pub schedule_group: Option<String>,
    /// The role Scheduler assumes to invoke the timers' target (needed to set timers).
    pub schedule_role_arn: Option<String>,
    /// The function a timer invokes: `expiry-warning` (needed to set timers).
    pub schedule_target_arn: Option<String>,
    /// Where the platform's events go (`EVENT_CALLBACK_URL`); None: events are off.
    pub event_callback_url: Option<String>,
    /// The FIFO queue the events wait in (`EVENT_QUEUE_URL`, the template's queue).
    pub event_queue_url: Option<String>,
    /// The first retry's delay; each later one doubles it (`EVENT_RETRY_BASE_SECONDS`).
    pub event_retry_base_seconds: u64,
    pub rates: Rates,
    pub prompts: Prompts,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests and the local gateway need not touch
    /// the process environment. Empty values count as absent (CloudFormation passes ""),
    /// except the `RATE_*` ones: a blank rate is an error (see `Rates::from_lookup`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                    name,
                    value: v,
                    why: "expected a whole number",
                }),
            }
        };
        let url = |name: &'static str, value: String| -> Result<String, ConfigError> {
            if !(value.starts_with("https://") || value.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name,
                    value,
                    why: "expected an absolute http(s) URL",
                });
            }
            Ok(value.trim_end_matches('/').to_owned())
        };
        // The platform's URLs get signed requests: https only, or http to loopback (local).
        let callback_url = |name: &'static str| -> Result<Option<String>, ConfigError> {
            let Some(value) = get(name) else {
                return Ok(None);
            };
            if crate::callback::check_url(&value).is_err() {
                return Err(ConfigError::Invalid {
                    name,
                    value,
                    why: "expected an https URL (plain http only to a loopback address)",
                });
            }
            url(name, value).map(Some)
        };

        let public_base_url = url("PUBLIC_BASE_URL", required("PUBLIC_BASE_URL")?)?;
        if public_base_url.contains('?') || public_base_url.contains('#') {
            return Err(ConfigError::Invalid {
                name: "PUBLIC_BASE_URL",
                value: public_base_url,
                why: "must not contain a query or fragment",
            });
        }
        let mut prompts = Prompts::default();
        for (name, slot) in [
            ("TTS_LANGUAGE", &mut prompts.language),
            ("TTS_VOICE", &mut prompts.voice),
            ("PROMPT_NO_SESSION", &mut prompts.no_session),
            ("PROMPT_WITHHELD_CALLER", &mut prompts.withheld_caller),
            ("PROMPT_SESSION_CLOSED", &mut prompts.session_closed),
            ("PROMPT_BLOCKED", &mut prompts.blocked),
            ("PROMPT_APOLOGY", &mut prompts.apology),
            ("PROMPT_OTHER_UNREACHABLE", &mut prompts.other_unreachable),
            ("PROMPT_OTHER_BUSY", &mut prompts.other_busy),
            ("PROMPT_OTHER_NO_ANSWER", &mut prompts.other_no_answer),
            ("PROMPT_OTHER_FAILED", &mut prompts.other_failed),
            ("PROMPT_CONFERENCE_WAIT", &mut prompts.conference_wait),
            ("PROMPT_WARNING", &mut prompts.warning),
            ("PROMPT_WARNING_FINAL", &mut prompts.warning_final),
            ("PROMPT_EXTENDED", &mut prompts.extended),
            ("PROMPT_NOT_EXTENDED", &mut prompts.not_extended),
            ("PROMPT_NO_MORE_EXTENSIONS", &mut prompts.no_more_extensions),
            ("PROMPT_COST_LIMIT", &mut prompts.cost_limit),
            ("PROMPT_WARNING_OTHER", &mut prompts.warning_other),
            ("PROMPT_ENDING", &mut prompts.ending),
            ("PROMPT_HOLD", &mut prompts.hold),
            ("PROMPT_NOTICE", &mut prompts.notice),
        ] {
            if let Some(v) = get(name) {
                *slot = v;
            }
        }
        let max_count = number("DEFAULT_EXTENSION_MAX_COUNT", 1)?;
        let dial_timeout = number("DIAL_TIMEOUT_SECONDS", 30)?;
        if !(5..=600).contains(&dial_timeout) {
            return Err(ConfigError::Invalid {
                name: "DIAL_TIMEOUT_SECONDS",
                value: dial_timeout.to_string(),
                why: "Twilio accepts 5 to 600 seconds",
            });
        }
        let retention_days = number("RETENTION_DAYS", 90)?;
        if !(1..=MAX_RETENTION_DAYS).contains(&retention_days) {
            return Err(ConfigError::Invalid {
                name: "RETENTION_DAYS",
                value: retention_days.to_string(),
                why: "expected 1 to 3650 days",
            });
        }
        let allowed_countries = match get("ALLOWED_COUNTRIES") {
            None => vec![JAPAN_CALLING_CODE.to_owned()],
            Some(list) => parse_calling_codes(&list).ok_or(ConfigError::Invalid {
                name: "ALLOWED_COUNTRIES",
                value: list,
                why: "expected country calling codes separated by commas, like 81,1",
            })?,
        };
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            twilio_secret_id: required("TWILIO_SECRET_ID")?,
            public_base_url,
            twilio_api_base_url: match get("TWILIO_API_BASE_URL") {
                Some(v) => url("TWILIO_API_BASE_URL", v)?,
                None => DEFAULT_TWILIO_API_BASE_URL.to_owned(),
            },
            default_ttl_seconds: number("DEFAULT_TTL_SECONDS", 0)?,
            default_warning_lead_seconds: number("DEFAULT_WARNING_LEAD_SECONDS", 180)?,
            default_extension_seconds: number("DEFAULT_EXTENSION_SECONDS", 300)?,
            default_extension_max_count: u32::try_from(max_count).unwrap_or(u32::MAX),
            retention_days,
            allowed_countries,
            dial_timeout_seconds: dial_timeout as u32,
            intercept_callback_url: callback_url("INTERCEPT_CALLBACK_URL")?,
            schedule_group: get("SCHEDULE_GROUP"),
            schedule_role_arn: get("SCHEDULE_ROLE_ARN"),
            schedule_target_arn: get("SCHEDULE_TARGET_ARN"),
            out_of_session_callback_url: callback_url("OUT_OF_SESSION_CALLBACK_URL")?,
            event_callback_url: callback_url("EVENT_CALLBACK_URL")?,
            event_queue_url: match get("EVENT_QUEUE_URL") {
                Some(v) => Some(url("EVENT_QUEUE_URL", v)?),
                None => None,
            },
            event_retry_base_seconds: number("EVENT_RETRY_BASE_SECONDS", 30)?,
            rates: Rates::from_lookup(&lookup)?,
            prompts,
        })
    }

    /// The URL Twilio requested, for signature checks: never rebuilt from headers.
    pub fn public_url(&self, raw_path: &str, raw_query: Option<&str>) -> String {
        match raw_query.filter(|q| !q.is_empty()) {
            Some(q) => format!("{}{raw_path}?{q}", self.public_base_url),
            None => format!("{}{raw_path}", self.public_base_url),
        }
    }

    /// Whether a participant may have this number: its country calling code is allowed.
    /// Calling codes are prefix-free (ITU-T E.164), so a prefix match is exact.
    pub fn country_allowed(&self, number: &crate::phone::PhoneNumber) -> bool {
        let digits = number.as_str().trim_start_matches('+');
        self.allowed_countries
            .iter()
            .any(|code| digits.starts_with(code.as_str()))
    }

    pub fn retention_seconds(&self) -> i64 {
        i64::try_from(self.retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Yen;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("TABLE_NAME", "tsunagu"),
        ("TWILIO_SECRET_ID", "tsunagu/twilio"),
        ("PUBLIC_BASE_URL", "https://voice.example.jp/"),
    ];

    #[test]
    fn defaults_apply_and_trailing_slash_is_dropped() {
        let c = Config::from_lookup(lookup(BASE)).unwrap();
        assert_eq!(c.public_base_url, "https://voice.example.jp");
        assert_eq!(c.twilio_api_base_url, DEFAULT_TWILIO_API_BASE_URL);
        assert_eq!(c.default_warning_lead_seconds, 180);
        assert_eq!(c.retention_days, 90);
        assert_eq!(c.prompts.voice, "Polly.Mizuki");
        assert_eq!(c.intercept_callback_url, None);
        assert_eq!(
            c.event_callback_url, None,
            "events are off unless configured"
        );
        assert_eq!(c.event_retry_base_seconds, 30);
        assert_eq!(
            c.public_url("/twilio/voice/status", Some("session=KC1&x=%20")),
            "https://voice.example.jp/twilio/voice/status?session=KC1&x=%20"
        );
        assert_eq!(
            c.public_url("/twilio/voice/inbound", Some("")),
            "https://voice.example.jp/twilio/voice/inbound"
        );
    }

    #[test]
    fn missing_and_bad_values_are_named() {
        let err = Config::from_lookup(lookup(&BASE[..2])).unwrap_err();
        assert!(err.to_string().contains("PUBLIC_BASE_URL"), "{err}");

        let mut pairs = BASE.to_vec();
        pairs.push(("DEFAULT_TTL_SECONDS", "an hour"));
        let err = Config::from_lookup(lookup(&pairs)).unwrap_err();
        assert!(err.to_string().contains("DEFAULT_TTL_SECONDS"), "{err}");

        for name in ["INTERCEPT_CALLBACK_URL", "EVENT_CALLBACK_URL"] {
            for bad in ["ftp://x", "http://platform.example.jp/intercept"] {
                let mut pairs = BASE.to_vec();
                pairs.push((name, bad));
                let err = Config::from_lookup(lookup(&pairs)).unwrap_err();
                assert!(err.to_string().contains(name), "{err}");
            }
        }
        let mut pairs = BASE.to_vec();
        pairs.push(("EVENT_CALLBACK_URL", "http://127.0.0.1:9/events"));
        assert_eq!(
            Config::from_lookup(lookup(&pairs))
                .unwrap()
                .event_callback_url
                .as_deref(),
            Some("http://127.0.0.1:9/events")
        );
        let mut pairs = BASE.to_vec();
        pairs.push(("OUT_OF_SESSION_CALLBACK_URL", "http://127.0.0.1:8080/oos"));
        assert!(
            Config::from_lookup(lookup(&pairs)).is_ok(),
            "loopback http is local"
        );
    }

    #[test]
    fn retention_is_bounded() {
        for bad in ["0", "3651", "100000000000000"] {
            let mut pairs = BASE.to_vec();
            pairs.push(("RETENTION_DAYS", bad));
            let err = Config::from_lookup(lookup(&pairs)).unwrap_err().to_string();
            assert!(err.contains("RETENTION_DAYS"), "{err}");
        }
        let mut pairs = BASE.to_vec();
        pairs.push(("RETENTION_DAYS", "3650"));
        assert_eq!(
            Config::from_lookup(lookup(&pairs)).unwrap().retention_days,
            3650
        );
    }

    #[test]
    fn only_japanese_participants_unless_allowed_countries_says_otherwise() {
        use crate::phone::PhoneNumber;
        let japan = PhoneNumber::parse("090-1234-5678").unwrap();
        let us = PhoneNumber::parse("+1 415 555 0100").unwrap();
        let c = Config::from_lookup(lookup(BASE)).unwrap();
        assert_eq!(c.allowed_countries, ["81"]);
        assert!(c.country_allowed(&japan));
        assert!(!c.country_allowed(&us));

        let mut pairs = BASE.to_vec();
        pairs.push(("ALLOWED_COUNTRIES", " +81, 1 "));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(c.allowed_countries, ["81", "1"]);
        assert!(c.country_allowed(&us));

        for bad in ["JP", "81,,1", "8100"] {
            let mut pairs = BASE.to_vec();
            pairs.push(("ALLOWED_COUNTRIES", bad));
            let err = Config::from_lookup(lookup(&pairs)).unwrap_err().to_string();
            assert!(err.contains("ALLOWED_COUNTRIES"), "{bad}: {err}");
        }
    }

    #[test]
    fn empty_values_count_as_absent() {
        let mut pairs = BASE.to_vec();
        pairs.push(("INTERCEPT_CALLBACK_URL", ""));
        pairs.push(("TTS_VOICE", "Polly.Takumi"));
        pairs.push(("PROMPT_OTHER_BUSY", "ただいま通話中です。"));
        pairs.push(("PROMPT_OTHER_FAILED", ""));
        pairs.push(("PROMPT_WARNING_OTHER", "残り{minutes}分です。"));
        pairs.push(("PROMPT_ENDING", "終了します。"));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(c.prompts.warning_other, "残り{minutes}分です。");
        assert_eq!(c.prompts.ending, "終了します。");
        assert_eq!(c.intercept_callback_url, None);
        assert_eq!(c.prompts.voice, "Polly.Takumi");
        assert_eq!(c.prompts.other_busy, "ただいま通話中です。");
        assert_eq!(c.prompts.other_failed, Prompts::default().other_failed);
    }

    #[test]
    fn a_blank_rate_is_an_error_naming_the_variable() {
        for blank in ["", "  "] {
            let mut pairs = BASE.to_vec();
            pairs.push(("RATE_OUTBOUND_MOBILE_JPY_PER_MIN", blank));
            let err = Config::from_lookup(lookup(&pairs)).unwrap_err().to_string();
            assert!(err.contains("RATE_OUTBOUND_MOBILE_JPY_PER_MIN"), "{err}");
            assert!(err.contains("it is empty"), "{err}");
        }
    }

    #[test]
    fn rates_are_read_trimmed_and_default_when_unset() {
        let mut pairs = BASE.to_vec();
        pairs.push(("RATE_OUTBOUND_MOBILE_JPY_PER_MIN", " 17.6 "));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(c.rates.outbound_mobile, Yen::parse("17.6").unwrap());
        assert_eq!(
            c.rates.outbound_landline,
            Rates::default().outbound_landline
        );
        assert_eq!(c.rates.outbound_ip, None);
    }
}
