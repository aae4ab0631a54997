//! What an operator does in the Twilio console for each proxy number, done by the local
//! stack: the number becomes the account's own (an IncomingPhoneNumber) with "A call comes
//! in" set to the inbound webhook and "Call status changes" to the status callback. Twilio
//! places calls only from numbers the account owns or has verified (error 21210,
//! https://www.twilio.com/docs/errors/21210), so a pool number the simulator did not know
//! could never be a V字発信's caller ID. The gateway provisions every number `POST
//! /v1/numbers` adds, through the simulator's own REST API
//! (https://www.twilio.com/docs/phone-numbers/api/incomingphonenumber-resource).

use serde_json::Value;

#[derive(Clone, Debug)]
pub struct TwilioConsole {
    pub http: reqwest::Client,
    /// The simulator's REST API.
    pub api_base_url: String,
    pub account_sid: String,
    pub auth_token: String,
    /// The app's `PUBLIC_BASE_URL`: the webhooks are configured under it.
    pub public_base_url: String,
}

impl TwilioConsole {
    /// Makes `number` (E.164) the account's, configured for Tsunagu. A number the account
    /// already owns stays as it is (Twilio answers 21422: not available).
    pub async fn provision(&self, number: &str) -> Result<(), String> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/IncomingPhoneNumbers.json",
            self.api_base_url, self.account_sid
        );
        let base = &self.public_base_url;
        let form = [
            ("PhoneNumber", number.to_owned()),
            ("VoiceUrl", format!("{base}/twilio/voice/inbound")),
            ("StatusCallback", format!("{base}/twilio/voice/status")),
        ];
        let response = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("provisioning {number}: {e}"))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match (status, body["code"].as_u64()) {
            (201, _) | (400, Some(21422)) => Ok(()),
            _ => Err(format!("provisioning {number}: {status} {body}")),
        }
    }
}
