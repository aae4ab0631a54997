//! The records Tsunagu keeps: sessions with their participants, proxy numbers, and one
//! interaction per call leg. Stored as DynamoDB items by `store`, shown by `api`.

use serde::{Deserialize, Serialize};

use crate::phone::{NumberClass, PhoneNumber};
use crate::pricing::{Direction, Yen};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionStatus {
    Open,
    InProgress,
    Closed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::InProgress => "in-progress",
            Self::Closed => "closed",
        }
    }

    /// Open sessions route calls; closed ones never do.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Open | Self::InProgress)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub sid: String,
    pub identifier: PhoneNumber,
    pub proxy_identifier: PhoneNumber,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// Text spoken to this participant when they answer a call placed to them, before the
    /// call connects (at most 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<String>,
    /// Audio (https) played instead of `announcement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement_url: Option<String>,
}

/// What a participant hears first when they answer a call placed to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement<'a> {
    Say(&'a str),
    Play(&'a str),
}

impl Participant {
    pub fn announcement(&self) -> Option<Announcement<'_>> {
        match (&self.announcement, &self.announcement_url) {
            (_, Some(url)) => Some(Announcement::Play(url)),
            (Some(text), None) => Some(Announcement::Say(text)),
            (None, None) => None,
        }
    }
}

/// The notice both parties of a recorded call hear before they are connected, unless the
/// session names its own.
pub const DEFAULT_RECORDING_ANNOUNCEMENT: &str =
    "この通話は、サービス品質の向上のために録音させていただきます。";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub seconds: u64,
    pub max_count: u32,
}

/// A session as stored. Times are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    pub status: SessionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_reason: Option<String>,
    pub mode: String,
    /// Seconds of inactivity after which the session closes; 0 = no limit.
    pub ttl: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_expiry: Option<i64>,
    pub date_created: i64,
    pub date_updated: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_last_interaction: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_time_limit: Option<u64>,
    pub warning_lead: u64,
    pub extension: Extension,
    #[serde(default)]
    pub extension_count: u32,
    pub participants: Vec<Participant>,
    /// The sum of its legs' costs, kept by the same writes that finish each leg.
    #[serde(default)]
    pub total_cost_milli_yen: u64,
    /// Thousandths of a yen the live call may cost at most (`max_cost`); none: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_milli_yen: Option<u64>,
    /// The ConferenceSid of the session's latest conference, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_conference: Option<String>,
    /// The participant who hears the end-of-call warning and may press 1 (default: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decider: Option<String>,
    /// The live call: its mode, its length limit and the instant it must end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_call: Option<LiveCall>,
    /// Every call of the session is recorded (and both parties told first).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
    /// The recording notice of a recorded session (the default text when none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_announcement: Option<String>,
    /// When a closed session was last reopened: its inactivity counts from then at least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_reopened: Option<i64>,
}

/// A call in progress under a time limit.
/// How a call's parties are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallMode {
    /// The answered party's call dials the other (`<Dial>`): no announcement possible.
    Bridge,
    /// Every answered party joins the session's room, which can carry the warning.
    Conference,
}

impl CallMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CallMode::Bridge => "bridge",
            CallMode::Conference => "conference",
        }
    }
}

/// Twilio's own direction of a call leg (its `Direction` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TwilioDirection {
    /// A caller dialled a proxy number.
    Inbound,
    /// Placed through the REST API (V字発信, or calling the other party into a room).
    OutboundApi,
    /// Dialled by another leg's `<Dial>`.
    OutboundDial,
}

impl TwilioDirection {
    /// Twilio's value; anything else is taken as a dialled leg, the one kind whose callback
    /// may come without its own direction.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("inbound") => TwilioDirection::Inbound,
            Some("outbound-api") => TwilioDirection::OutboundApi,
            _ => TwilioDirection::OutboundDial,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TwilioDirection::Inbound => "inbound",
            TwilioDirection::OutboundApi => "outbound-api",
            TwilioDirection::OutboundDial => "outbound-dial",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCall {
    pub mode: CallMode,
    /// Seconds the call may last, from when both parties are connected.
    pub limit: u64,
    /// When the call must end; set once both are connected, moved by extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// The deadline a warning was given (or found impossible) for: at most once each (I4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warned_for: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<WarningOutcome>,
    /// The deadline the short notice before the end was given for: at most once each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noticed_for: Option<i64>,
}

/// What became of the end-of-call warning for one deadline, as stored on the live call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WarningOutcome {
    /// The other party was put on hold and the deciding party heard the prompt.
    #[serde(rename = "given")]
    Given,
    /// A bridge call (`<Dial>`) cannot carry an announcement.
    #[serde(rename = "not-possible: bridge calls cannot carry an announcement")]
    NotPossibleBridge,
    /// The deciding participant was not in the room to hear it.
    #[serde(rename = "not-possible: the deciding participant is not in the room")]
    NotPossibleAbsent,
}

