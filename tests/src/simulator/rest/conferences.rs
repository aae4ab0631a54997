//! `Conferences` and their `Participants` under `/2010-04-01/Accounts/{AccountSid}/`.

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::super::calls::{
    self, CallStatus, Conference, ConferenceCallbackConfig, ConferenceStatus, NewParticipant,
    OutboundCall, Participant, ParticipantUpdate, TwimlSource,
};
use super::super::rfc2822;
use super::{
    API_PREFIX, ApiError, Outcome, Params, method_param, param, seconds_param, status_callback,
    valid_url, validate_from_to,
};
use crate::simulator::twiml::{ConferenceEvent, HttpMethod, WaitAudio};

/// Routes `resource` (the path after the account), which starts with `Conferences`.
pub(super) fn respond(
    state: &mut calls::State,
    method: &str,
    resource: &str,
    params: &Params,
    path: &str,
    now: OffsetDateTime,
) -> Outcome {
    let segments: Vec<&str> = resource.split('/').collect();
    let not_allowed = || Err(ApiError::new(405, 20004, "Method not allowed"));
    match segments.as_slice() {
        ["Conferences.json"] => match method {
            "GET" => (None, Ok((200, list_conferences(state, params, path)))),
            _ => (None, not_allowed()),
        },
        ["Conferences", file] => {
            let Some(sid) = file.strip_suffix(".json") else {
                return (None, Err(ApiError::not_found(path)));
            };
            let sid = sid.to_owned();
            let result = match method {
                "GET" => {
                    find(state, &sid, path).map(|c| (200, conference_json(&state.account_sid, c)))
                }
                "POST" => update_conference(state, &sid, params, path, now).and_then(|()| {
                    find(state, &sid, path).map(|c| (200, conference_json(&state.account_sid, c)))
                }),
                _ => not_allowed(),
            };
            (Some(sid), result)
        }
        ["Conferences", sid, "Participants.json"] => {
            let sid = (*sid).to_owned();
            match method {
                "GET" => {
                    let result =
                        find(state, &sid, path).map(|c| (200, list_participants(state, c, path)));
                    (Some(sid), result)
                }
                "POST" => create_participant(state, &sid, params, path, now),
                _ => (Some(sid), not_allowed()),
            }
        }
        ["Conferences", sid, "Participants", file] => {
            let Some(id) = file.strip_suffix(".json") else {
                return (None, Err(ApiError::not_found(path)));
            };
            participant(state, method, sid, id, params, path, now)
        }
        _ => (None, Err(ApiError::not_found(path))),
    }
}

fn find<'a>(state: &'a calls::State, sid: &str, path: &str) -> Result<&'a Conference, ApiError> {
    state
        .conference(sid)
        .ok_or_else(|| ApiError::not_found(path))
}

/// A participant by CallSid or label, among those in the room now or (for reading and
/// removing) still being called in.
fn find_participant<'a>(
    conference: &'a Conference,
    id: &str,
    path: &str,
    invited_too: bool,
) -> Result<&'a Participant, ApiError> {
    let invited = conference.invited.iter().filter(|_| invited_too);
    conference
        .participants
        .iter()
        .chain(invited)
        .find(|p| p.call_sid == id || p.label.as_deref() == Some(id))
        .ok_or_else(|| ApiError::not_found(path))
}

/// `POST Conferences/{ConferenceSid or FriendlyName}/Participants.json`: calls `To` from
/// `From` into the conference (Twilio's Conference Participant resource, "Create").
fn create_participant(
    state: &mut calls::State,
    conference: &str,
    params: &Params,
    path: &str,
    now: OffsetDateTime,
) -> Outcome {
    let request = match new_participant(state, conference, params) {
        Ok(request) => request,
        Err(e) => return (None, Err(e)),
    };
    let Ok((call_sid, conference_sid)) = state.add_participant(request, now) else {
        return (None, Err(ApiError::not_found(path)));
    };
    let result = find(state, &conference_sid, path).and_then(|c| {
        let participant = find_participant(c, &call_sid, path, true)?;
        Ok((201, participant_json(state, c, participant)))
    });
    (Some(call_sid), result)
}

