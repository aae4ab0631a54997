//! A Twilio Programmable Voice simulator for end-to-end tests and `make demo`.
//!
//! It plays Twilio's part of a phone call against the real webhook handlers: it serves
//! the REST API the functions call (`TWILIO_API_BASE_URL`), requests TwiML with signed
//! webhooks, executes the verbs, rings scripted phones and posts status callbacks. It
//! also keeps conference rooms (`<Dial><Conference>`, the `Conferences` and
//! `Participants` REST resources, wait and hold music, announcements and conference
//! status callbacks; see `calls/conference.rs` for the rules it follows). Time
//! is virtual: an event queue ordered by (time, sequence) drives everything, so a
//! 65-second conversation takes as long as its HTTP round trips.
//!
//! ```ignore
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use tsunagu_tests::simulator::*;
//! let sim = Simulator::start(SimConfig::new("AC…", "token")).await?;
//! sim.add_number("+815000000001", "http://127.0.0.1:3000/twilio/voice/inbound", None);
//! sim.set_phone("+819011112222", PhoneScript::talks(Duration::from_secs(3), Duration::from_secs(65)));
//! let sid = sim.dial_in("+819033334444", "+815000000001", CallerScript::default()).await;
//! sim.run_until_idle(Duration::from_secs(3600)).await;
//! for entry in sim.transcript() { println!("{entry}"); }
//! # Ok(()) }
//! ```
//!
//! The state lock is never held across an await: a webhook handler may call the REST
//! API while the simulator waits for its answer. Do not call `advance`/`settle` from
//! inside a webhook handler, though: the driver runs one batch at a time.

mod calls;
mod clock;
mod rest;
mod signing;
mod transcript;
mod twiml;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

pub use calls::{DEFAULT_WAIT_MUSIC, Recording};

/// The `From` Twilio gives a call whose caller withheld their number (非通知 in Japan, 184
/// dialled first): the alpha string, not keypad digits, since Twilio's change "Upcoming
/// changes to withheld caller ID behavior for <Dial> calls" (changelog, 2022-11-16).
/// `dial_in(WITHHELD, …)` places such a call; the simulator passes `From` and `Caller`
/// through unchanged and gives no `FromCountry`, as for any caller it cannot place.
pub const WITHHELD: &str = "anonymous";
pub use clock::VirtualClock;
pub use signing::signature;
pub use transcript::{Entry, Event, mask};

use calls::{Callback, Fetch, FetchResult, Job, NumberConfig, State};
use rest::RestFailure;
use twiml::HttpMethod;

/// The Twilio account the simulator plays.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub account_sid: String,
    pub auth_token: String,
    /// An API key (SID "SK…", secret) also accepted for REST calls.
    pub api_key: Option<(String, String)>,
    pub clock: VirtualClock,
    /// The REST API's port on 127.0.0.1; 0 picks a free one (`make up` fixes it, so
    /// `local.env` can name it).
    pub port: u16,
}

impl SimConfig {
    /// An account with the clock at the real current time.
    pub fn new(account_sid: &str, auth_token: &str) -> Self {
        Self {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            api_key: None,
            clock: VirtualClock::default(),
            port: 0,
        }
    }
}

/// How a real phone behaves when Twilio rings it.
#[derive(Clone, Debug, PartialEq)]
pub enum PhoneScript {
    Answer {
        /// Ring time before answering; at or past the caller's ring timeout it is a no-answer.
        after: Duration,
        /// Hangs up this long after answering (in a conference too: it counts from the
        /// answer, not from joining the room); `None` stays until the other side ends.
        hang_up_after: Option<Duration>,
        /// Keys pressed during each `<Gather>`, at offsets from the Gather's start.
        digits: Vec<(Duration, char)>,
    },
    Busy,
    NoAnswer,
    /// The call cannot be placed (unreachable, invalid number).
    Fail,
}

impl PhoneScript {
    /// Answers after `after` and hangs up `talk` later.
    pub fn talks(after: Duration, talk: Duration) -> Self {
        Self::Answer {
            after,
            hang_up_after: Some(talk),
            digits: Vec::new(),
        }
    }
}

impl Default for PhoneScript {
    /// What an unscripted phone does: answers after 3 s and stays on the line.
    fn default() -> Self {
        Self::Answer {
            after: Duration::from_secs(3),
            hang_up_after: None,
            digits: Vec::new(),
        }
    }
}

