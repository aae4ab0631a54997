//! The timeline of everything that happened, for assertions and for `make demo`.

use std::fmt;

use time::OffsetDateTime;
use time::macros::format_description;

/// One row of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub at: OffsetDateTime,
    /// The call the row is about; for conference-wide rows (start, end, their
    /// callbacks, announcements to everyone) the ConferenceSid.
    pub call_sid: Option<String>,
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The simulator requested TwiML (or a Gather/Dial action) and got this HTTP status.
    Webhook {
        url: String,
        status: u16,
    },
    /// The webhook's answer was unusable (non-2xx, not TwiML, unreachable: status 0);
    /// Twilio apologises to the caller and hangs up.
    ApplicationError {
        url: String,
        status: u16,
        detail: String,
    },
    /// Something Twilio would accept with a warning (e.g. an unowned callerId).
    Warning {
        detail: String,
    },
    Said {
        to: String,
        text: String,
        language: Option<String>,
        voice: Option<String>,
    },
    Played {
        to: String,
        url: String,
    },
    /// DTMF a phone pressed during a `<Gather>`.
    Pressed {
        by: String,
        digits: String,
    },
    Ringing {
        to: String,
    },
    Answered {
        by: String,
    },
    Busy {
        to: String,
    },
    NoAnswer {
        to: String,
    },
    Bridged {
        a: String,
        b: String,
        caller_id: String,
    },
    /// A phone hung up, or `"timeLimit"` when Twilio cut the call.
    HungUp {
        by: String,
    },
    Completed {
        call_sid: String,
        status: String,
        duration_secs: u64,
    },
    StatusCallback {
        url: String,
        call_status: String,
        status: u16,
    },
    Rest {
        method: String,
        path: String,
        status: u16,
    },
    /// A leg entered conference `room`; `in_room` is who is in it and not on hold (`who`
    /// included unless it joined held). They talk once the conference has started
    /// ([`Event::ConferenceStarted`]); until then each hears the wait music.
    ConferenceJoined {
        room: String,
        who: String,
        in_room: Vec<String>,
    },
    /// The conference started mixing audio (a `startConferenceOnEnter` leg joined).
    ConferenceStarted {
        room: String,
    },
    /// A leg left `room`: `why` is `hung up`, `redirected`, `timeLimit`, `removed`
    /// (REST DELETE) or `conference ended`; `in_room` is who is left talking.
    ConferenceLeft {
        room: String,
        who: String,
        why: String,
        in_room: Vec<String>,
    },
    /// `reason` is Twilio's `ReasonConferenceEnded`.
    ConferenceEnded {
        room: String,
        reason: String,
    },
    /// A conference status callback (`event` is the long name Twilio posts) and the
    /// receiver's HTTP status.
    ConferenceCallback {
        url: String,
        event: String,
        status: u16,
    },
    /// A participant was put on hold (`on`) or taken off it.
    Held {
        who: String,
        on: bool,
    },
    Muted {
        who: String,
        on: bool,
    },
    /// A recording ended: `recording_sid`, its length and channels (2 for a dual Dial).
    Recorded {
        recording_sid: String,
        duration_secs: u64,
        channels: u32,
    },
    /// A recording status callback and the receiver's HTTP status.
    RecordingCallback {
        url: String,
        recording_sid: String,
        status: u16,
    },
}

/// `+819012345678` → `+8190****5678`; anything that is not an E.164 number is kept.
pub fn mask(number: &str) -> String {
    let is_e164 = number.starts_with('+')
        && number.len() > 9
        && number[1..].bytes().all(|b| b.is_ascii_digit());
    if is_e164 {
        format!("{}****{}", &number[..5], &number[number.len() - 4..])
    } else {
        number.to_owned()
    }
}