fn new_participant(
    state: &calls::State,
    conference: &str,
    params: &Params,
) -> Result<NewParticipant, ApiError> {
    let (from, to) = validate_from_to(state, params)?;
    let flag = |name: &str, default: bool| bool_param(params, name).map(|v| v.unwrap_or(default));
    let beep = param(params, "Beep").unwrap_or("true").to_owned();
    if !["true", "false", "onEnter", "onExit"].contains(&beep.as_str()) {
        return Err(ApiError::new(
            400,
            20001,
            format!("Beep must be true, false, onEnter or onExit, not {beep:?}"),
        ));
    }
    // Twilio: the WaitUrl "may be an empty string" for silence.
    let wait = match params.iter().find(|(n, _)| n == "WaitUrl") {
        None => WaitAudio::Default,
        Some((_, url)) if url.trim().is_empty() => WaitAudio::Silence,
        Some((_, url)) => WaitAudio::Url(valid_url(url.trim())?.to_owned()),
    };
    let conference_callback = match param(params, "ConferenceStatusCallback") {
        None => None,
        Some(url) => {
            let events: Vec<&str> = params
                .iter()
                .filter(|(n, _)| n == "ConferenceStatusCallbackEvent")
                .map(|(_, v)| v.as_str())
                .collect();
            Some(ConferenceCallbackConfig {
                url: valid_url(url)?.to_owned(),
                method: method_param(params, "ConferenceStatusCallbackMethod")?,
                events: ConferenceEvent::parse_list(&events)
                    .map_err(|e| ApiError::new(400, 20001, e))?,
            })
        }
    };
    let max_participants = seconds_param(params, "MaxParticipants", 250)?;
    if !(2..=250).contains(&max_participants) {
        return Err(ApiError::new(
            400,
            20001,
            "MaxParticipants must be between 2 and 250",
        ));
    }
    // Twilio caps the ring time at 600 s.
    let timeout = seconds_param(params, "Timeout", 60)?.min(600);
    let time_limit = seconds_param(params, "TimeLimit", 14_400)?;
    Ok(NewParticipant {
        conference: conference.to_owned(),
        call: OutboundCall {
            from,
            to,
            // Replaced by the conference's TwiML when the participant is added.
            twiml: TwimlSource::Inline(String::new()),
            status_callback: status_callback(params)?,
            ring_timeout: std::time::Duration::from_secs(timeout),
            time_limit: std::time::Duration::from_secs(time_limit),
        },
        label: param(params, "Label").map(str::to_owned),
        start_conference_on_enter: flag("StartConferenceOnEnter", true)?,
        end_conference_on_exit: flag("EndConferenceOnExit", false)?,
        muted: flag("Muted", false)?,
        beep,
        wait,
        wait_method: method_param(params, "WaitMethod")?,
        conference_callback,
        max_participants: u32::try_from(max_participants).unwrap_or(250),
    })
}

fn participant(
    state: &mut calls::State,
    method: &str,
    conference_sid: &str,
    id: &str,
    params: &Params,
    path: &str,
    now: OffsetDateTime,
) -> Outcome {
    // Only DELETE reaches a participant still being called in.
    let invited_too = method != "POST";
    let found = find(state, conference_sid, path)
        .and_then(|c| find_participant(c, id, path, invited_too).map(|p| p.call_sid.clone()));
    let call_sid = match found {
        Ok(sid) => sid,
        Err(e) => return (None, Err(e)),
    };
    let result = match method {
        "GET" => Ok(()),
        "POST" => participant_update(params).map(|update| {
            state.update_participant(conference_sid, &call_sid, update, now);
        }),
        "DELETE" => {
            state.remove_participant(&call_sid, now);
            return (Some(call_sid), Ok((204, Value::Null)));
        }
        _ => Err(ApiError::new(405, 20004, "Method not allowed")),
    };
    let result = result.and_then(|()| {
        let conference = find(state, conference_sid, path)?;
        let participant = find_participant(conference, &call_sid, path, true)?;
        Ok((200, participant_json(state, conference, participant)))
    });
    (Some(call_sid), result)
}

fn update_conference(
    state: &mut calls::State,
    sid: &str,
    params: &Params,
    path: &str,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let completed = find(state, sid, path)?.status == ConferenceStatus::Completed;
    // Validate everything before changing anything.
    let status = param(params, "Status");
    if let Some(other) = status.filter(|s| *s != "completed") {
        return Err(ApiError::new(
            400,
            20001,
            format!("Invalid Status {other:?}: a conference can only be set to completed"),
        ));
    }
    let announce = announce_param(params)?;
    if announce.is_some() && completed {
        return Err(ApiError::new(
            400,
            20001,
            "Conference is completed: it cannot play an announcement",
        ));
    }
    if let Some((url, method)) = announce {
        state.announce(sid, None, url, method, now);
    }
    if status.is_some() {
        state.end_conference(sid, "conference-ended-via-api", None, now);
    }
    Ok(())
}

