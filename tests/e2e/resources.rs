//! Proxy's resources end to end: participants added and removed after creation (I1 under
//! concurrency), a session closed and reopened, its end moved, and a number reserved.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tsunagu_tests::simulator::{CallerScript, PhoneScript};
use tsunagu_tests::stack::Stack;

async fn created(stack: &Stack, body: Value) -> Value {
    let (status, s) = stack.api("POST", "/v1/sessions", Some(body)).await;
    assert_eq!(status, 201, "{s}");
    s
}

async fn add(stack: &Stack, sid: &str, body: Value) -> (u16, Value) {
    stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/participants"),
            Some(body),
        )
        .await
}

/// A session between A and B, their one proxy number P1: its SID and that number.
async fn a_session_on_one_number(stack: &Stack) -> (String, String) {
    stack.add_proxy_number(P1).await;
    let s = created(stack, session_body(A, B)).await;
    let proxy = s["participants"][0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    (sid(&s), proxy)
}

/// A calls `proxy` and B answers: true when B's phone rang.
async fn b_is_reached(stack: &Stack, proxy: &str) -> bool {
    let sim = stack.sim();
    let (a, b) = (e164(A), e164(B));
    sim.set_phone(
        &b,
        PhoneScript::talks(Duration::from_secs(2), Duration::from_secs(10)),
    );
    let before = sim.calls().iter().filter(|c| c.to == b).count();
    sim.dial_in(&a, proxy, CallerScript::default()).await;
    stack.finish_calls().await;
    sim.calls().iter().filter(|c| c.to == b).count() > before
}

#[tokio::test]
async fn a_participant_lifecycle_from_an_empty_session_to_a_removed_party() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    stack.add_proxy_number(P2).await;

    let s = created(&stack, json!({"unique_name": "order-77"})).await;
    assert_eq!(s["participants"], json!([]));
    let sid = sid(&s);
    assert!(items(&stack, "PARTICIPANT#").await.is_empty());

    let (status, a) = add(
        &stack,
        &sid,
        json!({"identifier": A, "friendly_name": "購入者"}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["session_sid"], sid.as_str());
    assert!(
        items(&stack, "ROUTE#").await.is_empty(),
        "one party alone has no route"
    );
    // The same person twice is refused and changes nothing.
    let (status, p) = add(&stack, &sid, json!({"identifier": A})).await;
    assert_eq!((status, &p["code"]), (400, &json!(80103)), "{p}");

    let (status, b) = add(&stack, &sid, json!({"identifier": B})).await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(
        b["proxy_identifier"], a["proxy_identifier"],
        "the second shares the first one's proxy number"
    );
    assert_eq!(items(&stack, "ROUTE#").await.len(), 2);

    let (status, third) = add(&stack, "order-77", json!({"identifier": "070-1111-2222"})).await;
    assert_eq!((status, &third["code"]), (400, &json!(80609)), "{third}");
    assert_eq!(items(&stack, "PARTICIPANT#").await.len(), 2);

    let (status, list) = stack
        .api("GET", &format!("/v1/sessions/{sid}/participants"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["participants"].as_array().unwrap().len(), 2, "{list}");
    let b_sid = b["sid"].as_str().unwrap();
    let (status, one) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{sid}/participants/{b_sid}"),
            None,
        )
        .await;
    assert_eq!((status, &one), (200, &b));

    let proxy = a["proxy_identifier"].as_str().unwrap().to_owned();
    assert!(b_is_reached(&stack, &proxy).await, "the call went through");

    let (status, _) = stack
        .api(
            "DELETE",
            &format!("/v1/sessions/{sid}/participants/{b_sid}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        items(&stack, "ROUTE#").await.is_empty(),
        "routes gone with B"
    );
    assert_eq!(
        items(&stack, "PARTICIPANT#").await.len(),
        1,
        "A's slot stays"
    );
    let (status, gone) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{sid}/participants/{b_sid}"),
            None,
        )
        .await;
    assert_eq!((status, &gone["code"]), (404, &json!(20404)));

    let heard_before = stack.sim().heard_by(&e164(A)).len();
    assert!(
        !b_is_reached(&stack, &proxy).await,
        "B is no longer dialled"
    );
    let heard = stack.sim().heard_by(&e164(A));
    assert_eq!(heard.len(), heard_before + 1, "{heard:?}");
    assert!(
        heard.last().unwrap().contains("お取り扱いしておりません"),
        "{heard:?}"
    );

    // Closing releases A's slot and the number's count.
    stack
        .api("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    assert!(items(&stack, "PARTICIPANT#").await.is_empty());
    let (_, numbers) = stack.api("GET", "/v1/numbers", None).await;
    assert!(
        numbers["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["in_use"] == 0),
        "{numbers}"
    );
}

#[tokio::test]
async fn a_named_proxy_identifier_is_honoured_when_free_and_refused_when_taken_or_not_in_the_pool()
{
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    stack.add_proxy_number(P2).await;
    // P2 reserved: never picked unless named, so B getting it shows the name was honoured.
    let p2 = format!("/v1/numbers/{}", e164(P2).replace('+', "%2B"));
    let (code, n) = stack
        .api("POST", &p2, Some(json!({"is_reserved": true})))
        .await;
    assert_eq!(code, 200, "{n}");
    let s = created(&stack, json!({"participants": [{"identifier": A}]})).await;
    let sid = sid(&s);
    assert_eq!(s["participants"][0]["proxy_identifier"], e164(P1).as_str());
    // B already has P2 in another open session (with C): I1 forbids a second one.
    let other = created(
        &stack,
        json!({"participants": [
            {"identifier": B, "proxy_identifier": P2},
            {"identifier": "070-1111-2222"}]}),
    )
    .await;

    let before = item_count(&stack).await;
    let (code, p) = add(
        &stack,
        &sid,
        json!({"identifier": B, "proxy_identifier": P2}),
    )
    .await;
    assert_eq!((code, &p["code"]), (409, &json!(80604)), "{p}");
    let (code, p) = add(
        &stack,
        &sid,
        json!({"identifier": B, "proxy_identifier": "050-3999-0000"}),
    )
    .await;
    assert_eq!((code, &p["code"]), (400, &json!(80605)), "{p}");
    assert_eq!(item_count(&stack).await, before, "refusals wrote nothing");
    let (_, listed) = stack
        .api("GET", &format!("/v1/sessions/{sid}/participants"), None)
        .await;
    assert_eq!(
        listed["participants"].as_array().unwrap().len(),
        1,
        "{listed}"
    );

    // B's other session closed, P2 is free for B and is what B gets, not A's P1 (which B
    // would otherwise share).
    let (code, _) = stack
        .api(
            "DELETE",
            &format!("/v1/sessions/{}", other["sid"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, b) = add(
        &stack,
        &sid,
        json!({"identifier": B, "proxy_identifier": P2}),
    )
    .await;
    assert_eq!(code, 201, "{b}");
    assert_eq!(b["proxy_identifier"], e164(P2).as_str(), "{b}");
    // A calls P1 and reaches B, who sees A calling from P2: B's number for A.
    assert!(
        b_is_reached(&stack, &e164(P1)).await,
        "the call went through"
    );
    let to_b = stack
        .sim()
        .calls()
        .into_iter()
        .rfind(|c| c.to == e164(B))
        .unwrap();
    assert_eq!(to_b.from, e164(P2));
}

#[tokio::test]
async fn fifty_concurrent_adds_never_double_route_a_participant() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    stack.add_proxy_number(P2).await;

    // Fifty sessions, each with its own B, then A added to all of them at once.
    let mut sids = Vec::new();
    for i in 0..50 {
        let b = format!("080-5555-{i:04}");
        let s = created(&stack, json!({"participants": [{"identifier": b}]})).await;
        sids.push(sid(&s));
    }
    let requests = sids.iter().map(|sid| {
        let stack = &stack;
        async move {
            // The emulator answers one request at a time: fifty adds and their retries
            // take longer than the API client's 5 s, which is about the network, not this.
            let r = stack
                .http
                .post(format!("{}/v1/sessions/{sid}/participants", stack.url))
                .timeout(Duration::from_secs(120))
                .json(&json!({"identifier": A}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    });
    let answers = futures::future::join_all(requests).await;
    let added = answers.iter().filter(|(s, _)| *s == 201).count();
    let codes: Vec<(u16, Value)> = answers
        .iter()
        .map(|(s, b)| (*s, b["code"].clone()))
        .collect();
    assert_eq!(
        added, 2,
        "A holds one open session per proxy number: {codes:?}"
    );
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s != 201)
            .all(|(s, b)| *s == 409 && b["code"] == 80208),
        "{codes:?}"
    );
    let mut a_proxies: Vec<String> = items(&stack, "ROUTE#")
        .await
        .into_iter()
        .filter(|i| i["sk"].as_s().unwrap() == &format!("CALLER#{}", e164(A)))
        .map(|i| i["pk"].as_s().unwrap().clone())
        .collect();
    a_proxies.sort();
    a_proxies.dedup();
    assert_eq!(
        a_proxies.len(),
        2,
        "A's two routes are on two proxy numbers"
    );
    let a_slots = items(&stack, &format!("PARTICIPANT#{}", e164(A))).await;
    assert_eq!(a_slots.len(), 2, "refused adds wrote nothing");
}

#[tokio::test]
async fn a_closed_session_is_reopened_and_routes_again() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = created(
        &stack,
        json!({"unique_name": "order-88", "participants": [{"identifier": A}, {"identifier": B}]}),
    )
    .await;
    let sid = sid(&s);
    let proxy = s["participants"][0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned();

    // Reopening an open session, or asking for `open`, is 80608 and changes nothing.
    for status in ["in-progress", "open"] {
        let (code, p) = stack
            .api(
                "POST",
                &format!("/v1/sessions/{sid}"),
                Some(json!({"status": status})),
            )
            .await;
        assert_eq!((code, &p["code"]), (400, &json!(80608)), "{status}: {p}");
    }

    let (code, closed) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}"),
            Some(json!({"status": "closed"})),
        )
        .await;
    assert_eq!(
        (code, &closed["status"]),
        (200, &json!("closed")),
        "{closed}"
    );
    assert!(items(&stack, "ROUTE#").await.is_empty());
    assert!(
        !b_is_reached(&stack, &proxy).await,
        "a closed session routes nothing"
    );

    let (code, reopened) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}"),
            Some(json!({"status": "in-progress", "ttl": 3600})),
        )
        .await;
    assert_eq!(code, 200, "{reopened}");
    assert_eq!(reopened["status"], "in-progress");
    assert_eq!(reopened["closed_reason"], Value::Null);
    assert_eq!(reopened["ttl"], 3600);
    assert_eq!(
        reopened["participants"][0]["proxy_identifier"],
        proxy.as_str(),
        "the old number is still free for both: kept"
    );
    let (_, by_name) = stack.api("GET", "/v1/sessions/order-88", None).await;
    assert_eq!(
        by_name["sid"],
        sid.as_str(),
        "its unique_name is claimed again"
    );
    assert!(b_is_reached(&stack, &proxy).await, "calls route again");

    // Closed again, and A and B meet in a new session on the only number: reopening the
    // old one would route A twice on it (I1), and no other number is free.
    stack
        .api("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    created(&stack, session_body(A, B)).await;
    let (code, p) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}"),
            Some(json!({"status": "in-progress"})),
        )
        .await;
    assert_eq!((code, &p["code"]), (409, &json!(80208)), "{p}");
    let (_, still) = stack.api("GET", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!(still["status"], "closed");
}

#[tokio::test]
async fn an_update_moves_the_end_and_refuses_a_closed_session() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let s = created(&stack, session_body(A, B)).await;
    let sid = sid(&s);
    let (code, u) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}"),
            Some(json!({"date_expiry": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((code, &u["code"]), (400, &json!(140004)), "{u}");
    let expiry = tsunagu::clock::iso(tsunagu::clock::epoch(stack.clock.now()) + 7_200);
    let (code, u) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}"),
            Some(json!({"date_expiry": expiry, "ttl": 600})),
        )
        .await;
    assert_eq!(code, 200, "{u}");
    assert_eq!(
        (&u["date_expiry"], &u["ttl"]),
        (&json!(expiry), &json!(600))
    );
    let routes = items(&stack, "ROUTE#").await;
    assert_eq!(routes.len(), 2);
    for r in routes {
        assert!(r.contains_key("date_expiry"), "routes carry the new end");
    }
    let (code, p) = stack
        .api("POST", &format!("/v1/sessions/{sid}"), Some(json!({})))
        .await;
    assert_eq!((code, &p["code"]), (400, &json!(80701)), "{p}");
    stack
        .api("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    let (code, p) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}"),
            Some(json!({"ttl": 60})),
        )
        .await;
    assert_eq!((code, &p["code"]), (409, &json!(80607)), "{p}");
}

