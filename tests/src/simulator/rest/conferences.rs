//! `Conferences` and their `Participants` under `/2010-04-01/Accounts/{AccountSid}/`.

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::super::calls::{self, Conference, ConferenceStatus, Participant, ParticipantUpdate};
use super::super::rfc2822;
use super::{API_PREFIX, ApiError, Outcome, Params, method_param, param, valid_url};
use crate::simulator::twiml::HttpMethod;

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
            let result = match method {
                "GET" => find(state, &sid, path)
                    .map(|c| (200, list_participants(&state.account_sid, c, path))),
                "POST" => Err(ApiError::new(
                    405,
                    20004,
                    "Creating participants (calling out into a conference) is not simulated: create a call whose TwiML dials the <Conference>",
                )),
                _ => not_allowed(),
            };
            (Some(sid), result)
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

/// A participant by CallSid or label, among those in the room now.
fn find_participant<'a>(
    conference: &'a Conference,
    id: &str,
    path: &str,
) -> Result<&'a Participant, ApiError> {
    conference
        .participants
        .iter()
        .find(|p| p.call_sid == id || p.label.as_deref() == Some(id))
        .ok_or_else(|| ApiError::not_found(path))
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
    let found = find(state, conference_sid, path)
        .and_then(|c| find_participant(c, id, path).map(|p| p.call_sid.clone()));
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
        let participant = find_participant(conference, &call_sid, path)?;
        Ok((
            200,
            participant_json(&state.account_sid, conference, participant),
        ))
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

fn list_participants(account_sid: &str, conference: &Conference, path: &str) -> Value {
    let participants = conference
        .participants
        .iter()
        .map(|p| participant_json(account_sid, conference, p))
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

/// A participant as Twilio's REST API represents it.
fn participant_json(account_sid: &str, c: &Conference, p: &Participant) -> Value {
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
        "status": "connected",
        "date_created": rfc2822(p.joined_at),
        "date_updated": rfc2822(p.updated_at),
        "uri": format!(
            "{API_PREFIX}{account_sid}/Conferences/{}/Participants/{}.json",
            c.sid, p.call_sid
        ),
    })
}
