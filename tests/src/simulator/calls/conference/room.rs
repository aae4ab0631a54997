//! A room's life: the leg that joins it (creating its conference, starting it), legs that
//! leave it, and its end.

use time::OffsetDateTime;

use super::{Conference, ConferenceCallbackConfig, ConferenceStatus, Leave, Participant};
use crate::simulator::calls::{Activity, Job, State};
use crate::simulator::clock::later;
use crate::simulator::transcript::Event;
use crate::simulator::twiml::{ConferenceNoun, Dial};

impl State {
    /// The room's live conference, created (with these settings) if it has none.
    pub(super) fn live_conference(
        &mut self,
        room: &str,
        callback: Option<ConferenceCallbackConfig>,
        max_participants: u32,
        now: OffsetDateTime,
    ) -> String {
        let existing = self
            .conferences
            .iter()
            .find(|c| c.room == room && c.status != ConferenceStatus::Completed);
        if let Some(conference) = existing {
            return conference.sid.clone();
        }
        let sid = format!("CF{}", uuid::Uuid::new_v4().simple());
        self.conferences.push(Conference {
            sid: sid.clone(),
            room: room.to_owned(),
            status: ConferenceStatus::Init,
            created_at: now,
            updated_at: now,
            callback,
            max_participants,
            participants: Vec::new(),
            invited: Vec::new(),
            ended_reason: None,
            call_sid_ending: None,
            recording: None,
            started_at: None,
            sequence: 1,
        });
        sid
    }

    /// `<Dial><Conference>`: the leg enters the room (creating its conference).
    pub(in crate::simulator::calls) fn join_conference(
        &mut self,
        sid: &str,
        dial: Dial,
        noun: ConferenceNoun,
        now: OffsetDateTime,
    ) {
        // Joining a room answers a call still ringing (`answerOnBridge`).
        self.ensure_answered(sid, now);
        let Some(call) = self.call(sid) else { return };
        let (phone, generation) = (call.phone().to_owned(), call.generation);
        let document = call.program.url.clone();
        let callback = noun
            .status_callback
            .clone()
            .map(|url| ConferenceCallbackConfig {
                url,
                method: noun.status_callback_method,
                events: noun.status_callback_events.clone(),
            });
        let conference_sid = self.live_conference(&noun.room, callback, noun.max_participants, now);
        // A participant added through REST is no longer pending once its call joins.
        for conference in &mut self.conferences {
            conference.invited.retain(|p| p.call_sid != sid);
        }
        let Some(conference) = self.conference_mut(&conference_sid) else {
            return;
        };
        if conference.participants.len() >= conference.max_participants as usize {
            let detail = format!(
                "conference {:?} is full ({} participants): the Dial ends",
                noun.room, conference.max_participants
            );
            self.record(now, Some(sid), Event::Warning { detail });
            let params = vec![("DialCallStatus".to_owned(), "failed".to_owned())];
            let job = Job::DialEnded {
                parent: sid.to_owned(),
                generation,
                dial: Box::new(dial),
                params,
            };
            self.schedule(now, job);
            return;
        }
        let participant = Participant {
            call_sid: sid.to_owned(),
            phone: phone.clone(),
            label: noun.participant_label.clone(),
            hold: false,
            muted: noun.muted,
            end_conference_on_exit: noun.end_conference_on_exit,
            start_conference_on_enter: noun.start_conference_on_enter,
            joined_at: now,
            updated_at: now,
            hold_generation: 0,
        };
        conference.participants.push(participant.clone());
        conference.updated_at = now;
        // `<Conference record="record-from-start">` records the whole conference from its
        // start (TwiML `<Conference>`, "record"); the first participant asking sets it.
        if conference.recording.is_none() {
            conference.recording = noun.record.clone();
        }
        // Twilio: "Conferences will not start until at least two participants join", and
        // it starts when a participant with startConferenceOnEnter is among them.
        let starts = conference.status == ConferenceStatus::Init
            && conference.participants.len() >= 2
            && conference
                .participants
                .iter()
                .any(|p| p.start_conference_on_enter);
        let waits = conference.status == ConferenceStatus::Init && !starts;
        let join = self.next_id();
        let time_limit = dial.time_limit;
        let Some(call) = self.call_mut(sid) else {
            return;
        };
        call.activity = Activity::Conferencing {
            conference: conference_sid.clone(),
            dial,
            join,
        };
        // The phone's own hang-up counts from the answer (an outbound leg has it
        // scheduled already; an inbound caller's waits for a bridge or a room).
        let hang_up = match (call.hang_up_scheduled, call.device.hang_up_after) {
            (false, Some(after)) => Some(later(call.answered_at.unwrap_or(now), after).max(now)),
            _ => None,
        };
        if hang_up.is_some() {
            call.hang_up_scheduled = true;
        }
        let in_room = self.in_room(&conference_sid);
        let room = noun.room.clone();
        let joined = Event::ConferenceJoined {
            room: room.clone(),
            who: phone,
            in_room,
        };
        self.record(now, Some(sid), joined);
        self.conference_callback(
            &conference_sid,
            "participant-join",
            Some(&participant),
            Vec::new(),
            now,
        );
        if starts {
            if let Some(conference) = self.conference_mut(&conference_sid) {
                conference.status = ConferenceStatus::InProgress;
                conference.started_at = Some(now);
            }
            self.record(
                now,
                Some(&conference_sid),
                Event::ConferenceStarted { room },
            );
            self.conference_callback(&conference_sid, "conference-start", None, Vec::new(), now);
        } else if waits {
            self.start_wait_audio(&conference_sid, sid, &noun, &document, now);
        }
        self.schedule(
            later(now, time_limit),
            Job::DialTimeLimit {
                call: sid.to_owned(),
                join,
            },
        );
        if let Some(at) = hang_up {
            self.schedule(at, Job::PhoneHangUp(sid.to_owned()));
        }
    }

