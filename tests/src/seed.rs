//! `make seed`: the state `events/*.json` refer to, restored on a running local stack so
//! that any one event can run on its own after it (`cargo lambda invoke --data-file`,
//! `sam local invoke`, `make invoke`, or the end-to-end test that runs every event through
//! its function's binary).
//!
//! The events are dated 2030-11-24 (UTC) and the seeded times below are that day's, so one
//! date runs through them all. The date lies ahead of the clock on purpose: the sweep's
//! "now" is the later of its event's `time` and the clock, so `events/expiry-warning.json`
//! finds the seeded call inside its warning window rather than past its deadline. Moving the
//! date means changing these constants, the events' dates, and re-signing
//! (`python3 scripts/sign-events.py`).
//!
//! What is seeded (numbers in E.164; A = 090-1234-5678, B = 080-9876-5432):
//! - the pool: P1, P2, P3, none of them reserved (`numbers-update.json` reserves P3); and
//!   not P4, which `numbers.json` adds;
//! - [`LIVE_SESSION`]: A and B on P1, with a live conference V-call — A's leg [`A_LEG`] in the
//!   room [`CONFERENCE`], B's leg [`B_LEG`] answered but its join not yet reported — whose
//!   deadline is [`DEADLINE`], the `deadline` the extension events carry; the room's
//!   recording, which `recording-status.json` reports, is kept on A's leg;
//! - [`QUIET_SESSION`]: A and B on P2, no call yet (V字発信 and the masked inbound call); B
//!   has an [`ANNOUNCEMENT`], which the whisper of a call to B (`inbound-call-whisper.json`)
//!   speaks;
//! - [`EXPIRING_SESSION`]: C and D on P1, created at seeding time with a `date_expiry` a day
//!   later, which `extend-session.json` moves (an end may not move past 365 days from now,
//!   so this one follows the wall clock, not the events' date); `participants-delete.json`
//!   removes D from it;
//! - [`HALF_SESSION`]: C alone on P2 (Proxy's flow: a session first, its participants
//!   after), to which `participants-add.json` adds D;
//! - no other open session of A or B, no session named `order-1234`, and none of the events'
//!   `Idempotency-Key`s recorded, so `create-session.json` creates and gets P3.
//!
//! Restoring closes what is in the way through the API (as a platform would: routes and
//! pool counts released by the product itself), deletes the seeded sessions' own items
//! (conditionally: only items that exist), and writes the seeded ones again with the
//! product's own store calls.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use tsunagu::model::{
    CallMode, CallStatus, Extension, Interaction, LiveCall, Participant, Session, SessionStatus,
    TwilioDirection,
};
use tsunagu::phone::PhoneNumber;
use tsunagu::pricing::Direction;
use tsunagu::store::Store;

pub const A: &str = "+819012345678";
pub const B: &str = "+818098765432";
pub const C: &str = "+817011112222";
pub const D: &str = "+817033334444";
pub const P1: &str = "+815031234567";
pub const P2: &str = "+815031234568";
/// In the pool, used by no session: `create-session.json` gets it, `numbers-delete.json`
/// deletes it.
pub const P3: &str = "+815031234569";
/// Not in the pool: `numbers.json` adds it.
pub const P4: &str = "+815031234570";

/// A and B on P1, with a live conference call under a time limit.
pub const LIVE_SESSION: &str = "KC0123456789abcdef0123456789abcdef";
pub const LIVE_A: &str = "KP0123456789abcdef0123456789abcdef";
pub const LIVE_B: &str = "KPfedcba9876543210fedcba9876543210";
/// A and B on P2, no call yet.
pub const QUIET_SESSION: &str = "KCfedcba9876543210fedcba9876543210";
pub const QUIET_A: &str = "KP00112233445566778899aabbccddeeff";
pub const QUIET_B: &str = "KPffeeddccbbaa99887766554433221100";
pub const UNIQUE_NAME: &str = "order-1234";
/// C and D on P1, no call, a `date_expiry` (see [`expiring_session`]).
pub const EXPIRING_SESSION: &str = "KC00112233445566778899aabbccddeeff";
pub const EXPIRING_C: &str = "KP0000000000000000000000000000000c";
pub const EXPIRING_D: &str = "KP0000000000000000000000000000000d";
/// Every session the seed writes, restored on each run.
const SEEDED_SESSIONS: [&str; 4] = [LIVE_SESSION, QUIET_SESSION, EXPIRING_SESSION, HALF_SESSION];
/// C alone on P2, waiting for a second participant.
pub const HALF_SESSION: &str = "KC99887766554433221100ffeeddccbbaa";
pub const HALF_C: &str = "KP1111111111111111111111111111111c";
/// What B hears on answering a call placed to them in [`QUIET_SESSION`].
pub const ANNOUNCEMENT: &str = "〇〇アプリのお取引についてのお電話です。";

