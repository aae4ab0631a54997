//! Phone numbers: what people type (Japanese national form, full-width digits, E.164) parsed
//! into one canonical E.164 form, classified for pricing, and masked for logs.
//!
//! Japanese numbering (national digits, trunk `0` included) as enforced here:
//!
//! | prefix                     | class           | digits |
//! |----------------------------|-----------------|--------|
//! | 060-1…060-9, 070, 080, 090 | mobile          | 11     |
//! | 050                        | IP phone        | 11     |
//! | 0120                       | toll-free       | 10     |
//! | 0800                       | toll-free       | 11     |
//! | 0570 (navi dial)           | special service | 10     |
//! | 0180 (teledome)            | special service | 10     |
//! | 020 (M2M)                  | other           | 11     |
//! | other 0ABJ                 | landline        | 10     |
//! | `+` and another country    | foreign         | 8–15   |
//!
//! 060 became a mobile prefix with the Ministry of Internal Affairs and Communications'
//! numbering-plan change of 2024-12-20 (電気通信番号計画の一部変更, 総務省): 060-1… to 060-9…
//! are assigned to mobile carriers; 0600 stays unassigned.
//!
//! Accepted spellings: national (`090-1234-5678`, full-width too), E.164 (`+81 90 1234 5678`),
//! the business-card form with the trunk zero in parentheses (`+81 (0)90-1234-5678`), and
//! Japan's international prefixes `0081…` and `010-81-…` (`010` followed by another country
//! code is that country's number).
//!
//! Rejected: `0990` (Dial Q2, discontinued), `00` followed by anything but 81, and the
//! remaining `0A0` prefixes (`030`, `040`, `0600`), which are not geographic and not in use.
//! No landline starts with `0A0`: subscriber numbers never begin with 0.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A phone number in E.164 form, e.g. "+819012345678". Only constructible through parse.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PhoneNumber(String);

/// What kind of line a number reaches; it decides the outbound rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NumberClass {
    Mobile,
    Landline,
    IpPhone,
    TollFree,
    /// Japanese M2M numbers (020). Before special-service numbers and foreign numbers had
    /// classes of their own, they were `Other` too; stored legs may still say so.
    Other,
    /// Japanese special-service numbers: navi dial (0570) and teledome (0180). Neither is a
    /// landline: callers pay per call or by the number's own tariff, so they are priced apart.
    SpecialService,
    /// Every number outside Japan (`+` and a country code other than 81).
    Foreign,
}

impl NumberClass {
    /// The same spelling as the serde form.
    pub fn as_str(&self) -> &'static str {
        match self {
            NumberClass::Mobile => "mobile",
            NumberClass::Landline => "landline",
            NumberClass::IpPhone => "ip-phone",
            NumberClass::TollFree => "toll-free",
            NumberClass::Other => "other",
            NumberClass::SpecialService => "special-service",
            NumberClass::Foreign => "foreign",
        }
    }
}

impl fmt::Display for NumberClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why some input is not a phone number. `rule` is a sentence the person who typed it can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid phone number: {rule}")]
pub struct PhoneError {
    pub input: String,
    pub rule: &'static str,
}

/// The rules a number can break, one sentence each. Public so callers can match on them.
pub mod rule {
    pub const EMPTY: &str = "enter a phone number, e.g. 090-1234-5678 or +819012345678";
    pub const NO_DIGITS: &str = "a phone number must contain digits";
    pub const BAD_CHARACTER: &str = "use only digits, an optional leading '+', and hyphens, spaces, dots or parentheses as separators";
    pub const PLUS_POSITION: &str = "'+' may appear only once, before the first digit";
    pub const PLUS_ALONE: &str =
        "'+' must be followed by the country code and the number, e.g. +819012345678";
    pub const NO_LEADING_ZERO_OR_PLUS: &str = "Japanese numbers start with 0 (e.g. 090-1234-5678); numbers from other countries start with '+' and the country code";
    pub const INTERNATIONAL_PREFIX_00: &str = "write international numbers with '+' and the country code instead of 00 (only 0081 for Japan is accepted)";
    pub const INTERNATIONAL_PREFIX_010: &str = "010 is the international call prefix: it must be followed by a country code and the number, e.g. 010-81-90-1234-5678 or 010-1-415-555-0123";
    pub const COUNTRY_CODE_ZERO: &str =
        "after '+' comes the country code, and country codes never start with 0";
    pub const INTERNATIONAL_LENGTH: &str = "international numbers have 8 to 15 digits after '+'";
    pub const TRUNK_ZERO_AFTER_81: &str =
        "drop the 0 after the country code 81: +81 90-1234-5678, not +81 090-1234-5678";
    pub const JAPANESE_LENGTH: &str =
        "Japanese numbers have 10 or 11 digits including the leading 0";
    pub const UNUSED_PREFIX: &str = "this Japanese prefix (030, 040 or 0600) is not in use; mobile numbers start 060-1 to 060-9, 070, 080 or 090";
    pub const DIAL_Q2: &str = "0990 (Dial Q2) numbers are discontinued and cannot be called";
    pub const MOBILE_LENGTH: &str = "Japanese mobile numbers (060/070/080/090) have 11 digits";
    pub const IP_PHONE_LENGTH: &str = "Japanese IP phone numbers (050) have 11 digits";
    pub const TOLL_FREE_0120_LENGTH: &str =
        "Japanese toll-free numbers starting 0120 have 10 digits";
    pub const TOLL_FREE_0800_LENGTH: &str =
        "Japanese toll-free numbers starting 0800 have 11 digits";
    pub const NAVI_DIAL_LENGTH: &str = "Japanese navi dial numbers (0570) have 10 digits";
    pub const TELEDOME_LENGTH: &str = "Japanese teledome numbers (0180) have 10 digits";
    pub const M2M_LENGTH: &str = "Japanese M2M numbers (020) have 11 digits";
    pub const LANDLINE_LENGTH: &str =
        "Japanese landline numbers have 10 digits including the area code, e.g. 03-1234-5678";
}