#[tokio::test]
async fn a_number_is_read_and_reserved() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let path = format!("/v1/numbers/{}", e164(P1).replace('+', "%2B"));
    let (code, n) = stack.api("GET", &path, None).await;
    assert_eq!((code, &n["is_reserved"]), (200, &json!(false)), "{n}");
    let (code, n) = stack
        .api("POST", &path, Some(json!({"is_reserved": true})))
        .await;
    assert_eq!((code, &n["is_reserved"]), (200, &json!(true)), "{n}");
    // Reserved, the only number is no longer allocated automatically (80207).
    let (code, p) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!((code, &p["code"]), (409, &json!(80207)), "{p}");
    let (code, n) = stack
        .api("POST", &path, Some(json!({"is_reserved": false})))
        .await;
    assert_eq!((code, &n["is_reserved"]), (200, &json!(false)));
    created(&stack, session_body(A, B)).await;
    let (code, p) = stack.api("GET", "/v1/numbers/%2B815000000000", None).await;
    assert_eq!((code, &p["code"]), (404, &json!(20404)), "{p}");
    let (code, p) = stack
        .api(
            "POST",
            "/v1/numbers/%2B815000000000",
            Some(json!({"is_reserved": true})),
        )
        .await;
    assert_eq!((code, &p["code"]), (404, &json!(20404)), "{p}");
}