pub const CONFERENCE: &str = "CF44444444444444444444444444444444";
pub const A_LEG: &str = "CA33333333333333333333333333333333";
pub const B_LEG: &str = "CA44444444444444444444444444444444";

/// 2030-11-24T20:30:00Z: both sessions are created.
pub const CREATED: i64 = 1_921_782_600;
/// 2030-11-24T20:40:00Z: both parties of the V-call are connected.
pub const CONNECTED: i64 = 1_921_783_200;
/// The live call's limit, in seconds.
pub const LIMIT: u64 = 600;
/// 2030-11-24T20:50:00Z: the live call's deadline (`deadline=` in the extension events).
pub const DEADLINE: i64 = CONNECTED + LIMIT as i64;
/// The live session's `date_expiry`, a day after it was created.
pub const EXPIRY: i64 = CREATED + 86_400;
/// The warning lead, seconds: `expiry-warning.json` (20:48) falls inside 20:47–20:50.
pub const WARNING_LEAD: u64 = 180;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// The idempotency record of every `Idempotency-Key` the events send: a seeded stack has
/// none of them, so each of those events does its work instead of replaying an earlier
/// answer. The API scopes a key by its request's method and raw path
/// (`"{method} {raw_path}#{key}"`, `tsunagu::api`'s `idempotent`), so the record is named so.
pub fn event_idempotency_records() -> Result<BTreeSet<String>, String> {
    let mut keys = BTreeSet::new();
    let dir = events_dir();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let event: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(key) = event["headers"]["idempotency-key"].as_str() {
            let method = event["requestContext"]["http"]["method"].as_str();
            let raw_path = event["rawPath"].as_str();
            let (Some(method), Some(raw_path)) = (method, raw_path) else {
                return Err(format!("{}: no method or rawPath", path.display()));
            };
            keys.insert(format!("{method} {raw_path}#{key}"));
        }
    }
    Ok(keys)
}

fn number(n: &str) -> PhoneNumber {
    PhoneNumber::parse(n).expect("a valid seeded number")
}

fn participant(sid: &str, identifier: &str, proxy: &str) -> Participant {
    Participant {
        sid: sid.into(),
        identifier: number(identifier),
        proxy_identifier: number(proxy),
        friendly_name: None,
        announcement: None,
        announcement_url: None,
    }
}

fn session(sid: &str, participants: Vec<Participant>) -> Session {
    Session {
        sid: sid.into(),
        unique_name: None,
        status: SessionStatus::Open,
        closed_reason: None,
        mode: "voice-only".into(),
        ttl: 3600,
        date_expiry: None,
        date_created: CREATED,
        date_updated: CREATED,
        date_last_interaction: None,
        call_time_limit: None,
        warning_lead: WARNING_LEAD,
        extension: Extension {
            seconds: 300,
            max_count: 1,
        },
        extension_count: 0,
        participants,
        total_cost_milli_yen: 0,
        max_cost_milli_yen: None,
        current_conference: None,
        decider: None,
        live_call: None,
        record: false,
        recording_announcement: None,
        date_reopened: None,
    }
}

/// The session with the live call, as seeded.
pub fn live_session() -> Session {
    let mut s = session(
        LIVE_SESSION,
        vec![participant(LIVE_A, A, P1), participant(LIVE_B, B, P1)],
    );
    s.status = SessionStatus::InProgress;
    s.date_expiry = Some(EXPIRY);
    s.call_time_limit = Some(LIMIT);
    s.date_last_interaction = Some(CONNECTED);
    s.date_updated = CONNECTED;
    s.live_call = Some(LiveCall {
        mode: CallMode::Conference,
        limit: LIMIT,
        deadline: Some(DEADLINE),
        warned_for: None,
        warning: None,
        noticed_for: None,
    });
    s
}

/// The session without a call, as seeded: B is announced when a call to them is answered.
pub fn quiet_session() -> Session {
    let mut b = participant(QUIET_B, B, P2);
    b.announcement = Some(ANNOUNCEMENT.into());
    session(QUIET_SESSION, vec![participant(QUIET_A, A, P2), b])
}

/// The session with one participant, as seeded.
pub fn half_session() -> Session {
    session(HALF_SESSION, vec![participant(HALF_C, C, P2)])
}

/// The session `extend-session.json` extends: no call, ending a day after `now`.
pub fn expiring_session(now: i64) -> Session {
    let mut s = session(
        EXPIRING_SESSION,
        vec![
            participant(EXPIRING_C, C, P1),
            participant(EXPIRING_D, D, P1),
        ],
    );
    s.date_created = now;
    s.date_updated = now;
    s.date_expiry = Some(now + 86_400);
    s
}