impl fmt::Display for Entry {
    /// `20:30:03 CA1f2e3d4c Bridged +8190****5678 <-> +8180****4321 (caller ID +8150****0000)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = self
            .at
            .format(format_description!("[hour]:[minute]:[second]"))
            .map_err(|_| fmt::Error)?;
        let call = self.call_sid.as_deref().map_or("-", |sid| short_sid(sid));
        write!(f, "{time} {call:<10} ")?;
        match &self.event {
            Event::Webhook { url, status } => write!(f, "webhook {url} -> {status}"),
            Event::ApplicationError {
                url,
                status,
                detail,
            } => write!(f, "APPLICATION ERROR {url} -> {status}: {detail}"),
            Event::Warning { detail } => write!(f, "warning: {detail}"),
            Event::Said {
                to,
                text,
                language,
                voice,
            } => {
                write!(f, "say to {}: {text:?}", mask(to))?;
                if let Some(language) = language {
                    write!(f, " [{language}]")?;
                }
                if let Some(voice) = voice {
                    write!(f, " [{voice}]")?;
                }
                Ok(())
            }
            Event::Played { to, url } => write!(f, "play to {}: {url}", mask(to)),
            Event::Pressed { by, digits } => write!(f, "{} pressed {digits:?}", mask(by)),
            Event::Ringing { to } => write!(f, "ringing {}", mask(to)),
            Event::Answered { by } => write!(f, "answered by {}", mask(by)),
            Event::Busy { to } => write!(f, "busy {}", mask(to)),
            Event::NoAnswer { to } => write!(f, "no answer {}", mask(to)),
            Event::Bridged { a, b, caller_id } => write!(
                f,
                "bridged {} <-> {} (caller ID {})",
                mask(a),
                mask(b),
                mask(caller_id)
            ),
            Event::HungUp { by } => write!(f, "hung up by {}", mask(by)),
            Event::Completed {
                status,
                duration_secs,
                ..
            } => write!(f, "ended: {status}, {duration_secs} s"),
            Event::StatusCallback {
                url,
                call_status,
                status,
            } => write!(f, "status callback {call_status} {url} -> {status}"),
            Event::Rest {
                method,
                path,
                status,
            } => write!(f, "REST {method} {path} -> {status}"),
            Event::ConferenceJoined { room, who, in_room } => write!(
                f,
                "{} joined conference {room:?} (in room: {})",
                mask(who),
                masked_list(in_room)
            ),
            Event::ConferenceStarted { room } => write!(f, "conference {room:?} started"),
            Event::ConferenceLeft {
                room,
                who,
                why,
                in_room,
            } => write!(
                f,
                "{} left conference {room:?}, {why} (in room: {})",
                mask(who),
                masked_list(in_room)
            ),
            Event::ConferenceEnded { room, reason } => {
                write!(f, "conference {room:?} ended: {reason}")
            }
            Event::ConferenceCallback { url, event, status } => {
                write!(f, "conference callback {event} {url} -> {status}")
            }
            Event::Held { who, on } => {
                let what = if *on { "on hold" } else { "off hold" };
                write!(f, "{} {what}", mask(who))
            }
            Event::Muted { who, on } => {
                let what = if *on { "muted" } else { "unmuted" };
                write!(f, "{} {what}", mask(who))
            }
            Event::Recorded {
                recording_sid,
                duration_secs,
                channels,
            } => write!(
                f,
                "recording {} completed: {duration_secs} s, {channels} channel(s)",
                short_sid(recording_sid)
            ),
            Event::RecordingCallback {
                url,
                recording_sid,
                status,
            } => write!(
                f,
                "recording callback {} {url} -> {status}",
                short_sid(recording_sid)
            ),
        }
    }
}

fn masked_list(numbers: &[String]) -> String {
    if numbers.is_empty() {
        return "nobody".to_owned();
    }
    let masked: Vec<String> = numbers.iter().map(|n| mask(n)).collect();
    masked.join(", ")
}

/// Enough of a SID to tell calls apart in a timeline.
fn short_sid(sid: &str) -> &str {
    sid.get(..10).unwrap_or(sid)
}