impl PhoneNumber {
    /// Parses Japanese national form (`090-1234-5678`, full-width `０９０－１２３４－５６７８`),
    /// `0081…`, `010-81-…`, `+81 (0)90-…`, or E.164 (`+81 90 1234 5678`, `+14155550123`)
    /// into E.164.
    pub fn parse(input: &str) -> Result<PhoneNumber, PhoneError> {
        normalise(input)
            .and_then(|(plus, digits)| canonical(plus, &digits))
            .map(PhoneNumber)
            .map_err(|rule| PhoneError {
                input: input.to_owned(),
                rule,
            })
    }

    /// The E.164 form, e.g. "+819012345678".
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn class(&self) -> NumberClass {
        if !self.is_japanese() {
            return NumberClass::Foreign;
        }
        self.japanese_kind()
            .map_or(NumberClass::Other, JapaneseKind::class)
    }

    /// For logs: "+8190****5678".
    pub fn masked(&self) -> Masked<'_> {
        Masked(&self.0)
    }

    pub fn is_japanese(&self) -> bool {
        // ITU country codes are prefix-free, so no other country's numbers start +81.
        self.0.starts_with("+81")
    }

    /// Japanese numbers as people in Japan write them: "090-1234-5678", "03-1234-5678",
    /// "0120-123-456". `None` for other countries.
    ///
    /// Landline area codes vary from 2 to 5 digits; without a full area-code table we use a
    /// simple rule: 03 (Tokyo) and 06 (Osaka) are `0X-XXXX-XXXX`, all others `0XX-XXX-XXXX`.
    pub fn national(&self) -> Option<String> {
        let national = self.national_digits()?;
        let kind = JapaneseKind::of(&national).ok()?;
        let [a, b, _] = kind.groups(&national);
        let first = national.get(..a)?;
        let second = national.get(a..a + b)?;
        let third = national.get(a + b..)?;
        Some(format!("{first}-{second}-{third}"))
    }

    /// "+81" + subscriber → "0" + subscriber.
    fn national_digits(&self) -> Option<String> {
        self.0.strip_prefix("+81").map(|rest| format!("0{rest}"))
    }

    fn japanese_kind(&self) -> Option<JapaneseKind> {
        JapaneseKind::of(&self.national_digits()?).ok()
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for PhoneNumber {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PhoneNumber::parse(s)
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PhoneVisitor;

        impl Visitor<'_> for PhoneVisitor {
            type Value = PhoneNumber;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a phone number string such as \"+819012345678\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PhoneNumber, E> {
                PhoneNumber::parse(v).map_err(E::custom)
            }
        }

        // A visitor rather than `String::deserialize` avoids an allocation for borrowed input.
        deserializer.deserialize_str(PhoneVisitor)
    }
}

/// Whether a caller ID Twilio passes as `From` means the caller withheld their number
/// (非通知) rather than naming one. Twilio passes the alpha string (`anonymous`,
/// `restricted`, …) since its change "Upcoming changes to withheld caller ID behavior for
/// <Dial> calls" (changelog, 2022-11-16); before, it translated it to keypad digits
/// (+266696687 spells ANONYMOUS). Both forms, any case, and an empty or absent `From` count.
/// Note that some digit forms look like real numbers (+266 is Lesotho), so this is asked
/// before parsing.
pub fn is_withheld(from: Option<&str>) -> bool {
    const WORDS: [&str; 7] = [
        "anonymous",
        "restricted",
        "unknown",
        "unavailable",
        "private",
        "blocked",
        "withheld",
    ];
    let Some(from) = from.map(str::trim) else {
        return true;
    };
    if from.is_empty() || WORDS.iter().any(|w| from.eq_ignore_ascii_case(w)) {
        return true;
    }
    // The same words on a telephone keypad, with or without '+'.
    let digits = from.strip_prefix('+').unwrap_or(from);
    WORDS.iter().any(|w| keypad(w) == digits)
}