/// How the phone that calls in behaves. The default stays on the line until the call ends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallerScript {
    /// Hangs up this long after being bridged to the dialled party, or, when the
    /// call joins a conference room first, this long after Twilio answered it (its
    /// first TwiML); never, if it is neither bridged nor joins a room.
    pub hang_up_after: Option<Duration>,
    /// Keys pressed during each `<Gather>`, at offsets from the Gather's start.
    pub digits: Vec<(Duration, char)>,
}

/// A call leg as the tests see it.
#[derive(Clone, Debug, PartialEq)]
pub struct CallInfo {
    pub sid: String,
    pub parent_sid: Option<String>,
    /// `inbound`, `outbound-api` or `outbound-dial`.
    pub direction: String,
    pub from: String,
    pub to: String,
    /// Twilio's CallStatus: `queued`, `ringing`, `in-progress`, `completed`, `busy`, …
    pub status: String,
    /// From answer to end (or to now while live); 0 if never answered.
    pub duration_secs: u64,
    pub started_at: OffsetDateTime,
    pub answered_at: Option<OffsetDateTime>,
    pub ended_at: Option<OffsetDateTime>,
}

/// A conference as the tests see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConferenceInfo {
    pub sid: String,
    /// The room name (Twilio's `friendly_name`).
    pub room: String,
    /// `init`, `in-progress` or `completed`.
    pub status: String,
    /// Who is in the room now, in the order they joined (empty once completed).
    pub participants: Vec<ParticipantInfo>,
    /// Twilio's `ReasonConferenceEnded`, once completed.
    pub ended_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParticipantInfo {
    pub call_sid: String,
    /// The real phone on the leg.
    pub phone: String,
    pub label: Option<String>,
    pub hold: bool,
    pub muted: bool,
}

/// One request the simulator made to a webhook (TwiML or a status callback), timed in real
/// time: virtual time stands still while a webhook works, so only this shows a slow one.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookTiming {
    pub url: String,
    /// The HTTP status; 0 if there was no answer (e.g. past Twilio's 15 s).
    pub status: u16,
    pub took: Duration,
}

/// TwiML requests one job may chain (Redirect → Redirect → …) before it counts as a loop.
const MAX_REQUESTS_PER_INSTANT: usize = 50;

/// A hook run in virtual time by [`Simulator::every`].
pub type Hook =
    Arc<dyn Fn(OffsetDateTime) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The simulated Twilio. Cheap to clone; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
    _server: Arc<ServerGuard>,
}

struct Inner {
    config: SimConfig,
    clock: VirtualClock,
    base_url: String,
    http: reqwest::Client,
    state: Mutex<State>,
    failures: Mutex<VecDeque<RestFailure>>,
    rest_latency: Mutex<Duration>,
    webhook_timings: Mutex<Vec<WebhookTiming>>,
    rest_in_flight: std::sync::atomic::AtomicUsize,
    rest_max_in_flight: std::sync::atomic::AtomicUsize,
    hooks: Mutex<Vec<(Duration, Hook)>>,
    /// Serialises `advance` calls; held across awaits, unlike `state`.
    driver: tokio::sync::Mutex<()>,
}