/// One V-call leg Twilio placed from P1 to a participant, answered and still on the line.
fn v_call_leg(call_sid: &str, to: &Participant) -> Interaction {
    let from = number(P1);
    Interaction {
        sid: format!("KI{}", &call_sid[2..]),
        session_sid: LIVE_SESSION.into(),
        call_sid: call_sid.into(),
        parent_call_sid: None,
        direction: Direction::Outbound,
        twilio_direction: TwilioDirection::OutboundApi,
        from_masked: from.masked().to_string(),
        to_masked: to.identifier.masked().to_string(),
        from_participant_sid: None,
        to_participant_sid: Some(to.sid.clone()),
        callee_class: to.identifier.class(),
        status: CallStatus::InProgress,
        duration: 0,
        billed_minutes: 0,
        cost_milli_yen: 0,
        date_created: CONNECTED - 10,
        date_updated: CONNECTED,
        date_ended: None,
        recording: Default::default(),
    }
}

/// Where to reach the running stack.
pub struct Target {
    /// The local gateway, e.g. `http://127.0.0.1:3000`.
    pub gateway_url: String,
    /// AWS settings for the emulator.
    pub aws: SdkConfig,
    pub table: String,
}

/// What the seed did, for its printout.
#[derive(Debug, Default)]
pub struct Report {
    pub closed: Vec<String>,
    pub deleted_items: usize,
}

struct Seeder<'a> {
    target: &'a Target,
    http: reqwest::Client,
    dynamo: aws_sdk_dynamodb::Client,
    store: Store,
}