impl WarningOutcome {
    /// The stored value (the same strings as before the type existed).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Given => "given",
            Self::NotPossibleBridge => "not-possible: bridge calls cannot carry an announcement",
            Self::NotPossibleAbsent => "not-possible: the deciding participant is not in the room",
        }
    }
}

impl Session {
    /// What both parties hear before a recorded call connects; `None` when not recorded.
    pub fn recording_notice(&self) -> Option<&str> {
        self.record.then(|| {
            self.recording_announcement
                .as_deref()
                .unwrap_or(DEFAULT_RECORDING_ANNOUNCEMENT)
        })
    }

    /// Calls of this session end at a limit and get a spoken warning first, so they run
    /// through a conference (an announcement needs one).
    pub fn is_timed(&self) -> bool {
        self.warning_lead > 0 && (self.call_time_limit.is_some() || self.date_expiry.is_some())
    }

    /// The participant who decides on extensions.
    pub fn decider(&self) -> Option<&Participant> {
        self.decider
            .as_deref()
            .and_then(|sid| self.participant(sid))
            .or_else(|| self.participants.first())
    }

    pub fn total_cost(&self) -> Yen {
        Yen::from_milli(self.total_cost_milli_yen)
    }

    pub fn max_cost(&self) -> Option<Yen> {
        self.max_cost_milli_yen.map(Yen::from_milli)
    }

    pub fn participant(&self, sid_or_identifier: &str) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|p| p.sid == sid_or_identifier || p.identifier.as_str() == sid_or_identifier)
    }

    /// The other participant of a two-party session.
    pub fn other(&self, participant_sid: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.sid != participant_sid)
    }

    /// When inactivity closes the session, if it has a ttl: from the last interaction, or
    /// from creation when there has been none.
    pub fn inactive_after(&self) -> Option<i64> {
        let since = self.date_last_interaction.unwrap_or(self.date_created);
        let since = self.date_reopened.map_or(since, |r| since.max(r));
        (self.ttl > 0).then(|| since + self.ttl as i64)
    }

    /// This session with its end moved by `seconds`: its `date_expiry` and its live call's
    /// deadline, whichever it has.
    pub fn extended_by(&self, seconds: i64) -> Session {
        let mut moved = self.clone();
        moved.date_expiry = self.date_expiry.map(|e| e.saturating_add(seconds));
        if let Some(live) = moved.live_call.as_mut() {
            live.deadline = live.deadline.map(|d| d.saturating_add(seconds));
        }
        moved
    }

    /// The instant the session stops routing: the earlier of `date_expiry` and the ttl.
    pub fn deadline(&self) -> Option<i64> {
        match (self.date_expiry, self.inactive_after()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A proxy number in the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyNumber {
    pub phone_number: PhoneNumber,
    /// Reserved numbers are never allocated automatically, only when a request names them.
    pub is_reserved: bool,
    /// How many open sessions use this number.
    pub in_use: u64,
    pub date_created: i64,
    pub date_updated: i64,
}

/// Twilio call statuses in the order a leg passes through them; the order makes callbacks
/// that arrive late or twice harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "initiated" => Self::Initiated,
            "ringing" => Self::Ringing,
            "in-progress" | "answered" => Self::InProgress,
            "completed" => Self::Completed,
            "busy" => Self::Busy,
            "no-answer" => Self::NoAnswer,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Progress rank: a stored status is only replaced by a higher one. All final statuses
    /// share the top rank, so the first final callback wins.
    pub fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Initiated => 1,
            Self::Ringing => 2,
            Self::InProgress => 3,
            _ => 4,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 4
    }
}

/// One call leg: who called whom (masked), how it went and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub sid: String,
    pub session_sid: String,
    pub call_sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_call_sid: Option<String>,
    pub direction: Direction,
    pub twilio_direction: TwilioDirection,
    pub from_masked: String,
    pub to_masked: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_participant_sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_participant_sid: Option<String>,
    pub callee_class: NumberClass,
    pub status: CallStatus,
    pub duration: u64,
    pub billed_minutes: u64,
    /// Thousandths of a yen, exact in the table; see `cost()`.
    pub cost_milli_yen: u64,
    pub date_created: i64,
    pub date_updated: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_ended: Option<i64>,
    /// The call's recording, once Twilio has posted it (`recording-status`); the media stays
    /// in the Twilio account.
    #[serde(flatten)]
    pub recording: RecordingRef,
}

