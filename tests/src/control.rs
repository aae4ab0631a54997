//! The local stack's control API, for a person at the keyboard (`make call`): a phone calls
//! a proxy number and the other party's phone rings, answers or not, talks and hangs up,
//! all played by the simulator against the real webhooks. `POST /_local/calls` on the
//! gateway; it is not part of the API Gateway routes and exists only locally.
//!
//! The call runs in virtual time: it completes in milliseconds, and the stack's clock moves
//! ahead by the call's length (with `make up`, the clock then waits for the wall clock to
//! catch up).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tsunagu::App;
use tsunagu::phone::PhoneNumber;

use crate::console::TwilioConsole;
use crate::simulator::{CallerScript, Event, PhoneScript, Simulator};

/// What the gateway needs to place calls.
#[derive(Clone)]
pub struct Control {
    pub sim: Simulator,
    /// The operator's view of the table (the route a caller takes).
    pub app: Arc<App>,
    pub console: TwilioConsole,
}

/// How the phone that is rung behaves.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Callee {
    #[default]
    Answer,
    Busy,
    NoAnswer,
    /// Unreachable: the call to it fails.
    Fail,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CallRequest {
    /// The caller's own phone (national or E.164 form).
    pub from: String,
    /// The proxy number dialled.
    pub to: String,
    /// Seconds the other party talks after answering, then hangs up.
    #[serde(default = "default_talk")]
    pub talk: u64,
    /// Seconds the other party's phone rings before it is answered.
    #[serde(default = "default_answer_after")]
    pub answer_after: u64,
    #[serde(default)]
    pub callee: Callee,
    /// Also list the webhook requests, REST requests and status callbacks.
    #[serde(default)]
    pub verbose: bool,
}

fn default_talk() -> u64 {
    30
}

fn default_answer_after() -> u64 {
    3
}

#[derive(Clone, Debug, Serialize)]
pub struct CallReport {
    pub call_sid: String,
    /// The session the caller reached, if any (a stranger reaches none).
    pub session_sid: Option<String>,
    /// The caller's leg as Twilio ends it: `completed`, `failed`, …
    pub status: String,
    pub duration: u64,
    /// What happened, in order, numbers masked: what each phone heard, rang, answered.
    pub timeline: Vec<String>,
}

/// The longest a placed call may run in virtual time (Twilio's own limit is 4 h).
const MAX_CALL: Duration = Duration::from_secs(4 * 3600 + 600);

/// Places the call and runs it to its end. An error is a message for a 400 answer.
pub async fn place_call(control: &Control, request: CallRequest) -> Result<CallReport, String> {
    let parse = |what: &str, n: &str| {
        PhoneNumber::parse(n).map_err(|e| format!("{what} {n:?} is not a phone number: {e}"))
    };
    let from = parse("from", &request.from)?;
    let to = parse("to", &request.to)?;
    if request.talk > 4 * 3600 {
        return Err("talk is at most 14400 seconds".into());
    }
    // Numbers seeded straight into the table, too, are the account's.
    let pool = control
        .app
        .store
        .list_numbers()
        .await
        .map_err(|e| format!("reading the pool: {e}"))?;
    for number in &pool {
        control
            .console
            .provision(number.phone_number.as_str())
            .await?;
    }
    let route = control
        .app
        .store
        .get_route(&to, &from)
        .await
        .map_err(|e| format!("reading the route: {e}"))?;
    let sim = &control.sim;
    let callee = route
        .as_ref()
        .map(|r| r.other_identifier.as_str().to_owned());
    let answer_after = Duration::from_secs(request.answer_after);
    let script = match request.callee {
        Callee::Answer => PhoneScript::talks(answer_after, Duration::from_secs(request.talk)),
        Callee::Busy => PhoneScript::Busy,
        Callee::NoAnswer => PhoneScript::NoAnswer,
        Callee::Fail => PhoneScript::Fail,
    };
    let previous = callee.as_deref().map(|c| (c, sim.clear_phone(c)));
    if let Some(callee) = &callee {
        sim.set_phone(callee, script);
    }

    let first_entry = sim.transcript().len();
    let first_call = sim.calls().len();
    let sid = sim
        .dial_in(from.as_str(), to.as_str(), CallerScript::default())
        .await;
    // Second by second until every leg this call made has ended (a conference's other
    // party is called by REST, so it is not a child of the caller's leg).
    let started = sim.clock().now();
    while sim.calls()[first_call..]
        .iter()
        .any(|c| c.ended_at.is_none())
        && sim.clock().now() - started < MAX_CALL
    {
        sim.advance(Duration::from_secs(1)).await;
    }
    if let Some((callee, previous)) = previous {
        match previous {
            Some(script) => sim.set_phone(callee, script),
            None => {
                sim.clear_phone(callee);
            }
        }
    }

    let caller = sim.call(&sid).ok_or("the call vanished")?;
    let timeline = sim.transcript()[first_entry..]
        .iter()
        .filter(|entry| request.verbose || heard_or_seen(&entry.event))
        .map(ToString::to_string)
        .collect();
    Ok(CallReport {
        call_sid: sid,
        session_sid: route.map(|r| r.session_sid),
        status: caller.status,
        duration: caller.duration_secs,
        timeline,
    })
}

/// What the people on the call would notice, as opposed to the HTTP behind it.
fn heard_or_seen(event: &Event) -> bool {
    !matches!(
        event,
        Event::Webhook { .. }
            | Event::Rest { .. }
            | Event::StatusCallback { .. }
            | Event::ConferenceCallback { .. }
    )
}