/// Stops the REST server (which holds the other `Arc<Inner>`) with the last clone.
struct ServerGuard(tokio::task::JoinHandle<()>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Simulator {
    /// Starts the REST API on 127.0.0.1 (`config.port`, or a free port).
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        // reqwest is built without a crypto provider; tests may install one first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            // Twilio gives a webhook about 15 s to answer.
            .timeout(Duration::from_secs(15))
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let mut state = State::new(config.account_sid.clone());
        // Recordings' media URLs point under this simulator, as Twilio's under its API.
        state.api_base = base_url.clone();
        let inner = Arc::new(Inner {
            clock: config.clock.clone(),
            state: Mutex::new(state),
            config,
            base_url,
            http,
            failures: Mutex::new(VecDeque::new()),
            rest_latency: Mutex::new(Duration::ZERO),
            webhook_timings: Mutex::new(Vec::new()),
            rest_in_flight: std::sync::atomic::AtomicUsize::new(0),
            rest_max_in_flight: std::sync::atomic::AtomicUsize::new(0),
            hooks: Mutex::new(Vec::new()),
            driver: tokio::sync::Mutex::new(()),
        });
        let app = axum::Router::new()
            .fallback(rest::handle)
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "Twilio simulator server stopped");
            }
        });
        Ok(Simulator {
            inner,
            _server: Arc::new(ServerGuard(server)),
        })
    }

    /// `http://127.0.0.1:PORT`, to use as `TWILIO_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    pub fn clock(&self) -> VirtualClock {
        self.inner.clock.clone()
    }

    /// Configures a Twilio number of the account (as IncomingPhoneNumbers does).
    pub fn add_number(&self, number: &str, voice_url: &str, status_callback: Option<&str>) {
        let config = NumberConfig {
            sid: calls::number_sid(),
            voice_url: voice_url.to_owned(),
            status_callback: status_callback.map(str::to_owned),
        };
        self.inner.state().numbers.insert(number.to_owned(), config);
    }

    /// The account's numbers (what `IncomingPhoneNumbers.json` lists), sorted.
    pub fn numbers(&self) -> Vec<String> {
        let mut numbers: Vec<String> = self.inner.state().numbers.keys().cloned().collect();
        numbers.sort();
        numbers
    }

    /// How the real phone `number` behaves when rung.
    pub fn set_phone(&self, number: &str, script: PhoneScript) {
        self.inner.state().phones.insert(number.to_owned(), script);
    }

    /// Forgets `number`'s script: it behaves as an unscripted phone again. Returns the old one.
    pub fn clear_phone(&self, number: &str) -> Option<PhoneScript> {
        self.inner.state().phones.remove(number)
    }

    /// Phone `from` calls Twilio number `to`; returns the CallSid once everything due
    /// now has run (the first webhook, its TwiML up to the first verb that takes time).
    pub async fn dial_in(&self, from: &str, to: &str, caller: CallerScript) -> String {
        let now = self.inner.clock.now();
        let sid = self.inner.state().dial_in(now, from, to, caller);
        self.settle().await;
        sid
    }

    /// Moves virtual time forward by `by`, running everything due on the way in time order.
    pub async fn advance(&self, by: Duration) {
        let target = clock::later(self.inner.clock.now(), by);
        self.inner.run(target, false).await;
    }

    /// Moves virtual time forward to `at` (nothing happens if the clock is already past it),
    /// running everything due on the way: e.g. following the wall clock.
    pub async fn run_to(&self, at: OffsetDateTime) {
        self.inner.run(at, false).await;
    }

    /// Runs everything due now (e.g. after a REST call created or updated a call).
    pub async fn settle(&self) {
        self.advance(Duration::ZERO).await;
    }

    /// Advances until no call is live any more, or `max` has elapsed.
    pub async fn run_until_idle(&self, max: Duration) {
        let target = clock::later(self.inner.clock.now(), max);
        self.inner.run(target, true).await;
    }

    /// Runs `hook` every `period` of virtual time (first after one period), in time
    /// order with the calls: e.g. the gateway's `expiry-warning` schedule. The hook may
    /// call the REST API (directly or through handlers) but not `advance`/`settle`,
    /// which would wait for the very run that is executing it.
    pub fn every<F, Fut>(&self, period: Duration, hook: F)
    where
        F: Fn(OffsetDateTime) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // A zero period would never let time move.
        let period = period.max(Duration::from_secs(1));
        let hook: Hook = Arc::new(move |at| Box::pin(hook(at)));
        let index = {
            let mut hooks = self.inner.hooks.lock().unwrap_or_else(|e| e.into_inner());
            hooks.push((period, hook));
            hooks.len() - 1
        };
        let at = clock::later(self.inner.clock.now(), period);
        self.inner.state().schedule(at, Job::Timer(index));
    }

    pub fn transcript(&self) -> Vec<Entry> {
        self.inner.state().transcript.clone()
    }

    /// Plays Twilio's API as before 2023-10-25 (`false`): `participant-leave` callbacks
    /// then lack `ParticipantCallStatus` and `ReasonParticipantLeft`. On by default.
    pub fn set_participant_leave_details(&self, on: bool) {
        self.inner.state().participant_leave_details = on;
    }

    /// Every REST request the simulator answered, in order: (method, path).
    pub fn rest_requests(&self) -> Vec<(String, String)> {
        self.inner
            .state()
            .transcript
            .iter()
            .filter_map(|entry| match &entry.event {
                Event::Rest { method, path, .. } => Some((method.clone(), path.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every call leg, in creation order.
    pub fn calls(&self) -> Vec<CallInfo> {
        let now = self.inner.clock.now();
        let state = self.inner.state();
        state
            .calls
            .iter()
            .map(|call| CallInfo {
                sid: call.sid.clone(),
                parent_sid: call.parent_sid.clone(),
                direction: call.direction.as_str().to_owned(),
                from: call.from.clone(),
                to: call.to.clone(),
                status: call.status.as_str().to_owned(),
                duration_secs: call.duration_secs(now),
                started_at: call.created_at,
                answered_at: call.answered_at,
                ended_at: call.ended_at,
            })
            .collect()
    }

    /// One call leg by CallSid.
    pub fn call(&self, sid: &str) -> Option<CallInfo> {
        self.calls().into_iter().find(|c| c.sid == sid)
    }

    /// Every conference, in creation order.
    pub fn conferences(&self) -> Vec<ConferenceInfo> {
        let state = self.inner.state();
        state
            .conferences
            .iter()
            .map(|c| ConferenceInfo {
                sid: c.sid.clone(),
                room: c.room.clone(),
                status: c.status.as_str().to_owned(),
                participants: c
                    .participants
                    .iter()
                    .map(|p| ParticipantInfo {
                        call_sid: p.call_sid.clone(),
                        phone: p.phone.clone(),
                        label: p.label.clone(),
                        hold: p.hold,
                        muted: p.muted,
                    })
                    .collect(),
                ended_reason: c.ended_reason.clone(),
            })
            .collect()
    }

    /// A conference by ConferenceSid, or the latest one of a room (the live one, if
    /// the room has one: a room may have had several conferences over time).
    pub fn conference(&self, room_or_sid: &str) -> Option<ConferenceInfo> {
        let conferences = self.conferences();
        if let Some(found) = conferences.iter().find(|c| c.sid == room_or_sid) {
            return Some(found.clone());
        }
        let mut rooms = conferences.into_iter().filter(|c| c.room == room_or_sid);
        let all: Vec<ConferenceInfo> = rooms.by_ref().collect();
        all.iter()
            .rev()
            .find(|c| c.status != "completed")
            .or_else(|| all.last())
            .cloned()
    }

    /// Every recording made so far, in order.
    pub fn recordings(&self) -> Vec<Recording> {
        self.inner.state().recordings.clone()
    }

    /// What was `<Say>`-ed to `phone`, in order.
    pub fn heard_by(&self, phone: &str) -> Vec<String> {
        self.inner
            .state()
            .transcript
            .iter()
            .filter_map(|entry| match &entry.event {
                Event::Said { to, text, .. } if to == phone => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Makes the next REST request matching `method_and_path_prefix` answer with
    /// Twilio's error body. The prefix is a method and a path, either full
    /// (`"POST /2010-04-01/Accounts/AC…/Calls.json"`) or relative to the account
    /// (`"POST Calls.json"`, `"POST Calls/"`); a bare method (`"POST"`) matches any
    /// path. Queue several to fail several requests.
    pub fn fail_next_rest(
        &self,
        method_and_path_prefix: &str,
        status: u16,
        twilio_code: u32,
        message: &str,
    ) {
        self.queue_failure(method_and_path_prefix, None, status, twilio_code, message);
    }

    /// Holds every REST answer for `latency` of real time, so that requests made at the
    /// same time overlap; with `max_rest_in_flight` a test sees how many were concurrent.
    /// A latency past the functions' REST timeouts (e.g. 6 s) plays a slow Twilio, and
    /// `webhook_timings` shows whether the webhooks still answered in time.
    pub fn set_rest_latency(&self, latency: Duration) {
        *self
            .inner
            .rest_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = latency;
    }

    /// Every webhook request so far, in the order they were made, with how long each took.
    pub fn webhook_timings(&self) -> Vec<WebhookTiming> {
        self.inner
            .webhook_timings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The most REST requests that were in flight at once since the simulator started.
    pub fn max_rest_in_flight(&self) -> usize {
        self.inner
            .rest_max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes the next call created to `to` (`POST Calls.json` with that `To`) fail with
    /// Twilio's error body, e.g. the second leg of a V字発信.
    pub fn fail_next_call_to(&self, to: &str, status: u16, twilio_code: u32, message: &str) {
        self.queue_failure("POST Calls.json", Some(to), status, twilio_code, message);
    }

    fn queue_failure(
        &self,
        method_and_path_prefix: &str,
        to: Option<&str>,
        status: u16,
        twilio_code: u32,
        message: &str,
    ) {
        let failure = RestFailure {
            to: to.map(str::to_owned),
            prefix: method_and_path_prefix.to_owned(),
            status,
            code: twilio_code,
            message: message.to_owned(),
        };
        self.inner
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(failure);
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // State changes are applied in small synchronous steps; a panic in a test
        // thread must not turn every later call into a poison error.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first queued failure whose prefix matches this request, removed.
    fn take_failure(
        &self,
        method: &str,
        path: &str,
        resource: &str,
        to: Option<&str>,
    ) -> Option<RestFailure> {
        let full = format!("{method} {path}");
        let relative = format!("{method} {resource}");
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let index = failures.iter().position(|f| {
            (full.starts_with(&f.prefix) || relative.starts_with(&f.prefix))
                && f.to.as_deref().is_none_or(|t| Some(t) == to)
        })?;
        failures.remove(index)
    }

    /// Runs due jobs in (time, sequence) order up to `target`, then leaves the clock
    /// there; with `until_idle`, stops as soon as no call is live.
    async fn run(&self, target: OffsetDateTime, until_idle: bool) {
        let _driver = self.driver.lock().await;
        loop {
            self.flush_callbacks().await;
            if until_idle && self.state().idle(self.clock.now()) {
                return;
            }
            let Some(due) = self.state().pop_due(target) else {
                break;
            };
            let now = self.clock.advance_to(due.at);
            match due.job {
                Job::Timer(index) => self.run_hook(index, now).await,
                job => {
                    let mut next = self.state().run(job, now);
                    let mut requests = 0;
                    while let Some(fetch) = next {
                        requests += 1;
                        if requests > MAX_REQUESTS_PER_INSTANT {
                            // TwiML that redirects to itself would otherwise spin
                            // forever without virtual time passing.
                            let detail =
                                "too many TwiML requests without time passing (redirect loop?)";
                            self.state().request_loop(&fetch, detail, now);
                            break;
                        }
                        let result = self.request_twiml(&fetch).await;
                        let now = self.clock.now();
                        next = self.state().fetched(fetch, result, now);
                    }
                }
            }
        }
        self.clock.advance_to(target);
    }

    async fn run_hook(&self, index: usize, now: OffsetDateTime) {
        let hook = {
            let hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
            hooks.get(index).cloned()
        };
        let Some((period, hook)) = hook else { return };
        hook(now).await;
        self.state()
            .schedule(clock::later(now, period), Job::Timer(index));
    }

    /// Posts queued status callbacks in order, recording what each receiver answered.
    async fn flush_callbacks(&self) {
        loop {
            let Some(callback) = self.state().outbox.pop_front() else {
                return;
            };
            let Callback {
                call,
                url,
                method,
                params,
                call_status,
                conference_event,
                recording,
            } = callback;
            let status = match self.send(&url, method, &params).await {
                Ok((status, _)) => status,
                Err(detail) => {
                    tracing::warn!(%url, %detail, "status callback failed");
                    0
                }
            };
            let now = self.clock.now();
            let event = match (conference_event, recording) {
                (_, Some(recording_sid)) => Event::RecordingCallback {
                    url,
                    recording_sid,
                    status,
                },
                (Some(event), None) => Event::ConferenceCallback { url, event, status },
                (None, None) => Event::StatusCallback {
                    url,
                    call_status,
                    status,
                },
            };
            self.state().record(now, Some(&call), event);
        }
    }

    async fn request_twiml(&self, fetch: &Fetch) -> FetchResult {
        match &fetch.inline {
            Some(twiml) => Ok((200, twiml.clone())),
            None => self.send(&fetch.url, fetch.method, &fetch.params).await,
        }
    }

    /// One signed request, as Twilio makes them, timed (`Simulator::webhook_timings`).
    async fn send(
        &self,
        url: &str,
        method: HttpMethod,
        params: &[(String, String)],
    ) -> FetchResult {
        let started = std::time::Instant::now();
        let result = self.send_signed(url, method, params).await;
        let timing = WebhookTiming {
            url: url.to_owned(),
            status: result.as_ref().map_or(0, |(status, _)| *status),
            took: started.elapsed(),
        };
        self.webhook_timings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(timing);
        result
    }

    /// A form POST, or a GET with the parameters in the query (then signed as part of the
    /// URL).
    async fn send_signed(
        &self,
        url: &str,
        method: HttpMethod,
        params: &[(String, String)],
    ) -> FetchResult {
        let token = &self.config.auth_token;
        let request = match method {
            HttpMethod::Post => self
                .http
                .post(url)
                .header("X-Twilio-Signature", signature(token, url, params))
                .form(params),
            HttpMethod::Get => {
                let query = serde_urlencoded::to_string(params).map_err(|e| e.to_string())?;
                let separator = if url.contains('?') { '&' } else { '?' };
                let full = format!("{url}{separator}{query}");
                let signed = signature(token, &full, &[]);
                self.http.get(&full).header("X-Twilio-Signature", signed)
            }
        };
        let response = request
            .header(reqwest::header::USER_AGENT, "TwilioProxy/1.1")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?;
        Ok((status, body))
    }
}

/// Twilio's timestamp format: `Tue, 24 Nov 2026 20:30:00 +0000`.
fn rfc2822(at: OffsetDateTime) -> String {
    at.format(&Rfc2822).unwrap_or_default()
}
