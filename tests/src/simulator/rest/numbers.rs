//! `IncomingPhoneNumbers` under `/2010-04-01/Accounts/{AccountSid}/`: the account's own
//! numbers, which it may use as caller ID and on which it receives calls ("IncomingPhoneNumber
//! resource", https://www.twilio.com/docs/phone-numbers/api/incomingphonenumber-resource).
//! Provisioning takes `PhoneNumber` (E.164) and the voice configuration; there is no
//! AvailablePhoneNumbers search here: any valid number not already owned can be had.

use serde_json::{Value, json};

use super::super::calls::{self, NumberConfig, is_e164};
use super::{API_PREFIX, ApiError, Params, param, valid_url};

/// Routes `resource` (the path after the account), which starts with `IncomingPhoneNumbers`.
pub(super) fn respond(
    state: &mut calls::State,
    method: &str,
    resource: &str,
    params: &Params,
    path: &str,
) -> Result<(u16, Value), ApiError> {
    let not_allowed = || Err(ApiError::new(405, 20004, "Method not allowed"));
    match resource.split('/').collect::<Vec<_>>().as_slice() {
        ["IncomingPhoneNumbers.json"] => match method {
            "GET" => Ok((200, list(state, params, path))),
            "POST" => provision(state, params),
            _ => not_allowed(),
        },
        ["IncomingPhoneNumbers", file] => {
            let sid = file.strip_suffix(".json").unwrap_or(file);
            let Some(number) = number_of(state, sid) else {
                return Err(ApiError::not_found(path));
            };
            match method {
                "GET" => Ok((200, number_json(state, &number))),
                "POST" => {
                    update(state, &number, params)?;
                    Ok((200, number_json(state, &number)))
                }
                "DELETE" => {
                    // Releasing a number: the account no longer owns it (no caller ID, no calls).
                    state.numbers.remove(&number);
                    Ok((204, Value::Null))
                }
                _ => not_allowed(),
            }
        }
        _ => Err(ApiError::not_found(path)),
    }
}

fn number_of(state: &calls::State, sid: &str) -> Option<String> {
    state
        .numbers
        .iter()
        .find(|(_, config)| config.sid == sid)
        .map(|(number, _)| number.clone())
}

fn provision(state: &mut calls::State, params: &Params) -> Result<(u16, Value), ApiError> {
    let number = param(params, "PhoneNumber")
        .ok_or_else(|| ApiError::new(400, 21421, "PhoneNumber is required"))?;
    if !is_e164(number) {
        return Err(ApiError::new(
            400,
            21421,
            format!("PhoneNumber is invalid: {number}"),
        ));
    }
    if state.numbers.contains_key(number) {
        // https://www.twilio.com/docs/errors/21422: a number Twilio has no longer available.
        return Err(ApiError::new(400, 21422, "PhoneNumber is not available"));
    }
    let config = NumberConfig {
        sid: calls::number_sid(),
        voice_url: optional_url(params, "VoiceUrl")?.unwrap_or_default(),
        status_callback: optional_url(params, "StatusCallback")?,
    };
    state.numbers.insert(number.to_owned(), config);
    Ok((201, number_json(state, number)))
}

fn update(state: &mut calls::State, number: &str, params: &Params) -> Result<(), ApiError> {
    // Validate everything before changing anything.
    let voice_url = optional_url(params, "VoiceUrl")?;
    let status_callback = optional_url(params, "StatusCallback")?;
    if let Some(config) = state.numbers.get_mut(number) {
        if let Some(url) = voice_url {
            config.voice_url = url;
        }
        if let Some(url) = status_callback {
            config.status_callback = Some(url);
        }
    }
    Ok(())
}

fn optional_url(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    param(params, name)
        .map(|url| valid_url(url).map(str::to_owned))
        .transpose()
}

fn list(state: &calls::State, params: &Params, path: &str) -> Value {
    let mut numbers: Vec<&String> = state
        .numbers
        .keys()
        .filter(|n| param(params, "PhoneNumber").is_none_or(|wanted| wanted == n.as_str()))
        .collect();
    numbers.sort();
    let items: Vec<Value> = numbers.iter().map(|n| number_json(state, n)).collect();
    json!({
        "incoming_phone_numbers": items,
        "page": 0,
        "page_size": 50,
        "first_page_uri": path,
        "next_page_uri": null,
        "previous_page_uri": null,
        "uri": path,
        "start": 0,
        "end": items.len().saturating_sub(1),
    })
}

fn number_json(state: &calls::State, number: &str) -> Value {
    let Some(config) = state.numbers.get(number) else {
        return Value::Null;
    };
    let account = &state.account_sid;
    json!({
        "sid": config.sid,
        "account_sid": account,
        "phone_number": number,
        "friendly_name": number,
        "voice_url": config.voice_url,
        "voice_method": "POST",
        "status_callback": config.status_callback,
        "status_callback_method": "POST",
        "capabilities": {"voice": true, "sms": false, "mms": false, "fax": false},
        "api_version": "2010-04-01",
        "uri": format!("{API_PREFIX}{account}/IncomingPhoneNumbers/{}.json", config.sid),
    })
}