fn participant_update(params: &Params) -> Result<ParticipantUpdate, ApiError> {
    let hold_url = match param(params, "HoldUrl") {
        None => None,
        Some(url) => {
            // Twilio requests hold music with GET unless told otherwise.
            let method = match param(params, "HoldMethod") {
                None => HttpMethod::Get,
                Some(_) => method_param(params, "HoldMethod")?,
            };
            Some((valid_url(url)?.to_owned(), method))
        }
    };
    Ok(ParticipantUpdate {
        hold: bool_param(params, "Hold")?,
        hold_url,
        muted: bool_param(params, "Muted")?,
        announce: announce_param(params)?,
        end_conference_on_exit: bool_param(params, "EndConferenceOnExit")?,
    })
}

fn announce_param(params: &Params) -> Result<Option<(String, HttpMethod)>, ApiError> {
    match param(params, "AnnounceUrl") {
        None => Ok(None),
        Some(url) => Ok(Some((
            valid_url(url)?.to_owned(),
            method_param(params, "AnnounceMethod")?,
        ))),
    }
}

fn bool_param(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match param(params, name) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(ApiError::new(
            400,
            20001,
            format!("{name} must be true or false, not {v:?}"),
        )),
    }
}

fn page(key: &str, items: Vec<Value>, path: &str) -> Value {
    let end = items.len().saturating_sub(1);
    json!({
        key: items,
        "page": 0,
        "page_size": 50,
        "first_page_uri": path,
        "next_page_uri": null,
        "previous_page_uri": null,
        "uri": path,
        "start": 0,
        "end": end,
    })
}

fn list_conferences(state: &calls::State, params: &Params, path: &str) -> Value {
    let matches = |c: &&Conference| {
        param(params, "FriendlyName").is_none_or(|n| n == c.room)
            && param(params, "Status").is_none_or(|s| s == c.status.as_str())
    };
    // Newest first, as Twilio lists them.
    let conferences = state
        .conferences
        .iter()
        .rev()
        .filter(matches)
        .map(|c| conference_json(&state.account_sid, c))
        .collect();
    page("conferences", conferences, path)
}

/// Those in the room, then those still being called in (Twilio lists both: the resource
/// is "a participant who is either connecting to, or actively connected to" a conference).
fn list_participants(state: &calls::State, conference: &Conference, path: &str) -> Value {
    let participants = conference
        .participants
        .iter()
        .chain(&conference.invited)
        .map(|p| participant_json(state, conference, p))
        .collect();
    page("participants", participants, path)
}

/// A conference as Twilio's REST API represents it.
fn conference_json(account_sid: &str, c: &Conference) -> Value {
    let uri = format!("{API_PREFIX}{account_sid}/Conferences/{}.json", c.sid);
    json!({
        "sid": c.sid,
        "account_sid": account_sid,
        "friendly_name": c.room,
        "status": c.status.as_str(),
        "region": "us1",
        "api_version": "2010-04-01",
        "date_created": rfc2822(c.created_at),
        "date_updated": rfc2822(c.updated_at),
        "reason_conference_ended": c.ended_reason,
        "call_sid_ending_conference": c.call_sid_ending,
        "uri": uri,
        "subresource_uris": {
            "participants": uri.replace(".json", "/Participants.json"),
            "recordings": uri.replace(".json", "/Recordings.json"),
        },
    })
}

/// A participant as Twilio's REST API represents it: `connected` once in the room,
/// `queued` or `ringing` while its call is being placed.
fn participant_json(state: &calls::State, c: &Conference, p: &Participant) -> Value {
    let account_sid = state.account_sid.as_str();
    let in_room = c.participants.iter().any(|q| q.call_sid == p.call_sid);
    let status = match state.call(&p.call_sid).map(|call| call.status) {
        _ if in_room => "connected",
        Some(CallStatus::Queued) => "queued",
        Some(CallStatus::Ringing) => "ringing",
        _ => "complete",
    };
    json!({
        "account_sid": account_sid,
        "call_sid": p.call_sid,
        "conference_sid": c.sid,
        "label": p.label,
        "hold": p.hold,
        "muted": p.muted,
        "coaching": false,
        "call_sid_to_coach": null,
        "end_conference_on_exit": p.end_conference_on_exit,
        "start_conference_on_enter": p.start_conference_on_enter,
        "status": status,
        "date_created": rfc2822(p.joined_at),
        "date_updated": rfc2822(p.updated_at),
        "uri": format!(
            "{API_PREFIX}{account_sid}/Conferences/{}/Participants/{}.json",
            c.sid, p.call_sid
        ),
    })
}