#[tokio::test]
async fn sessions_are_listed_newest_first_a_page_at_a_time() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    // Seven sessions a second apart (the stack's clock), the third closed.
    let mut sids = Vec::new();
    for i in 0..7 {
        let s = created(&stack, json!({"unique_name": format!("list-{i}")})).await;
        sids.push(sid(&s));
        stack.clock.advance(Duration::from_secs(1));
    }
    stack
        .api("DELETE", &format!("/v1/sessions/{}", sids[2]), None)
        .await;

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            None => "/v1/sessions?page_size=3".to_owned(),
            Some(t) => format!("/v1/sessions?page_size=3&page_token={t}"),
        };
        let (code, page) = stack.api("GET", &path, None).await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["meta"]["page_size"], 3);
        pages += 1;
        for s in page["sessions"].as_array().unwrap() {
            seen.push(sid(s));
        }
        match page["meta"]["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    let newest_first: Vec<String> = sids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    assert!(pages >= 3, "more than one page: {pages}");

    let (_, closed) = stack.api("GET", "/v1/sessions?status=closed", None).await;
    let closed: Vec<String> = closed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(sid)
        .collect();
    assert_eq!(closed, [sids[2].clone()]);
    let (_, open) = stack
        .api("GET", "/v1/sessions?status=open&page_size=5", None)
        .await;
    assert_eq!(open["sessions"].as_array().unwrap().len(), 5, "{open}");
    assert_eq!(open["meta"]["page_size"], 5);

    for bad in [
        "/v1/sessions?page_token=not-a-token",
        "/v1/sessions?page_size=0",
        "/v1/sessions?page_size=1001",
        "/v1/sessions?status=opened",
    ] {
        let (code, p) = stack.api("GET", bad, None).await;
        assert_eq!((code, &p["code"]), (400, &json!(80701)), "{bad}: {p}");
    }
}

