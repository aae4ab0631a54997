//! Resource identifiers in Twilio's style: a two-letter prefix and 32 hex digits.

use uuid::Uuid;

/// Session SIDs start with KC, as in Twilio Proxy.
pub const SESSION: &str = "KC";
/// Participant SIDs start with KP.
pub const PARTICIPANT: &str = "KP";
/// Interaction SIDs start with KI.
pub const INTERACTION: &str = "KI";

pub fn new_sid(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::new_v4().simple())
}

/// True when `s` has the given prefix followed by exactly 32 lower- or upper-case hex digits.
pub fn is_sid(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_have_prefix_and_32_hex_digits() {
        let sid = new_sid(SESSION);
        assert!(is_sid(SESSION, &sid), "{sid}");
        assert!(!is_sid(PARTICIPANT, &sid));
        assert!(!is_sid(SESSION, "KC123"));
        assert!(!is_sid(SESSION, "KCzz23456789abcdef0123456789abcdef"));
        assert_ne!(new_sid(SESSION), new_sid(SESSION));
    }
}