/// A word as keypad digits: ANONYMOUS → 266696687.
fn keypad(word: &str) -> String {
    word.bytes()
        .map(|b| match b.to_ascii_lowercase() {
            b'a'..=b'c' => '2',
            b'd'..=b'f' => '3',
            b'g'..=b'i' => '4',
            b'j'..=b'l' => '5',
            b'm'..=b'o' => '6',
            b'p'..=b's' => '7',
            b't'..=b'v' => '8',
            _ => '9',
        })
        .collect()
}

/// A phone number with its middle hidden, for logs.
#[derive(Clone, Copy)]
pub struct Masked<'a>(&'a str);

impl fmt::Debug for Masked<'_> {
    // Masked too: a derived Debug would print the whole number into `?field` logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Masked({self})")
    }
}

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep "+81" plus two digits (enough to tell mobile from landline) and the last 4.
        // Below 12 characters that would hide fewer than 3 digits, so keep only the last 2.
        const HEAD: usize = 5;
        const TAIL: usize = 4;
        const SHORT_TAIL: usize = 2;
        let len = self.0.chars().count();
        let (head, tail) = if len >= HEAD + TAIL + 3 {
            (HEAD, TAIL)
        } else {
            (0, SHORT_TAIL.min(len))
        };
        let mut out = String::with_capacity(len);
        for (i, c) in self.0.chars().enumerate() {
            out.push(if i < head || i >= len - tail { c } else { '*' });
        }
        f.pad(&out)
    }
}

/// Japanese number kinds, each with its exact length. Finer than `NumberClass` because the
/// two toll-free prefixes differ in length and layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JapaneseKind {
    Mobile,
    IpPhone,
    TollFree0120,
    TollFree0800,
    NaviDial,
    Teledome,
    M2m,
    Landline,
}

impl JapaneseKind {
    /// Classifies by prefix alone; the length is checked separately so the error can say
    /// which length that prefix needs.
    fn of(national: &str) -> Result<JapaneseKind, &'static str> {
        // Four-digit prefixes first: 0800 would otherwise read as mobile 080, 0990 as
        // Kagoshima's 099, 0120 and 0570 as landline area codes.
        // 0180 likewise before Akita's 018: no subscriber number starts with 0, so no landline
        // can start 0180. 0600 before 060: only 060-1… to 060-9… are mobile (MIC, 2024-12-20).
        const PREFIXES: [(&str, Result<JapaneseKind, &str>); 14] = [
            ("0120", Ok(JapaneseKind::TollFree0120)),
            ("0800", Ok(JapaneseKind::TollFree0800)),
            ("0570", Ok(JapaneseKind::NaviDial)),
            ("0180", Ok(JapaneseKind::Teledome)),
            ("0990", Err(rule::DIAL_Q2)),
            ("0600", Err(rule::UNUSED_PREFIX)),
            ("060", Ok(JapaneseKind::Mobile)),
            ("070", Ok(JapaneseKind::Mobile)),
            ("080", Ok(JapaneseKind::Mobile)),
            ("090", Ok(JapaneseKind::Mobile)),
            ("050", Ok(JapaneseKind::IpPhone)),
            ("020", Ok(JapaneseKind::M2m)),
            ("010", Err(rule::INTERNATIONAL_PREFIX_010)),
            ("00", Err(rule::INTERNATIONAL_PREFIX_00)),
        ];
        if let Some((_, kind)) = PREFIXES.iter().find(|(p, _)| national.starts_with(p)) {
            return *kind;
        }
        match national.as_bytes() {
            [b'0', b'1'..=b'9', b'0', ..] => Err(rule::UNUSED_PREFIX),
            [b'0', b'1'..=b'9', ..] => Ok(JapaneseKind::Landline),
            _ => Err(rule::JAPANESE_LENGTH),
        }
    }

    fn digits(self) -> usize {
        match self {
            JapaneseKind::TollFree0120
            | JapaneseKind::NaviDial
            | JapaneseKind::Teledome
            | JapaneseKind::Landline => 10,
            JapaneseKind::Mobile
            | JapaneseKind::IpPhone
            | JapaneseKind::TollFree0800
            | JapaneseKind::M2m => 11,
        }
    }

    fn length_rule(self) -> &'static str {
        match self {
            JapaneseKind::Mobile => rule::MOBILE_LENGTH,
            JapaneseKind::IpPhone => rule::IP_PHONE_LENGTH,
            JapaneseKind::TollFree0120 => rule::TOLL_FREE_0120_LENGTH,
            JapaneseKind::TollFree0800 => rule::TOLL_FREE_0800_LENGTH,
            JapaneseKind::NaviDial => rule::NAVI_DIAL_LENGTH,
            JapaneseKind::Teledome => rule::TELEDOME_LENGTH,
            JapaneseKind::M2m => rule::M2M_LENGTH,
            JapaneseKind::Landline => rule::LANDLINE_LENGTH,
        }
    }

    fn class(self) -> NumberClass {
        match self {
            JapaneseKind::Mobile => NumberClass::Mobile,
            JapaneseKind::IpPhone => NumberClass::IpPhone,
            JapaneseKind::TollFree0120 | JapaneseKind::TollFree0800 => NumberClass::TollFree,
            JapaneseKind::Landline => NumberClass::Landline,
            JapaneseKind::NaviDial | JapaneseKind::Teledome => NumberClass::SpecialService,
            JapaneseKind::M2m => NumberClass::Other,
        }
    }

    /// Digit group sizes for the hyphenated national form.
    fn groups(self, national: &str) -> [usize; 3] {
        match self {
            JapaneseKind::Mobile | JapaneseKind::IpPhone | JapaneseKind::M2m => [3, 4, 4],
            JapaneseKind::TollFree0800 => [4, 3, 4],
            JapaneseKind::TollFree0120 | JapaneseKind::NaviDial | JapaneseKind::Teledome => {
                [4, 3, 3]
            }
            JapaneseKind::Landline if national.starts_with("03") || national.starts_with("06") => {
                [2, 4, 4]
            }
            JapaneseKind::Landline => [3, 3, 4],
        }
    }
}