/// Where a leg's recording is: the attributes `recording-status` writes on the interaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_channels: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
}

impl Interaction {
    pub fn cost(&self) -> Yen {
        Yen::from_milli(self.cost_milli_yen)
    }
}

/// A session of KP1 (090-1234-5678) and KP2 (080-9876-5432) on 050-3123-4567, for unit
/// tests of the logic that reads sessions.
#[cfg(test)]
pub(crate) fn sample_session() -> Session {
    let p = |sid: &str, n: &str| Participant {
        sid: sid.into(),
        identifier: PhoneNumber::parse(n).unwrap(),
        proxy_identifier: PhoneNumber::parse("050-3123-4567").unwrap(),
        friendly_name: None,
        announcement: None,
        announcement_url: None,
    };
    Session {
        sid: "KC0123456789abcdef0123456789abcdef".into(),
        unique_name: None,
        status: SessionStatus::Open,
        closed_reason: None,
        mode: "voice-only".into(),
        ttl: 0,
        date_expiry: None,
        date_created: 0,
        date_updated: 0,
        date_last_interaction: None,
        call_time_limit: None,
        warning_lead: 180,
        extension: Extension {
            seconds: 300,
            max_count: 1,
        },
        extension_count: 0,
        participants: vec![p("KP1", "090-1234-5678"), p("KP2", "080-9876-5432")],
        total_cost_milli_yen: 0,
        max_cost_milli_yen: None,
        current_conference: None,
        decider: None,
        live_call: None,
        record: false,
        recording_announcement: None,
        date_reopened: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_status_round_trips_and_an_unknown_one_is_refused_by_name() {
        for status in [
            SessionStatus::Open,
            SessionStatus::InProgress,
            SessionStatus::Closed,
        ] {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(
                serde_json::from_str::<SessionStatus>(&json).unwrap(),
                status
            );
        }
        // No status outside these three was ever written; an item holding one is corrupt,
        // and the error says which value and what was expected.
        let err = serde_json::from_str::<SessionStatus>("\"failed\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `failed`"), "{err}");
        assert!(err.contains("`open`, `in-progress`, `closed`"), "{err}");
    }

    #[test]
    fn call_modes_and_twilio_directions_keep_their_stored_names() {
        for (mode, name) in [
            (CallMode::Bridge, "bridge"),
            (CallMode::Conference, "conference"),
        ] {
            assert_eq!(serde_json::to_value(mode).unwrap(), name);
            assert_eq!(mode.as_str(), name);
            assert_eq!(
                serde_json::from_value::<CallMode>(name.into()).unwrap(),
                mode
            );
        }
        for (direction, name) in [
            (TwilioDirection::Inbound, "inbound"),
            (TwilioDirection::OutboundApi, "outbound-api"),
            (TwilioDirection::OutboundDial, "outbound-dial"),
        ] {
            assert_eq!(serde_json::to_value(direction).unwrap(), name);
            assert_eq!(direction.as_str(), name);
            assert_eq!(TwilioDirection::parse(Some(name)), direction);
        }
        // A callback without its own Direction is a dialled leg's.
        assert_eq!(TwilioDirection::parse(None), TwilioDirection::OutboundDial);
    }

    #[test]
    fn warning_outcomes_keep_their_stored_strings() {
        for (outcome, stored) in [
            (WarningOutcome::Given, "given"),
            (
                WarningOutcome::NotPossibleBridge,
                "not-possible: bridge calls cannot carry an announcement",
            ),
            (
                WarningOutcome::NotPossibleAbsent,
                "not-possible: the deciding participant is not in the room",
            ),
        ] {
            assert_eq!(outcome.as_str(), stored);
            assert_eq!(serde_json::to_value(outcome).unwrap(), stored);
            assert_eq!(
                serde_json::from_value::<WarningOutcome>(stored.into()).unwrap(),
                outcome
            );
            // And inside a live call, as the store serialises it.
            let live = LiveCall {
                mode: CallMode::Conference,
                limit: 600,
                deadline: Some(1_000),
                warned_for: Some(1_000),
                warning: Some(outcome),
                noticed_for: None,
            };
            let json = serde_json::to_value(&live).unwrap();
            assert_eq!(json["warning"], stored);
            assert_eq!(serde_json::from_value::<LiveCall>(json).unwrap(), live);
        }
    }
}
