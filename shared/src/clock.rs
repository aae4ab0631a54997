//! Where "now" comes from. Production uses the system clock; the local stack and the tests
//! share a virtual clock with the Twilio simulator so an hour-long call runs in milliseconds.

use time::OffsetDateTime;

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Seconds since the Unix epoch, the form timestamps take in the table.
pub fn epoch(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// ISO 8601 in UTC with second precision ("2026-11-24T20:30:00Z"), as Twilio Proxy's API shows dates.
pub fn iso(epoch_secs: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(epoch_secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_default()
}

/// Parses an ISO 8601 / RFC 3339 timestamp given by an API client.
pub fn parse_iso(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trips() {
        let t = 1_795_552_200; // 2026-11-24T20:30:00Z
        assert_eq!(iso(t), "2026-11-24T20:30:00Z");
        assert_eq!(parse_iso("2026-11-24T20:30:00Z"), Some(t));
        assert_eq!(parse_iso("2026-11-25T05:30:00+09:00"), Some(t));
        assert_eq!(parse_iso("tomorrow"), None);
    }
}