/// Strips separators and folds full-width characters: returns whether a leading '+' was
/// present, and the ASCII digits.
fn normalise(input: &str) -> Result<(bool, String), &'static str> {
    let input = input.trim();
    if input.is_empty() {
        return Err(rule::EMPTY);
    }
    let mut plus = false;
    let mut digits = String::with_capacity(input.len());
    // Where the digits stood at the last opening parenthesis, to recognise `+81 (0)…`.
    let mut open_at: Option<usize> = None;
    for c in input.chars() {
        match c {
            '0'..='9' => digits.push(c),
            // Full-width digits, as typed with a Japanese IME. The arm bounds the offset to
            // 0..=9, so the cast cannot truncate.
            '０'..='９' => digits.push(char::from(b'0' + (u32::from(c) - u32::from('０')) as u8)),
            '+' | '＋' if plus || !digits.is_empty() => return Err(rule::PLUS_POSITION),
            '+' | '＋' => plus = true,
            // Hyphen look-alikes: ASCII, full-width, katakana long vowel marks (IMEs turn
            // '-' into 'ー'), Unicode hyphens and dashes, minus.
            '-' | '－' | 'ー' | 'ｰ' | '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' => {
            }
            '(' | '（' => open_at = Some(digits.len()),
            // `+81 (0)90-…`, the business-card form: the parenthesised 0 is the trunk prefix
            // dialled only from inside Japan, so it is dropped.
            ')' | '）' => {
                if let Some(at) = open_at.take()
                    && plus
                    && digits.get(..at) == Some("81")
                    && digits.get(at..) == Some("0")
                {
                    digits.truncate(at);
                }
            }
            '.' | '．' => {}
            c if c.is_whitespace() => {}
            _ => return Err(rule::BAD_CHARACTER),
        }
    }
    Ok((plus, digits))
}

/// Digits (after normalisation) to E.164.
fn canonical(plus: bool, digits: &str) -> Result<String, &'static str> {
    if digits.is_empty() {
        return Err(if plus {
            rule::PLUS_ALONE
        } else {
            rule::NO_DIGITS
        });
    }
    if plus {
        if let Some(subscriber) = digits.strip_prefix("81") {
            return japanese_subscriber(subscriber);
        }
        if digits.starts_with('0') {
            return Err(rule::COUNTRY_CODE_ZERO);
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(rule::INTERNATIONAL_LENGTH);
        }
        return Ok(format!("+{digits}"));
    }
    if let Some(subscriber) = digits.strip_prefix("0081") {
        return japanese_subscriber(subscriber);
    }
    // 010 is Japan's international call prefix: 010-81-… is a Japanese number, 010 and any
    // other country code that country's.
    if let Some(international) = digits.strip_prefix("010") {
        if international.is_empty() || international.starts_with('0') {
            return Err(rule::INTERNATIONAL_PREFIX_010);
        }
        return canonical(true, international);
    }
    if !digits.starts_with('0') {
        return Err(rule::NO_LEADING_ZERO_OR_PLUS);
    }
    japanese_national(digits)
}

/// The digits after country code 81.
fn japanese_subscriber(subscriber: &str) -> Result<String, &'static str> {
    if subscriber.starts_with('0') {
        return Err(rule::TRUNK_ZERO_AFTER_81);
    }
    japanese_national(&format!("0{subscriber}"))
}

/// National digits, trunk 0 included, to E.164.
fn japanese_national(national: &str) -> Result<String, &'static str> {
    let kind = JapaneseKind::of(national)?;
    if national.len() != kind.digits() {
        return Err(kind.length_rule());
    }
    let subscriber = national.strip_prefix('0').ok_or(rule::JAPANESE_LENGTH)?;
    Ok(format!("+81{subscriber}"))
}