impl Seeder<'_> {
    async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let url = format!("{}{path}", self.target.gateway_url);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e} (is `make up` running on this port?)"))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Puts `n` in the pool unless it is there already.
    async fn ensure_number(&self, n: &str) -> Result<(), String> {
        let (status, body) = self
            .api("POST", "/v1/numbers", Some(json!({ "phone_number": n })))
            .await?;
        match (status, body["code"].as_u64()) {
            (201, _) | (409, Some(140901)) => Ok(()),
            _ => Err(format!("adding {n} to the pool: {status} {body}")),
        }
    }

    /// Makes `n` allocatable again (`numbers-update.json` reserves P3, and create-session.json
    /// must get it).
    async fn unreserve(&self, n: &str) -> Result<(), String> {
        let path = format!("/v1/numbers/{}", n.replace('+', "%2B"));
        let (status, body) = self
            .api("POST", &path, Some(json!({ "is_reserved": false })))
            .await?;
        if status != 200 {
            return Err(format!("unreserving {n}: {status} {body}"));
        }
        Ok(())
    }

    /// Every item whose partition key is `pk`.
    async fn items_under(&self, pk: &str) -> Result<Vec<HashMap<String, AttributeValue>>, String> {
        let out = self
            .dynamo
            .query()
            .table_name(&self.target.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "reading {pk}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
        Ok(out.items.unwrap_or_default())
    }

    /// The open sessions `who` takes part in: their participation items name them, one per
    /// proxy number, whether or not the session has its second participant yet.
    async fn sessions_of(&self, who: &str) -> Result<Vec<String>, String> {
        let pk = format!("PARTICIPANT#{}", number(who));
        let items = self.items_under(&pk).await?;
        Ok(items
            .iter()
            .filter_map(|item| match item.get("session_sid") {
                Some(AttributeValue::S(sid)) => Some(sid.clone()),
                _ => None,
            })
            .collect())
    }

    /// Closes a session through the API (ending its calls, releasing its routes and
    /// numbers), unless it is closed or gone already.
    async fn close(&self, sid: &str, report: &mut Report) -> Result<(), String> {
        let (status, body) = self
            .api("GET", &format!("/v1/sessions/{sid}"), None)
            .await?;
        if status == 404 || body["status"] == "closed" {
            return Ok(());
        }
        let (status, body) = self
            .api("DELETE", &format!("/v1/sessions/{sid}"), None)
            .await?;
        if status != 200 {
            return Err(format!("closing {sid}: {status} {body}"));
        }
        report.closed.push(sid.to_owned());
        Ok(())
    }

    /// Deletes an item if it exists (a conditional delete: nothing else is touched).
    async fn delete(&self, pk: String, sk: String, report: &mut Report) -> Result<(), String> {
        let result = self
            .dynamo
            .delete_item()
            .table_name(&self.target.table)
            .key("pk", AttributeValue::S(pk.clone()))
            .key("sk", AttributeValue::S(sk.clone()))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => {
                report.deleted_items += 1;
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(format!(
                "deleting {pk}/{sk}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )),
        }
    }

    /// Deletes a (closed) seeded session's own items: the session, its interactions and
    /// conferences, and its calls' references.
    async fn forget_session(&self, sid: &str, report: &mut Report) -> Result<(), String> {
        let pk = format!("SESSION#{sid}");
        let items = self.items_under(&pk).await?;
        for item in items {
            let Some(AttributeValue::S(sk)) = item.get("sk") else {
                continue;
            };
            if let Some(call_sid) = sk.strip_prefix("CALL#") {
                self.delete(format!("CALL#{call_sid}"), "CALL".into(), report)
                    .await?;
            }
            self.delete(pk.clone(), sk.clone(), report).await?;
        }
        Ok(())
    }

    async fn run(&self) -> Result<Report, String> {
        let mut report = Report::default();
        for n in [P1, P2, P3] {
            self.ensure_number(n).await?;
            self.unreserve(n).await?;
        }

        // Whatever is in the way: the seeded sessions as they are now, the session holding
        // the events' unique name, and every open session of A, B, C or D, even one where
        // they are alone (I1 would refuse the seeded participants, and create-session.json
        // must find P3 free for A and B).
        let mut in_the_way = BTreeSet::from(SEEDED_SESSIONS.map(str::to_owned));
        if let Some(sid) = self
            .store
            .session_sid_by_unique_name(UNIQUE_NAME)
            .await
            .map_err(|e| e.to_string())?
        {
            in_the_way.insert(sid);
        }
        for who in [A, B, C, D] {
            in_the_way.extend(self.sessions_of(who).await?);
        }
        for sid in &in_the_way {
            self.close(sid, &mut report).await?;
        }

        let (status, body) = self
            .api(
                "DELETE",
                &format!("/v1/numbers/{}", P4.replace('+', "%2B")),
                None,
            )
            .await?;
        if status != 204 && status != 404 {
            return Err(format!("removing {P4} from the pool: {status} {body}"));
        }

        for sid in SEEDED_SESSIONS {
            self.forget_session(sid, &mut report).await?;
        }
        self.delete(
            format!("UNIQUE#{UNIQUE_NAME}"),
            "UNIQUE".into(),
            &mut report,
        )
        .await?;
        for key in event_idempotency_records()? {
            self.delete(
                format!("IDEMPOTENCY#{key}"),
                "IDEMPOTENCY".into(),
                &mut report,
            )
            .await?;
        }

        let retention = 90 * 86_400;
        let quiet = quiet_session();
        self.store
            .create_session(&quiet, CREATED)
            .await
            .map_err(|e| format!("creating {QUIET_SESSION}: {e}"))?;
        let now = tsunagu::clock::epoch(time::OffsetDateTime::now_utc());
        self.store
            .create_session(&expiring_session(now), now)
            .await
            .map_err(|e| format!("creating {EXPIRING_SESSION}: {e}"))?;
        self.store
            .create_session(&half_session(), CREATED)
            .await
            .map_err(|e| format!("creating {HALF_SESSION}: {e}"))?;
        let live = live_session();
        self.store
            .create_session(&live, CREATED)
            .await
            .map_err(|e| format!("creating {LIVE_SESSION}: {e}"))?;
        let room = tsunagu::domain::vcall::room_name(LIVE_SESSION);
        // A is in the room; B's join is what events/conference-status.json reports.
        self.store
            .record_conference(
                LIVE_SESSION,
                CONFERENCE,
                &room,
                Some((LIVE_A, A_LEG)),
                CONNECTED,
                retention,
            )
            .await
            .map_err(|e| format!("recording the conference: {e}"))?;
        for (call_sid, to) in [
            (A_LEG, &live.participants[0]),
            (B_LEG, &live.participants[1]),
        ] {
            self.store
                .record_leg(&v_call_leg(call_sid, to), CONNECTED, retention)
                .await
                .map_err(|e| format!("recording leg {call_sid}: {e}"))?;
        }
        // Filed for the warning (the deadline less the warning lead), as a connected call is.
        let due = tsunagu::domain::due::next_due(&live, false, CONNECTED);
        self.store
            .set_due(LIVE_SESSION, due)
            .await
            .map_err(|e| format!("filing {LIVE_SESSION} for the sweep: {e}"))?;
        Ok(report)
    }
}

/// Restores the events' state on the stack at `target`.
pub async fn seed(target: &Target) -> Result<Report, String> {
    let dynamo = aws_sdk_dynamodb::Client::new(&target.aws);
    let seeder = Seeder {
        target,
        http: tsunagu::app::http_client(),
        store: Store::new(dynamo.clone(), target.table.clone()),
        dynamo,
    };
    seeder.run().await
}