#[tokio::test]
async fn an_interaction_is_read_by_its_sid() {
    let stack = stack().await;
    let (sid, proxy) = a_session_on_one_number(&stack).await;
    assert!(b_is_reached(&stack, &proxy).await);
    let (_, log) = stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    let leg = &log["interactions"][0];
    let leg_sid = leg["sid"].as_str().unwrap();
    let (code, one) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{sid}/interactions/{leg_sid}"),
            None,
        )
        .await;
    assert_eq!((code, &one), (200, leg));
    let (code, p) = stack
        .api(
            "GET",
            &format!("/v1/sessions/{sid}/interactions/KI00000000000000000000000000000000"),
            None,
        )
        .await;
    assert_eq!((code, &p["code"]), (404, &json!(20404)), "{p}");
}

#[tokio::test]
async fn a_sessions_interactions_are_paged_oldest_first() {
    let stack = stack().await;
    let (sid, proxy) = a_session_on_one_number(&stack).await;
    // Two calls: four legs (each caller's and each dialled party's).
    assert!(b_is_reached(&stack, &proxy).await);
    assert!(b_is_reached(&stack, &proxy).await);
    let (_, all) = stack
        .api("GET", &format!("/v1/sessions/{sid}/interactions"), None)
        .await;
    let every = all["interactions"].as_array().unwrap().clone();
    assert_eq!(every.len(), 4, "{all}");
    assert_eq!(
        all["meta"],
        json!({"page_size": 50, "next_page_token": null})
    );

    let mut seen = Vec::new();
    let mut path = format!("/v1/sessions/{sid}/interactions?page_size=3");
    let mut pages = 0;
    loop {
        let (code, page) = stack.api("GET", &path, None).await;
        assert_eq!(code, 200, "{page}");
        pages += 1;
        assert_eq!(page["meta"]["page_size"], 3);
        assert_eq!(
            page["total_cost"], all["total_cost"],
            "the session's, every page"
        );
        seen.extend(page["interactions"].as_array().unwrap().iter().cloned());
        match page["meta"]["next_page_token"].as_str() {
            Some(token) => {
                path = format!("/v1/sessions/{sid}/interactions?page_size=3&page_token={token}")
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, every, "the pages, in order, are the whole log");

    for bad in ["page_size=0", "page_size=1001", "page_token=bm90LWEtY2FsbA"] {
        let (code, p) = stack
            .api(
                "GET",
                &format!("/v1/sessions/{sid}/interactions?{bad}"),
                None,
            )
            .await;
        assert_eq!((code, &p["code"]), (400, &json!(80701)), "{bad}: {p}");
    }
}
