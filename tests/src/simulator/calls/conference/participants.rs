//! Participants through REST: added by calling them, removed, muted, held, announced to.

use time::OffsetDateTime;

use super::{ConferenceStatus, Leave, NewParticipant, Participant, ParticipantUpdate};
use crate::simulator::calls::{CallStatus, State, TwimlSource};
use crate::simulator::transcript::Event;
use crate::simulator::twiml::{HttpMethod, WaitAudio};

/// `<Response><Dial><Conference …>room</Conference></Dial></Response>` for a participant
/// added through REST: what its call runs once answered.
fn participant_twiml(room: &str, request: &NewParticipant) -> String {
    use quick_xml::escape::escape;
    let mut attributes = format!(
        r#"startConferenceOnEnter="{}" endConferenceOnExit="{}" muted="{}" beep="{}""#,
        request.start_conference_on_enter,
        request.end_conference_on_exit,
        request.muted,
        escape(request.beep.as_str())
    );
    if let Some(label) = &request.label {
        attributes += &format!(r#" participantLabel="{}""#, escape(label.as_str()));
    }
    match &request.wait {
        WaitAudio::Default => {}
        WaitAudio::Silence => attributes += r#" waitUrl="""#,
        WaitAudio::Url(url) => {
            let method = match request.wait_method {
                HttpMethod::Get => "GET",
                HttpMethod::Post => "POST",
            };
            attributes += &format!(
                r#" waitUrl="{}" waitMethod="{method}""#,
                escape(url.as_str())
            );
        }
    }
    format!(
        "<Response><Dial><Conference {attributes}>{}</Conference></Dial></Response>",
        escape(room)
    )
}

impl State {
    /// REST: adds a participant by calling it; once answered its call joins the room.
    /// Returns the new CallSid and the ConferenceSid, or why the conference is unknown.
    pub fn add_participant(
        &mut self,
        mut request: NewParticipant,
        now: OffsetDateTime,
    ) -> Result<(String, String), ()> {
        let by_sid = self
            .conference(&request.conference)
            .map(|c| (c.sid.clone(), c.room.clone(), c.status));
        let (conference_sid, room) = match by_sid {
            Some((_, _, ConferenceStatus::Completed)) => return Err(()),
            Some((sid, room, _)) => (sid, room),
            // Not a conference SID: the room's friendly name (its conference is created
            // if it has none live).
            None if request.conference.starts_with("CF") => return Err(()),
            None => {
                let room = request.conference.clone();
                let callback = request.conference_callback.clone();
                let sid = self.live_conference(&room, callback, request.max_participants, now);
                (sid, room)
            }
        };
        request.call.twiml = TwimlSource::Inline(participant_twiml(&room, &request));
        let phone = request.call.to.clone();
        let call_sid = self.create_outbound(now, request.call.clone());
        let invited = Participant {
            call_sid: call_sid.clone(),
            phone,
            label: request.label,
            hold: false,
            muted: request.muted,
            end_conference_on_exit: request.end_conference_on_exit,
            start_conference_on_enter: request.start_conference_on_enter,
            joined_at: now,
            updated_at: now,
            hold_generation: 0,
        };
        if let Some(conference) = self.conference_mut(&conference_sid) {
            conference.invited.push(invited);
            conference.updated_at = now;
        }
        Ok((call_sid, conference_sid))
    }

    /// A call ended: if it was a participant added through REST that never joined, the
    /// conference hears about it (`participant-leave`, `participant_add_failed`).
    pub(in crate::simulator::calls) fn invitation_ended(
        &mut self,
        sid: &str,
        status: CallStatus,
        now: OffsetDateTime,
    ) {
        let Some(conference) = self
            .conferences
            .iter_mut()
            .find(|c| c.invited.iter().any(|p| p.call_sid == sid))
        else {
            return;
        };
        let Some(index) = conference.invited.iter().position(|p| p.call_sid == sid) else {
            return;
        };
        let participant = conference.invited.remove(index);
        conference.updated_at = now;
        let conference_sid = conference.sid.clone();
        let abandoned = conference.status == ConferenceStatus::Init
            && conference.participants.is_empty()
            && conference.invited.is_empty();
        let extra = self.leave_details("participant_add_failed", status.as_str());
        self.conference_callback(
            &conference_sid,
            "participant-leave",
            Some(&participant),
            extra,
            now,
        );
        if abandoned {
            self.end_conference(&conference_sid, "last-participant-left", None, now);
        }
    }

    /// DELETE a participant: its call leaves the room and continues after its Dial; a
    /// participant added through REST that has not joined yet is no longer called.
    pub fn remove_participant(&mut self, sid: &str, now: OffsetDateTime) {
        let invited = self
            .conferences
            .iter()
            .any(|c| c.invited.iter().any(|p| p.call_sid == sid));
        if invited {
            self.hang_up(sid, now);
        } else {
            self.leave_conference(sid, Leave::Removed, now);
        }
    }

    /// Applies a validated participant update.
    pub fn update_participant(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        update: ParticipantUpdate,
        now: OffsetDateTime,
    ) {
        if let Some(muted) = update.muted {
            let changed = self.with_participant(conference_sid, call_sid, now, |p| {
                std::mem::replace(&mut p.muted, muted) != muted
            });
            if changed == Some(true) {
                self.participant_changed(conference_sid, call_sid, now, |who| Event::Muted {
                    who,
                    on: muted,
                });
                let event = if muted {
                    "participant-mute"
                } else {
                    "participant-unmute"
                };
                self.participant_callback(conference_sid, call_sid, event, now);
            }
        }
        if let Some(end) = update.end_conference_on_exit {
            self.with_participant(conference_sid, call_sid, now, |p| {
                p.end_conference_on_exit = end;
            });
        }
        match update.hold {
            Some(true) => {
                let changed = self.with_participant(conference_sid, call_sid, now, |p| {
                    p.hold_generation += 1;
                    !std::mem::replace(&mut p.hold, true)
                });
                if changed == Some(true) {
                    self.participant_changed(conference_sid, call_sid, now, |who| Event::Held {
                        who,
                        on: true,
                    });
                    self.participant_callback(conference_sid, call_sid, "participant-hold", now);
                }
                if let Some((url, method)) = update.hold_url {
                    self.start_hold_music(conference_sid, call_sid, url, method, now);
                }
            }
            Some(false) => {
                let changed = self.with_participant(conference_sid, call_sid, now, |p| {
                    p.hold_generation += 1;
                    std::mem::replace(&mut p.hold, false)
                });
                if changed == Some(true) {
                    self.participant_changed(conference_sid, call_sid, now, |who| Event::Held {
                        who,
                        on: false,
                    });
                    self.participant_callback(conference_sid, call_sid, "participant-unhold", now);
                }
            }
            None => {}
        }
        if let Some((url, method)) = update.announce {
            self.announce(conference_sid, Some(call_sid), url, method, now);
        }
    }

    fn with_participant<T>(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        now: OffsetDateTime,
        change: impl FnOnce(&mut Participant) -> T,
    ) -> Option<T> {
        let conference = self.conference_mut(conference_sid)?;
        let participant = conference
            .participants
            .iter_mut()
            .find(|p| p.call_sid == call_sid)?;
        participant.updated_at = now;
        Some(change(participant))
    }

    fn participant_changed(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        now: OffsetDateTime,
        event: impl FnOnce(String) -> Event,
    ) {
        let Some(phone) = self.conference(conference_sid).and_then(|c| {
            c.participants
                .iter()
                .find(|p| p.call_sid == call_sid)
                .map(|p| p.phone.clone())
        }) else {
            return;
        };
        self.record(now, Some(call_sid), event(phone));
    }

    fn participant_callback(
        &mut self,
        conference_sid: &str,
        call_sid: &str,
        event: &str,
        now: OffsetDateTime,
    ) {
        let participant = self.conference(conference_sid).and_then(|c| {
            c.participants
                .iter()
                .find(|p| p.call_sid == call_sid)
                .cloned()
        });
        if let Some(participant) = participant {
            self.conference_callback(conference_sid, event, Some(&participant), Vec::new(), now);
        }
    }
}
