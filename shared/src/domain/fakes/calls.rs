//! Call control that records what the domain asked of Twilio and answers from a script.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::ports::{CallControl, CallError, Goodbye, Ring, Told};
use crate::model::CallStatus;

/// What the domain asked of Twilio, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallRequest {
    Ring {
        to: String,
        mode: &'static str,
        limit: u64,
        leg_limit: u64,
    },
    HangUp(String),
    Cancel(String),
    EndCall(String),
    EndConference(String),
    /// The other party held for the warning; `asking`: told the decider is being asked.
    Hold {
        call_sid: String,
        deadline: i64,
        asking: bool,
    },
    Unhold {
        call_sid: String,
        told: Option<Told>,
    },
    /// The whole room told the time left.
    AnnounceTimeLeft {
        conference_sid: String,
        deadline: i64,
    },
    /// The whole room told the call is about to be cut.
    AnnounceNotice {
        conference_sid: String,
        deadline: i64,
    },
    SetTimeLimit {
        call_sid: String,
        seconds: u64,
    },
    Prompt {
        call_sid: String,
        deadline: i64,
    },
    CallStatus(String),
    Goodbye {
        call_sid: String,
        why: Goodbye,
    },
}

/// Call control that records every request and answers from a script.
#[derive(Default)]
pub struct FakeCalls {
    requests: Mutex<Vec<CallRequest>>,
    /// Results for the next rings, in order; a ring past the script succeeds.
    ring_results: Mutex<Vec<Result<(), CallError>>>,
    /// What Twilio says of a call when asked (unknown calls: an error).
    statuses: Mutex<HashMap<String, CallStatus>>,
}

impl FakeCalls {
    pub fn requests(&self) -> Vec<CallRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The next rings answer with `results`, in order.
    pub fn script_rings(&self, results: Vec<Result<(), CallError>>) {
        *self.ring_results.lock().unwrap() = results;
    }

    /// Twilio knows `call_sid` to be in `status`.
    pub fn set_status(&self, call_sid: &str, status: CallStatus) {
        self.statuses
            .lock()
            .unwrap()
            .insert(call_sid.to_owned(), status);
    }

    fn push(&self, request: CallRequest) {
        self.requests.lock().unwrap().push(request);
    }
}

#[async_trait]
impl CallControl for FakeCalls {
    async fn ring(&self, leg: &Ring<'_>) -> Result<String, CallError> {
        let n = self.requests().len();
        self.push(CallRequest::Ring {
            to: leg.callee.identifier.to_string(),
            mode: leg.mode.as_str(),
            limit: leg.limit,
            leg_limit: leg.leg_limit,
        });
        let mut script = self.ring_results.lock().unwrap();
        if !script.is_empty() {
            script.remove(0)?;
        }
        Ok(format!("CA{n:032}"))
    }

    async fn hang_up(&self, call_sid: &str) -> Result<(), CallError> {
        self.push(CallRequest::HangUp(call_sid.to_owned()));
        Ok(())
    }

    async fn cancel(&self, call_sid: &str) -> Result<(), CallError> {
        self.push(CallRequest::Cancel(call_sid.to_owned()));
        Ok(())
    }

    async fn end_call(&self, call_sid: &str) -> Result<(), CallError> {
        self.push(CallRequest::EndCall(call_sid.to_owned()));
        Ok(())
    }

    async fn call_status(&self, call_sid: &str) -> Result<Option<CallStatus>, CallError> {
        self.push(CallRequest::CallStatus(call_sid.to_owned()));
        match self.statuses.lock().unwrap().get(call_sid) {
            Some(status) => Ok(Some(*status)),
            None => Err(CallError::Refused {
                status: 404,
                code: 20404,
                message: format!("no call {call_sid}"),
            }),
        }
    }

    async fn say_goodbye(&self, call_sid: &str, why: Goodbye) -> Result<(), CallError> {
        self.push(CallRequest::Goodbye {
            call_sid: call_sid.to_owned(),
            why,
        });
        Ok(())
    }

    async fn end_conference(&self, conference_sid: &str) -> Result<(), CallError> {
        self.push(CallRequest::EndConference(conference_sid.to_owned()));
        Ok(())
    }

    async fn hold_for_warning(
        &self,
        _session_sid: &str,
        deadline: i64,
        asking: bool,
        _conference_sid: &str,
        call_sid: &str,
    ) -> Result<(), CallError> {
        self.push(CallRequest::Hold {
            call_sid: call_sid.to_owned(),
            deadline,
            asking,
        });
        Ok(())
    }

    async fn unhold(
        &self,
        _session_sid: &str,
        _conference_sid: &str,
        call_sid: &str,
        told: Option<Told>,
    ) -> Result<(), CallError> {
        self.push(CallRequest::Unhold {
            call_sid: call_sid.to_owned(),
            told,
        });
        Ok(())
    }

    async fn announce_notice(
        &self,
        _session_sid: &str,
        deadline: i64,
        conference_sid: &str,
    ) -> Result<(), CallError> {
        self.push(CallRequest::AnnounceNotice {
            conference_sid: conference_sid.to_owned(),
            deadline,
        });
        Ok(())
    }

    async fn announce_time_left(
        &self,
        _session_sid: &str,
        deadline: i64,
        conference_sid: &str,
    ) -> Result<(), CallError> {
        self.push(CallRequest::AnnounceTimeLeft {
            conference_sid: conference_sid.to_owned(),
            deadline,
        });
        Ok(())
    }

    async fn set_time_limit(&self, call_sid: &str, seconds: u64) -> Result<(), CallError> {
        self.push(CallRequest::SetTimeLimit {
            call_sid: call_sid.to_owned(),
            seconds,
        });
        Ok(())
    }

    async fn prompt_extension(
        &self,
        _session_sid: &str,
        deadline: i64,
        call_sid: &str,
    ) -> Result<(), CallError> {
        self.push(CallRequest::Prompt {
            call_sid: call_sid.to_owned(),
            deadline,
        });
        Ok(())
    }
}
