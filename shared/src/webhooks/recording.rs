//! `recording-status`: a recording of a session's call is ready.

use super::*;
use crate::store::RecordingInfo;

/// `POST /twilio/voice/recording-status?session=…`: Twilio's `recordingStatusCallback` once
/// a recording is `completed` (TwiML `<Dial>` / `<Conference>`, "recordingStatusCallback":
/// https://www.twilio.com/docs/voice/twiml/dial#recordingstatuscallback). It carries
/// `RecordingSid`, `RecordingUrl`, `RecordingDuration`, `RecordingChannels`, and `CallSid`
/// for a Dial's recording or `ConferenceSid` for a conference's (which has no CallSid). The
/// recording's SID, duration, channels and media URL go on the call's interaction, once;
/// the media itself stays in the Twilio account. Always answers an empty `<Response/>`:
/// a callback that cannot be placed is logged, never refused with a 5xx.
pub async fn recording_status(app: Arc<App>, req: Request) -> Response<Body> {
    webhook(app, req, |app, form, req| async move {
        let empty = || web::twiml(TwiML::new().to_xml());
        let Some(session_sid) =
            web::query_param(&req, "session").filter(|s| ids::is_sid(ids::SESSION, s))
        else {
            return Ok(empty());
        };
        if form.get("RecordingStatus").is_some_and(|s| s != "completed") {
            // Only `completed` is subscribed to; anything else (`absent`, `failed`) has no
            // media to point at.
            tracing::warn!(session = %session_sid, status = form.get("RecordingStatus"), "recording not completed");
            return Ok(empty());
        }
        let recording = RecordingInfo {
            sid: required(&form, "RecordingSid")?.to_owned(),
            duration: number(&form, "RecordingDuration"),
            channels: number(&form, "RecordingChannels").max(1) as u32,
            url: required(&form, "RecordingUrl")?.to_owned(),
        };
        let Some(call_sid) = call_of(&app, &session_sid, &form).await? else {
            tracing::warn!(session = %session_sid, recording = %recording.sid, "recording of no known call");
            return Ok(empty());
        };
        let stored = app
            .store
            .store_recording(
                &session_sid,
                &call_sid,
                &recording,
                app.now() + app.config.retention_seconds(),
            )
            .await?;
        tracing::info!(session = %session_sid, call = %call_sid, recording = %recording.sid, stored, "recording completed");
        Ok(empty())
    })
    .await
}

fn number(form: &TwilioForm, name: &str) -> u64 {
    form.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The call whose interaction holds the recording: a Dial's is the call that dialled
/// (`CallSid`); a conference's is the leg of the session's first participant found in the
/// room, as the conference's record kept it from its callbacks.
async fn call_of(
    app: &App,
    session_sid: &str,
    form: &TwilioForm,
) -> Result<Option<String>, WebhookError> {
    if let Some(call) = form.get("CallSid").filter(|c| !c.is_empty()) {
        return Ok(Some(call.to_owned()));
    }
    let Some(conference_sid) = form.get("ConferenceSid").filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let Some(room) = app
        .store
        .get_conference(session_sid, conference_sid)
        .await?
    else {
        return Ok(None);
    };
    let session = app.store.get_session(session_sid).await?;
    let order = session
        .iter()
        .flat_map(|s| s.participants.iter().map(|p| p.sid.clone()))
        .collect::<Vec<_>>();
    Ok(order
        .iter()
        .find_map(|p| room.legs.get(p).cloned())
        .or_else(|| room.legs.values().next().cloned()))
}