    /// The leg leaves its conference; the call then continues after its `<Dial>`
    /// (unless it is ending or being redirected, which the caller takes care of).
    /// The room ends when an `endConferenceOnExit` participant or the last one leaves.
    pub(in crate::simulator::calls) fn leave_conference(
        &mut self,
        sid: &str,
        why: Leave,
        now: OffsetDateTime,
    ) {
        let Some(call) = self.call_mut(sid) else {
            return;
        };
        let (conference_sid, dial) = match std::mem::take(&mut call.activity) {
            Activity::Conferencing {
                conference, dial, ..
            } => (conference, dial),
            other => {
                call.activity = other;
                return;
            }
        };
        let generation = call.generation;
        let Some(conference) = self.conference_mut(&conference_sid) else {
            return;
        };
        let Some(index) = conference
            .participants
            .iter()
            .position(|p| p.call_sid == sid)
        else {
            return;
        };
        let participant = conference.participants.remove(index);
        conference.updated_at = now;
        let (room, nobody_left) = (conference.room.clone(), conference.participants.is_empty());
        let in_room = self.in_room(&conference_sid);
        let left = Event::ConferenceLeft {
            room,
            who: participant.phone.clone(),
            why: why.as_str().to_owned(),
            in_room,
        };
        self.record(now, Some(sid), left);
        let (reason, call_status) = why.reason_and_status();
        let extra = self.leave_details(reason, call_status);
        self.conference_callback(
            &conference_sid,
            "participant-leave",
            Some(&participant),
            extra,
            now,
        );
        // Twilio requests the Dial action even for a call that hung up (ignoring its
        // TwiML); a redirected call has moved on and requests nothing.
        let params = vec![("DialCallStatus".to_owned(), "answered".to_owned())];
        let job = Job::DialEnded {
            parent: sid.to_owned(),
            generation,
            dial: Box::new(dial),
            params,
        };
        self.schedule(now, job);
        if matches!(why, Leave::ConferenceEnded { .. }) {
            return;
        }
        let kicked = why == Leave::Removed;
        let reason = if participant.end_conference_on_exit {
            if kicked {
                "participant-with-end-conference-on-exit-kicked"
            } else {
                "participant-with-end-conference-on-exit-left"
            }
        } else if nobody_left {
            if kicked {
                "last-participant-kicked"
            } else {
                "last-participant-left"
            }
        } else {
            return;
        };
        self.end_conference(&conference_sid, reason, Some(&participant), now);
    }

    /// Ends a conference: every leg still in it leaves and continues after its Dial.
    pub fn end_conference(
        &mut self,
        conference_sid: &str,
        reason: &str,
        ending: Option<&Participant>,
        now: OffsetDateTime,
    ) {
        let Some(conference) = self
            .conference_mut(conference_sid)
            .filter(|c| c.status != ConferenceStatus::Completed)
        else {
            return;
        };
        conference.status = ConferenceStatus::Completed;
        conference.updated_at = now;
        conference.ended_reason = Some(reason.to_owned());
        conference.call_sid_ending = ending.map(|p| p.call_sid.clone());
        let room = conference.room.clone();
        let remaining: Vec<String> = conference
            .participants
            .iter()
            .map(|p| p.call_sid.clone())
            .collect();
        let via_api = reason == "conference-ended-via-api";
        for sid in remaining {
            self.leave_conference(&sid, Leave::ConferenceEnded { via_api }, now);
        }
        let ended = Event::ConferenceEnded {
            room,
            reason: reason.to_owned(),
        };
        self.record(now, Some(conference_sid), ended);
        let mut extra = vec![("ReasonConferenceEnded".to_owned(), reason.to_owned())];
        if let Some(participant) = ending {
            extra.push((
                "CallSidEndingConference".to_owned(),
                participant.call_sid.clone(),
            ));
            if let Some(label) = &participant.label {
                extra.push(("ParticipantLabelEndingConference".to_owned(), label.clone()));
            }
        }
        self.conference_callback(conference_sid, "conference-end", None, extra, now);
        let recorded = self.conference(conference_sid).and_then(|c| {
            let config = c.recording.clone()?;
            Some((config, c.started_at?))
        });
        if let Some((config, started)) = recorded {
            self.finish_recording(None, Some(conference_sid), &config, started, now, now);
        }
    }

    /// A conference leg's `<Dial timeLimit>` elapsed: it leaves the room.
    pub(in crate::simulator::calls) fn dial_time_limit(
        &mut self,
        sid: &str,
        join: u64,
        now: OffsetDateTime,
    ) {
        let current = self.call(sid).is_some_and(|c| {
            c.status.is_live()
                && matches!(c.activity, Activity::Conferencing { join: j, .. } if j == join)
        });
        if current {
            self.leave_conference(sid, Leave::TimeLimit, now);
        }
    }
}
