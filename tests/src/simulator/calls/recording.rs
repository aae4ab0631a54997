//! Recordings made by `<Dial record>` and `<Conference record>`, and their status callbacks.

use time::OffsetDateTime;

use super::{Callback, Recording, State};
use crate::simulator::rfc2822;
use crate::simulator::transcript::Event;
use crate::simulator::twiml::RecordingConfig;

impl State {
    /// A recording ended at `to` after starting at `from`: kept, and its `completed` status
    /// callback queued if one was asked for. The parameters are Twilio's
    /// (https://www.twilio.com/docs/voice/twiml/dial#recordingstatuscallback and
    /// https://www.twilio.com/docs/voice/twiml/conference#recordingstatuscallback):
    /// `AccountSid`, `CallSid` (a Dial's) or `ConferenceSid` (a conference's, which has no
    /// CallSid), `RecordingSid`, `RecordingUrl`, `RecordingStatus`, `RecordingDuration`,
    /// `RecordingChannels` (2 for `-dual`, 1 otherwise, a conference's always 1),
    /// `RecordingStartTime`, `RecordingSource` (`DialVerb` or `Conference`), `ErrorCode`.
    pub(super) fn finish_recording(
        &mut self,
        call_sid: Option<&str>,
        conference_sid: Option<&str>,
        config: &RecordingConfig,
        from: OffsetDateTime,
        to: OffsetDateTime,
        now: OffsetDateTime,
    ) {
        let sid = format!("RE{}", uuid::Uuid::new_v4().simple());
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Recordings/{sid}",
            self.api_base, self.account_sid
        );
        let duration_secs = u64::try_from((to - from).whole_seconds()).unwrap_or(0);
        let channels = if config.dual && conference_sid.is_none() {
            2
        } else {
            1
        };
        let owner = call_sid.or(conference_sid).unwrap_or_default().to_owned();
        self.recordings.push(Recording {
            sid: sid.clone(),
            call_sid: call_sid.map(str::to_owned),
            conference_sid: conference_sid.map(str::to_owned),
            duration_secs,
            channels,
            url: url.clone(),
        });
        self.record(
            now,
            Some(&owner),
            Event::Recorded {
                recording_sid: sid.clone(),
                duration_secs,
                channels,
            },
        );
        let Some(callback_url) = config
            .status_callback
            .clone()
            .filter(|_| config.posts_completed())
        else {
            return;
        };
        let mut params = vec![("AccountSid".to_owned(), self.account_sid.clone())];
        match (call_sid, conference_sid) {
            (Some(call), _) => params.push(("CallSid".to_owned(), call.to_owned())),
            (None, Some(conference)) => {
                params.push(("ConferenceSid".to_owned(), conference.to_owned()))
            }
            (None, None) => {}
        }
        let source = if conference_sid.is_some() {
            "Conference"
        } else {
            "DialVerb"
        };
        params.extend([
            ("RecordingSid".to_owned(), sid.clone()),
            ("RecordingUrl".to_owned(), url),
            ("RecordingStatus".to_owned(), "completed".to_owned()),
            ("RecordingDuration".to_owned(), duration_secs.to_string()),
            ("RecordingChannels".to_owned(), channels.to_string()),
            ("RecordingStartTime".to_owned(), rfc2822(from)),
            ("RecordingSource".to_owned(), source.to_owned()),
            ("ErrorCode".to_owned(), "0".to_owned()),
        ]);
        self.outbox.push_back(Callback {
            call: owner,
            url: callback_url,
            method: config.method,
            params,
            call_status: String::new(),
            conference_event: None,
            recording: Some(sid),
        });
    }
}