/// `text` with every phone number in it masked: E.164 (`+` and 8 to 15 digits) and Japanese
/// national numbers (`090-1234-5678`, `0312345678`) standing as words of their own. The logs'
/// safety net, for a number that reached a message or a field without going through
/// [`PhoneNumber::masked`].
pub fn mask_in_text(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let word = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric());
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let starts = matches!(bytes[i], b'+' | b'0') && (i == 0 || !word(i - 1));
        if !starts {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'-') {
            end += 1;
        }
        while end > start + 1 && bytes[end - 1] == b'-' {
            end -= 1;
        }
        let token = &text[start..end];
        let digits = token.bytes().filter(u8::is_ascii_digit).count();
        let masked = if word(end) {
            None
        } else if let Ok(n) = PhoneNumber::parse(token) {
            Some(n.masked().to_string())
        } else if token.starts_with('+') && (8..=15).contains(&digits) {
            Some(Masked(token).to_string())
        } else {
            None
        };
        if let Some(m) = masked {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(&text[copied..start]);
            o.push_str(&m);
            copied = end;
        }
        i = end.max(start + 1);
    }
    match out {
        Some(mut o) => {
            o.push_str(&text[copied..]);
            std::borrow::Cow::Owned(o)
        }
        None => std::borrow::Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> PhoneNumber {
        match PhoneNumber::parse(input) {
            Ok(n) => n,
            Err(e) => panic!("{input:?} should parse: {e}"),
        }
    }

    fn rejected(input: &str) -> &'static str {
        match PhoneNumber::parse(input) {
            Ok(n) => panic!("{input:?} should be rejected, got {n}"),
            Err(e) => {
                assert_eq!(e.input, input, "the error keeps the raw input");
                e.rule
            }
        }
    }

    /// The numbering plan, one row per input: what people type, the E.164 number it becomes
    /// and the class it is priced as.
    const PLAN: &[(&str, &str, NumberClass)] = &[
        // Mobile: 070/080/090, and 060-1… to 060-9… since MIC's change of 2024-12-20.
        ("090-1234-5678", "+819012345678", NumberClass::Mobile),
        ("080-1234-5678", "+818012345678", NumberClass::Mobile),
        ("070-1234-5678", "+817012345678", NumberClass::Mobile),
        ("060-1234-5678", "+816012345678", NumberClass::Mobile),
        ("060-9876-5432", "+816098765432", NumberClass::Mobile),
        ("06012345678", "+816012345678", NumberClass::Mobile),
        ("+81 60-1234-5678", "+816012345678", NumberClass::Mobile),
        ("+816012345678", "+816012345678", NumberClass::Mobile),
        // The business-card form, with the trunk zero in parentheses.
        ("+81 (0)90-1234-5678", "+819012345678", NumberClass::Mobile),
        ("+81(0)60-1234-5678", "+816012345678", NumberClass::Mobile),
        ("+81 (0)3-1234-5678", "+81312345678", NumberClass::Landline),
        (
            "＋８１（０）９０－１２３４－５６７８",
            "+819012345678",
            NumberClass::Mobile,
        ),
        ("+81 (0) 120-123-456", "+81120123456", NumberClass::TollFree),
        // Japan's international prefixes: 0081 and 010.
        ("010-81-90-1234-5678", "+819012345678", NumberClass::Mobile),
        ("010 81 3 1234 5678", "+81312345678", NumberClass::Landline),
        ("0081-60-1234-5678", "+816012345678", NumberClass::Mobile),
        ("010-1-415-555-0123", "+14155550123", NumberClass::Foreign),
        // Landlines (0ABJ).
        ("03-1234-5678", "+81312345678", NumberClass::Landline),
        ("06-1234-5678", "+81612345678", NumberClass::Landline),
        ("011-123-4567", "+81111234567", NumberClass::Landline),
        ("045-123-4567", "+81451234567", NumberClass::Landline),
        ("099-123-4567", "+81991234567", NumberClass::Landline),
        ("018-123-4567", "+81181234567", NumberClass::Landline),
        ("0154-12-3456", "+81154123456", NumberClass::Landline),
        ("+81312345678", "+81312345678", NumberClass::Landline),
        // IP phones and toll-free.
        ("050-1234-5678", "+815012345678", NumberClass::IpPhone),
        ("+815031234567", "+815031234567", NumberClass::IpPhone),
        ("0120-123-456", "+81120123456", NumberClass::TollFree),
        ("0800-123-4567", "+818001234567", NumberClass::TollFree),
        ("+818001234567", "+818001234567", NumberClass::TollFree),
        // Special services: navi dial and teledome, not landlines.
        ("0570-123-456", "+81570123456", NumberClass::SpecialService),
        ("0570-064-556", "+81570064556", NumberClass::SpecialService),
        ("0180-123-456", "+81180123456", NumberClass::SpecialService),
        ("+81180993456", "+81180993456", NumberClass::SpecialService),
        ("+81570123456", "+81570123456", NumberClass::SpecialService),
        // M2M.
        ("020-1234-5678", "+812012345678", NumberClass::Other),
        // Other countries.
        ("+1 (415) 555-0123", "+14155550123", NumberClass::Foreign),
        ("+44 20 7946 0958", "+442079460958", NumberClass::Foreign),
        ("+82 2-1234-5678", "+82212345678", NumberClass::Foreign),
    ];

    #[test]
    fn numbering_plan_table() {
        assert!(PLAN.len() >= 30, "the plan covers at least 30 inputs");
        for (input, e164, class) in PLAN {
            let n = ok(input);
            assert_eq!(n.as_str(), *e164, "{input:?}");
            assert_eq!(n.class(), *class, "{input:?}");
            assert_eq!(n.is_japanese(), *class != NumberClass::Foreign, "{input:?}");
            // E.164 output parses back to itself, with the same class.
            assert_eq!(ok(e164).class(), *class, "{e164}");
        }
    }

    #[test]
    fn only_060_1_to_060_9_are_mobile() {
        for d in '1'..='9' {
            let input = format!("060-{d}234-5678");
            assert_eq!(ok(&input).class(), NumberClass::Mobile, "{input}");
        }
        assert_eq!(rejected("060-0234-5678"), rule::UNUSED_PREFIX);
        assert_eq!(rejected("060-1234-567"), rule::MOBILE_LENGTH);
        assert_eq!(rejected("+81 60 0123 4567"), rule::UNUSED_PREFIX);
    }

    #[test]
    fn parenthesised_zero_is_only_the_trunk_prefix_after_81() {
        // Elsewhere parentheses are separators and every digit counts.
        assert_eq!(ok("(090) 1234-5678").as_str(), "+819012345678");
        assert_eq!(ok("+81 (90) 1234-5678").as_str(), "+819012345678");
        assert_eq!(rejected("+81 0 90-1234-5678"), rule::TRUNK_ZERO_AFTER_81);
        assert_eq!(rejected("+81 (0)0-1234-5678"), rule::TRUNK_ZERO_AFTER_81);
    }

    #[test]
    fn separators_and_full_width_characters_are_normalised() {
        for input in [
            "09012345678",
            "090 1234 5678",
            "090.1234.5678",
            "(090) 1234-5678",
            "  090-1234-5678\t",
            "０９０－１２３４－５６７８",
            "０９０ー１２３４ー５６７８",
            "090‐1234‐5678",
            "090−1234−5678",
            "090–1234—5678",
            "090　1234　5678",
            "+81 90-1234-5678",
            "+81(90)1234-5678",
            "＋８１９０１２３４５６７８",
            "0081-90-1234-5678",
        ] {
            assert_eq!(ok(input).as_str(), "+819012345678", "{input:?}");
        }
        assert_eq!(ok("０３（１２３４）５６７８").as_str(), "+81312345678");
    }

    #[test]
    fn other_countries_are_kept_as_e164() {
        let n = ok("+1 (415) 555-0123");
        assert_eq!(n.as_str(), "+14155550123");
        assert_eq!(n.class(), NumberClass::Foreign);
        assert!(!n.is_japanese());
        assert_eq!(n.national(), None);
        assert_eq!(ok("+44 20 7946 0958").as_str(), "+442079460958");
        assert_eq!(
            ok("+12345678").as_str(),
            "+12345678",
            "8 digits is the minimum"
        );
        assert_eq!(
            ok("+123456789012345").as_str(),
            "+123456789012345",
            "15 is the max"
        );
    }

    #[test]
    fn general_rejections_name_the_rule() {
        assert_eq!(rejected(""), rule::EMPTY);
        assert_eq!(rejected("   "), rule::EMPTY);
        assert_eq!(rejected("--"), rule::NO_DIGITS);
        assert_eq!(rejected("+"), rule::PLUS_ALONE);
        assert_eq!(rejected("+ -"), rule::PLUS_ALONE);
        assert_eq!(rejected("090-1234-567a"), rule::BAD_CHARACTER);
        assert_eq!(rejected("tel:09012345678"), rule::BAD_CHARACTER);
        assert_eq!(rejected("090/1234/5678"), rule::BAD_CHARACTER);
        assert_eq!(rejected("++819012345678"), rule::PLUS_POSITION);
        assert_eq!(rejected("81+9012345678"), rule::PLUS_POSITION);
        assert_eq!(rejected("9012345678"), rule::NO_LEADING_ZERO_OR_PLUS);
        assert_eq!(rejected("0044 20 7946 0958"), rule::INTERNATIONAL_PREFIX_00);
        assert_eq!(rejected("010"), rule::INTERNATIONAL_PREFIX_010);
        assert_eq!(rejected("010-0-1234-5678"), rule::INTERNATIONAL_PREFIX_010);
        assert_eq!(rejected("010-1-234"), rule::INTERNATIONAL_LENGTH);
        assert_eq!(rejected("010-81-090-1234-5678"), rule::TRUNK_ZERO_AFTER_81);
    }

    #[test]
    fn international_rejections() {
        assert_eq!(rejected("+0123456789"), rule::COUNTRY_CODE_ZERO);
        assert_eq!(rejected("+1234567"), rule::INTERNATIONAL_LENGTH);
        assert_eq!(rejected("+1234567890123456"), rule::INTERNATIONAL_LENGTH);
        assert_eq!(
            rejected("+1 234 567 890 123 456 789 0"),
            rule::INTERNATIONAL_LENGTH
        );
    }

    #[test]
    fn trunk_zero_after_81_is_a_named_mistake() {
        assert_eq!(rejected("+81 090-1234-5678"), rule::TRUNK_ZERO_AFTER_81);
        assert_eq!(rejected("+810312345678"), rule::TRUNK_ZERO_AFTER_81);
        assert_eq!(rejected("0081-090-1234-5678"), rule::TRUNK_ZERO_AFTER_81);
    }

    #[test]
    fn japanese_length_rules_follow_the_prefix() {
        assert_eq!(rejected("090-1234-567"), rule::MOBILE_LENGTH);
        assert_eq!(rejected("080-1234-56789"), rule::MOBILE_LENGTH);
        assert_eq!(rejected("+81 70 1234 567"), rule::MOBILE_LENGTH);
        assert_eq!(rejected("050-1234-567"), rule::IP_PHONE_LENGTH);
        assert_eq!(rejected("0120-123-4567"), rule::TOLL_FREE_0120_LENGTH);
        assert_eq!(rejected("0800-123-456"), rule::TOLL_FREE_0800_LENGTH);
        assert_eq!(rejected("0570-123-4567"), rule::NAVI_DIAL_LENGTH);
        assert_eq!(rejected("0180-123-4567"), rule::TELEDOME_LENGTH);
        assert_eq!(rejected("020-1234-567"), rule::M2M_LENGTH);
        assert_eq!(rejected("03-1234-567"), rule::LANDLINE_LENGTH);
        assert_eq!(rejected("03-1234-56789"), rule::LANDLINE_LENGTH);
        assert_eq!(rejected("0"), rule::JAPANESE_LENGTH);
        assert_eq!(rejected("+81"), rule::JAPANESE_LENGTH);
    }

    #[test]
    fn unknown_and_discontinued_prefixes_are_rejected() {
        assert_eq!(rejected("0990-123-456"), rule::DIAL_Q2);
        assert_eq!(rejected("030-1234-5678"), rule::UNUSED_PREFIX);
        assert_eq!(rejected("040-123-4567"), rule::UNUSED_PREFIX);
        assert_eq!(rejected("0600-123-4567"), rule::UNUSED_PREFIX);
    }

    #[test]
    fn withheld_caller_ids_are_recognised_in_every_form() {
        for from in [
            "anonymous",
            "Anonymous",
            "ANONYMOUS",
            "restricted",
            "Unknown",
            "unavailable",
            "private",
            "+266696687",
            "266696687",
            "+7378742833",
            "+86282452253",
            "",
            "  ",
        ] {
            assert!(is_withheld(Some(from)), "{from:?}");
        }
        assert!(is_withheld(None));
        for from in [
            "+819012345678",
            "090-1234-5678",
            "+14155550123",
            "+266696688",
        ] {
            assert!(!is_withheld(Some(from)), "{from:?}");
        }
        assert_eq!(keypad("anonymous"), "266696687");
    }

    #[test]
    fn error_message_quotes_input_and_rule() {
        let err = PhoneNumber::parse("090-1234").err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "\"090-1234\" is not a valid phone number: \
                 Japanese mobile numbers (060/070/080/090) have 11 digits"
            )
        );
    }

    #[test]
    fn numbers_in_free_text_are_masked() {
        assert_eq!(
            mask_in_text("from +819012345678 to 090-1234-5678, then 03-1234-5678."),
            "from +8190****5678 to +8190****5678, then +8131***5678."
        );
        assert_eq!(mask_in_text("+14155550123"), "+1415***0123");
    }

    #[test]
    fn text_without_numbers_is_left_alone() {
        for text in [
            "session KS0123456789abcdef0123456789abcdef",
            "CA0901234567890 and 2026-11-24T20:30:00Z",
            "duration 065 s, cost 32.4",
            "",
        ] {
            assert!(
                matches!(mask_in_text(text), std::borrow::Cow::Borrowed(_)),
                "{text}"
            );
        }
    }

    #[test]
    fn masking_keeps_country_code_prefix_and_last_four() {
        assert_eq!(ok("090-1234-5678").masked().to_string(), "+8190****5678");
        assert_eq!(ok("03-1234-5678").masked().to_string(), "+8131***5678");
        assert_eq!(ok("+14155550123").masked().to_string(), "+1415***0123");
        assert_eq!(ok("+442079460958").masked().to_string(), "+4420****0958");
    }

    #[test]
    fn masking_short_numbers_keeps_only_last_two() {
        assert_eq!(ok("+12345678").masked().to_string(), "*******78");
        assert_eq!(ok("+1234567890").masked().to_string(), "*********90");
        assert_eq!(Masked("1").to_string(), "1");
        assert_eq!(Masked("").to_string(), "");
    }

    #[test]
    fn masked_output_never_contains_the_full_number() {
        let n = ok("090-1234-5678");
        let masked = n.masked().to_string();
        assert!(!masked.contains("12345678"));
        assert_eq!(masked.len(), n.as_str().len());
        assert_eq!(format!("{:?}", n.masked()), "Masked(+8190****5678)");
    }

    #[test]
    fn national_form_groups_digits() {
        let cases = [
            ("+819012345678", "090-1234-5678"),
            ("+815012345678", "050-1234-5678"),
            ("+812012345678", "020-1234-5678"),
            ("+81312345678", "03-1234-5678"),
            ("+81612345678", "06-1234-5678"),
            ("+81451234567", "045-123-4567"),
            ("+81120123456", "0120-123-456"),
            ("+818001234567", "0800-123-4567"),
            ("+81570123456", "0570-123-456"),
            ("+81180123456", "0180-123-456"),
            ("+816012345678", "060-1234-5678"),
        ];
        for (e164, national) in cases {
            assert_eq!(ok(e164).national().as_deref(), Some(national), "{e164}");
        }
    }

    #[test]
    fn national_form_reparses_to_the_same_number() {
        for input in [
            "+819012345678",
            "+81312345678",
            "+81120123456",
            "+818001234567",
        ] {
            let n = ok(input);
            let national = n.national().unwrap_or_default();
            assert_eq!(ok(&national), n);
        }
    }

    #[test]
    fn display_and_from_str() {
        let n: Result<PhoneNumber, _> = "090-1234-5678".parse();
        assert_eq!(
            n.map(|n| n.to_string()).ok().as_deref(),
            Some("+819012345678")
        );
        assert!("nope".parse::<PhoneNumber>().is_err());
    }

    #[test]
    fn number_class_strings_match_serde() {
        for class in [
            NumberClass::Mobile,
            NumberClass::Landline,
            NumberClass::IpPhone,
            NumberClass::TollFree,
            NumberClass::Other,
            NumberClass::SpecialService,
            NumberClass::Foreign,
        ] {
            let json = serde_json::to_string(&class).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            let back: NumberClass = serde_json::from_str(&json).unwrap_or(NumberClass::Other);
            assert_eq!(back, class);
        }
        assert_eq!(NumberClass::IpPhone.as_str(), "ip-phone");
        assert_eq!(NumberClass::TollFree.to_string(), "toll-free");
        assert_eq!(NumberClass::SpecialService.as_str(), "special-service");
        assert_eq!(NumberClass::Foreign.as_str(), "foreign");
    }

    #[test]
    fn serde_round_trip_uses_e164() -> Result<(), serde_json::Error> {
        let n = ok("090-1234-5678");
        let json = serde_json::to_string(&n)?;
        assert_eq!(json, "\"+819012345678\"");
        let back: PhoneNumber = serde_json::from_str(&json)?;
        assert_eq!(back, n);
        // Deserializing also normalises, as the API accepts national form.
        let national: PhoneNumber = serde_json::from_str("\"03-1234-5678\"")?;
        assert_eq!(national.as_str(), "+81312345678");
        // Owned strings (escapes, `from_value`) work as well as borrowed ones.
        let escaped: PhoneNumber = serde_json::from_str("\"\\u002b819012345678\"")?;
        assert_eq!(escaped, n);
        let from_value: PhoneNumber = serde_json::from_value(serde_json::json!("+819012345678"))?;
        assert_eq!(from_value, n);
        Ok(())
    }

    #[test]
    fn serde_rejects_invalid_numbers_with_the_rule() {
        let err = serde_json::from_str::<PhoneNumber>("\"090-1234\"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(rule::MOBILE_LENGTH), "{err}");
        assert!(err.contains("\"090-1234\""), "{err}");
        assert!(serde_json::from_str::<PhoneNumber>("9012345678").is_err());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Any string, and strings shaped like numbers (national, E.164, full-width, with
        /// separators), so that many inputs parse.
        fn input() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "0[0-9]{1,3}[- ]?[0-9]{2,4}[- ]?[0-9]{3,5}",
                "\\+[0-9 ]{2,18}",
                "(00|\\+)81[- ]?[1-9][0-9]{7,10}",
                "[０-９－ ]{10,14}",
            ]
        }

        proptest! {
            #[test]
            fn parsing_never_panics_and_a_parsed_number_is_e164_and_reparses_to_itself(s in input()) {
                if let Ok(n) = PhoneNumber::parse(&s) {
                    let e164 = n.as_str();
                    prop_assert!(e164.starts_with('+'), "{e164}");
                    prop_assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()), "{e164}");
                    prop_assert!((2..=16).contains(&e164.len()), "{e164}");
                    prop_assert_eq!(PhoneNumber::parse(e164), Ok(n.clone()));
                    // What the masked form and the class give must not panic either.
                    let _ = (n.masked().to_string(), n.class(), n.national());
                }
            }
        }
    }
}
