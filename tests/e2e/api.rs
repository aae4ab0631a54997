//! The platform API through the gateway, against the emulator: sessions, numbers,
//! idempotency, invariant I1 under concurrency, and bad input that changes nothing.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn a_session_is_created_read_and_closed() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    stack.add_proxy_number(P2).await;

    let (status, s) = stack
        .api(
            "POST",
            "/v1/sessions",
            Some(json!({
                "unique_name": "order-1",
                "ttl": 600,
                "participants": [
                    {"identifier": A, "friendly_name": "購入者"},
                    {"identifier": "+81 80 9876 5432"}
                ]
            })),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["status"], "open");
    assert_eq!(s["mode"], "voice-only");
    assert_eq!(s["participants"][0]["identifier"], "+819012345678");
    assert_eq!(s["participants"][1]["identifier"], "+818098765432");
    assert_eq!(s["participants"][0]["friendly_name"], "購入者");
    // One number free for both is preferred: each party knows the same proxy.
    assert_eq!(
        s["participants"][0]["proxy_identifier"],
        s["participants"][1]["proxy_identifier"]
    );
    let sid = s["sid"].as_str().unwrap().to_owned();

    let (status, by_sid) = stack.api("GET", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(by_sid, s);
    let (status, by_name) = stack.api("GET", "/v1/sessions/order-1", None).await;
    assert_eq!((status, by_name["sid"].as_str()), (200, Some(sid.as_str())));

    let (_, numbers) = stack.api("GET", "/v1/numbers", None).await;
    let in_use: u64 = numbers["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["in_use"].as_u64().unwrap())
        .sum();
    assert_eq!(in_use, 1);

    let (status, closed) = stack
        .api("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["closed_reason"], "closed-by-api");
    assert!(
        items(&stack, "ROUTE#").await.is_empty(),
        "routes released with the close (I3)"
    );
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

    // DELETE is idempotent.
    let (status, again) = stack
        .api("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    assert_eq!((status, &again["status"]), (200, &json!("closed")));
    // The participants are free again on that number.
    let (status, _) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn fifty_concurrent_creates_never_double_route_a_participant() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    stack.add_proxy_number(P2).await;

    // Fifty sessions at once, all with participant A and each with a different B.
    let requests = (0..50).map(|i| {
        let stack = &stack;
        async move {
            let b = format!("080-5555-{i:04}");
            stack
                .api("POST", "/v1/sessions", Some(session_body(A, &b)))
                .await
        }
    });
    let answers = futures::future::join_all(requests).await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let no_number = answers
        .iter()
        .filter(|(s, b)| *s == 409 && b["code"] == 80208)
        .count();
    assert_eq!(
        created, 2,
        "A can hold one open session per proxy number, and there are two"
    );
    assert_eq!(
        no_number,
        48,
        "every other create is refused with 80208: {:?}",
        answers
            .iter()
            .map(|(s, b)| (s, &b["code"]))
            .collect::<Vec<_>>()
    );

    let routes_for_a: Vec<String> = items(&stack, "ROUTE#")
        .await
        .into_iter()
        .filter(|i| i["sk"].as_s().unwrap() == &format!("CALLER#{}", e164(A)))
        .map(|i| i["pk"].as_s().unwrap().clone())
        .collect();
    let mut distinct = routes_for_a.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(routes_for_a.len(), 2);
    assert_eq!(
        distinct.len(),
        2,
        "A's two routes are on two different proxy numbers"
    );
    let (_, numbers) = stack.api("GET", "/v1/numbers", None).await;
    let in_use: Vec<u64> = numbers["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["in_use"].as_u64().unwrap())
        .collect();
    assert_eq!(in_use, vec![1, 1], "use counts match the sessions created");
    assert_eq!(
        items(&stack, "SESSION#").await.len(),
        2,
        "refused creates wrote nothing"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_problem_and_changes_nothing() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let before = item_count(&stack).await;
    let client = &stack.http;

    // Raw bodies the JSON helper could not send.
    let raw = |method: reqwest::Method, path: &str, ct: &str, body: String| {
        client
            .request(method, format!("{}{path}", stack.url))
            .header("content-type", ct)
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, u64)> = vec![
        (
            raw(
                reqwest::Method::POST,
                "/v1/sessions",
                "application/json",
                "{\"participants\": [".into(),
            ),
            400,
            140000,
        ),
        (
            raw(
                reqwest::Method::POST,
                "/v1/sessions",
                "application/json",
                "".into(),
            ),
            400,
            140000,
        ),
        (
            raw(
                reqwest::Method::POST,
                "/v1/sessions",
                "application/json",
                r#"{"participants": "A and B"}"#.into(),
            ),
            400,
            80701,
        ),
        (
            raw(
                reqwest::Method::POST,
                "/v1/sessions",
                "application/json",
                r#"{"ttl": -5, "participants": []}"#.into(),
            ),
            400,
            80701,
        ),
        (
            raw(
                reqwest::Method::POST,
                "/v1/sessions",
                "text/plain",
                "hello".into(),
            ),
            415,
            141500,
        ),
        (
            raw(
                reqwest::Method::POST,
                "/v1/sessions",
                "application/json",
                format!("{{\"unique_name\":\"{}\"}}", "x".repeat(20_000)),
            ),
            413,
            141300,
        ),
        (
            raw(
                reqwest::Method::POST,
                "/v1/numbers",
                "application/json",
                r#"{"phone_number": 5031234567}"#.into(),
            ),
            400,
            80701,
        ),
        (
            raw(
                reqwest::Method::POST,
                "/v1/numbers",
                "application/json",
                r#"{"phone_number": "03-12"}"#.into(),
            ),
            400,
            80701,
        ),
    ];
    for (request, status, code) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let got_status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (got_status, body["code"].as_u64().unwrap()),
            (status, code),
            "{body}"
        );
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }

    let json_cases = [
        (
            "POST",
            "/v1/sessions",
            json!({"participants": [{"identifier": "090-1234"}, {"identifier": B}]}),
            400,
            80701,
            "participants[0].identifier",
        ),
        (
            "POST",
            "/v1/sessions",
            json!({"participants": [{"identifier": A}, {"identifier": A}]}),
            400,
            80103,
            "two different",
        ),
        (
            "POST",
            "/v1/sessions",
            json!({"participants": [{"identifier": A, "proxy_identifier": A}]}),
            400,
            80701,
            "own number",
        ),
        (
            "POST",
            "/v1/sessions",
            json!({"participants": [{"identifier": A}, {"identifier": B}, {"identifier": "070-1111-2222"}]}),
            400,
            80609,
            "at most two",
        ),
        (
            "POST",
            "/v1/sessions",
            json!({"participants": [{"identifier": A}, {"identifier": "+1 415 555 0123"}]}),
            400,
            140002,
            "ALLOWED_COUNTRIES",
        ),
        (
            "POST",
            "/v1/sessions",
            json!({"mode": "voice-and-message", "participants": []}),
            400,
            80616,
            "SMS",
        ),
        (
            "POST",
            "/v1/sessions",
            json!({"participants": [{"identifier": A, "proxy_identifier": P2}, {"identifier": B}]}),
            400,
            80605,
            "not in the number pool",
        ),
        (
            "POST",
            "/v1/sessions",
            json!({"participants": [{"identifier": A}, {"identifier": B}], "colour": "red"}),
            400,
            80701,
            "unknown field",
        ),
    ];
    for (method, path, body, status, code, needle) in json_cases {
        let (got, problem) = stack.api(method, path, Some(body.clone())).await;
        assert_eq!(
            (got, problem["code"].as_u64().unwrap()),
            (status, code),
            "{body} → {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{problem}"
        );
    }

    for (method, path, status, code) in [
        (
            "GET",
            "/v1/sessions/KC00000000000000000000000000000000",
            404,
            20404,
        ),
        ("GET", "/v1/sessions/no-such-name", 404, 20404),
        (
            "DELETE",
            "/v1/sessions/KC00000000000000000000000000000000",
            404,
            20404,
        ),
        (
            "GET",
            "/v1/sessions/KC00000000000000000000000000000000/interactions",
            404,
            20404,
        ),
        ("DELETE", "/v1/numbers/%2B815099999999", 404, 20404),
        ("DELETE", "/v1/numbers/not-a-number", 400, 80701),
    ] {
        let (got, problem) = stack.api(method, path, None).await;
        assert_eq!(
            (got, problem["code"].as_u64()),
            (status, Some(code)),
            "{method} {path}: {problem}"
        );
    }
    assert_eq!(
        item_count(&stack).await,
        before,
        "no bad request wrote anything"
    );
}

#[tokio::test]
async fn the_number_pool_guards_numbers_in_use() {
    let stack = stack().await;
    let added = stack.add_proxy_number(P1).await;
    assert_eq!(added["phone_number"], "+815031234567");
    assert_eq!(added["is_reserved"], false);
    let (status, dup) = stack
        .api(
            "POST",
            "/v1/numbers",
            Some(json!({"phone_number": "+815031234567"})),
        )
        .await;
    assert_eq!((status, dup["code"].as_u64()), (409, Some(140901)));

    let (_, s) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    let (status, busy) = stack
        .api("DELETE", "/v1/numbers/%2B815031234567", None)
        .await;
    assert_eq!(
        (status, busy["code"].as_u64()),
        (409, Some(80611)),
        "{busy}"
    );

    // Reserved numbers are only used when asked for.
    let (status, _) = stack
        .api(
            "POST",
            "/v1/numbers",
            Some(json!({"phone_number": P2, "is_reserved": true})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, refused) = stack
        .api(
            "POST",
            "/v1/sessions",
            Some(session_body(A, "080-2222-3333")),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_u64()),
        (409, Some(80208)),
        "{refused}"
    );
    let (status, asked) = stack
        .api("POST", "/v1/sessions", Some(json!({"participants": [{"identifier": A, "proxy_identifier": P2}, {"identifier": "080-2222-3333"}]})))
        .await;
    assert_eq!(status, 201, "{asked}");
    assert_eq!(
        asked["participants"][0]["proxy_identifier"],
        "+815031234568"
    );
    // Asking for a number A already uses is the identifier conflict 80604.
    let (status, clash) = stack
        .api("POST", "/v1/sessions", Some(json!({"participants": [{"identifier": A, "proxy_identifier": P2}, {"identifier": "080-4444-5555"}]})))
        .await;
    assert_eq!(
        (status, clash["code"].as_u64()),
        (409, Some(80604)),
        "{clash}"
    );

    // The second session's other participant got the unreserved P1: close both to free it.
    for session in [&s, &asked] {
        stack
            .api(
                "DELETE",
                &format!("/v1/sessions/{}", session["sid"].as_str().unwrap()),
                None,
            )
            .await;
    }
    let (status, _) = stack
        .api("DELETE", "/v1/numbers/%2B815031234567", None)
        .await;
    assert_eq!(status, 204);
    let (_, numbers) = stack.api("GET", "/v1/numbers", None).await;
    assert_eq!(numbers["numbers"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unique_names_are_unique() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    stack.add_proxy_number(P2).await;
    let body = |b: &str| json!({"unique_name": "order-7", "participants": [{"identifier": A}, {"identifier": b}]});
    assert_eq!(
        stack.api("POST", "/v1/sessions", Some(body(B))).await.0,
        201
    );
    let (status, p) = stack
        .api("POST", "/v1/sessions", Some(body("080-1212-3434")))
        .await;
    assert_eq!((status, p["code"].as_u64()), (409, Some(80603)), "{p}");
    assert_eq!(items(&stack, "SESSION#").await.len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let post = |body: serde_json::Value| {
        stack
            .http
            .post(format!("{}/v1/sessions", stack.url))
            .header("idempotency-key", "create-order-42")
            .json(&body)
            .send()
    };
    let first = post(session_body(A, B)).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    let second = post(session_body(A, B)).await.unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(
        first["sid"], second["sid"],
        "the retry returns the same session"
    );
    assert_eq!(
        items(&stack, "SESSION#").await.len(),
        1,
        "and creates nothing new"
    );

    let other = post(session_body(A, "080-7777-8888")).await.unwrap();
    assert_eq!(other.status(), 422);
    let other: serde_json::Value = other.json().await.unwrap();
    assert_eq!(other["code"], 142200);
}

/// Found by `make fuzz`: a key with bytes outside visible ASCII was skipped, and the request
/// ran without idempotency. It is refused and changes nothing.
#[tokio::test]
async fn an_idempotency_key_with_non_ascii_bytes_is_refused() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    for key in [
        http::HeaderValue::from_bytes("注文-1".as_bytes()).unwrap(),
        http::HeaderValue::from_bytes(b"order\xff1").unwrap(),
    ] {
        let response = stack
            .http
            .post(format!("{}/v1/sessions", stack.url))
            .header("idempotency-key", key)
            .json(&session_body(A, B))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let p: serde_json::Value = response.json().await.unwrap();
        assert_eq!(p["code"], 80701, "{p}");
        assert!(
            p["detail"].as_str().unwrap().contains("Idempotency-Key"),
            "{p}"
        );
    }
    assert_eq!(items(&stack, "SESSION#").await.len(), 0);
}

#[tokio::test]
async fn extend_moves_the_end_and_refuses_what_it_cannot_move() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    stack.add_proxy_number(P2).await;
    let expiry = (stack.clock.now() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (_, timed) = stack
        .api("POST", "/v1/sessions", Some(json!({"date_expiry": expiry, "participants": [{"identifier": A}, {"identifier": B}]})))
        .await;
    let sid = timed["sid"].as_str().unwrap();
    let (status, extended) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/extend"),
            Some(json!({"seconds": 900})),
        )
        .await;
    assert_eq!(status, 200, "{extended}");
    let before = tsunagu::clock::parse_iso(timed["date_expiry"].as_str().unwrap()).unwrap();
    let after = tsunagu::clock::parse_iso(extended["date_expiry"].as_str().unwrap()).unwrap();
    assert_eq!(after - before, 900);
    let route = stack
        .app
        .store
        .get_route(
            &tsunagu::phone::PhoneNumber::parse(
                timed["participants"][0]["proxy_identifier"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap(),
            &tsunagu::phone::PhoneNumber::parse(A).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        route.date_expiry,
        Some(after),
        "the route's copy moves with it"
    );

    let (_, open_ended) = stack
        .api(
            "POST",
            "/v1/sessions",
            Some(session_body(A, "080-3333-4444")),
        )
        .await;
    let other = open_ended["sid"].as_str().unwrap();
    for (path, body, status, code) in [
        (
            format!("/v1/sessions/{sid}/extend"),
            json!({"seconds": 0}),
            400,
            80701,
        ),
        (
            format!("/v1/sessions/{sid}/extend"),
            json!({"minutes": 5}),
            400,
            80701,
        ),
        (
            format!("/v1/sessions/{other}/extend"),
            json!({"seconds": 60}),
            400,
            140001,
        ),
        (
            "/v1/sessions/KC00000000000000000000000000000000/extend".to_owned(),
            json!({"seconds": 60}),
            404,
            20404,
        ),
    ] {
        let (got, p) = stack.api("POST", &path, Some(body.clone())).await;
        assert_eq!(
            (got, p["code"].as_u64()),
            (status, Some(code)),
            "{path} {body}: {p}"
        );
    }
    stack
        .api("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    let (got, p) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{sid}/extend"),
            Some(json!({"seconds": 60})),
        )
        .await;
    assert_eq!((got, p["code"].as_u64()), (409, Some(80607)));
}

/// The input rules of issue 9, each through `/v1`: each refusal has its code and writes
/// nothing.
#[tokio::test]
async fn hostile_names_numbers_keys_and_dates_are_refused() {
    let stack = stack().await;
    stack.add_proxy_number(P1).await;
    let before = item_count(&stack).await;
    let participants = |a: &str, b: &str| json!([{"identifier": a}, {"identifier": b}]);
    let cases = [
        // A bidi override (U+202E) reverses what follows it; a zero-width space hides.
        (
            json!({"unique_name": "order\u{202e}1", "participants": participants(A, B)}),
            80701,
        ),
        (
            json!({"participants": [{"identifier": A, "friendly_name": "山\u{200b}田"}, {"identifier": B}]}),
            80701,
        ),
        (
            json!({"participants": participants(A, "+1 415 555 0100")}),
            140002,
        ),
        (
            json!({"participants": participants(A, "+44 20 7946 0000")}),
            140002,
        ),
        (json!({"participants": participants(A, P1)}), 140003),
        (
            json!({"date_expiry": "9999-12-31T23:59:59Z", "participants": participants(A, B)}),
            140004,
        ),
    ];
    for (body, code) in cases {
        let (status, p) = stack.api("POST", "/v1/sessions", Some(body.clone())).await;
        assert_eq!(
            (status, p["code"].as_u64()),
            (400, Some(code)),
            "{body}: {p}"
        );
    }
    // A key that is not visible ASCII is refused, not taken for no key.
    for key in ["注文-1".as_bytes(), b"order\xff"] {
        let r = stack
            .http
            .post(format!("{}/v1/sessions", stack.url))
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(key).unwrap(),
            )
            .json(&session_body(A, B))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{key:?}");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["code"], 80701, "{p}");
        assert!(p["detail"].as_str().unwrap().contains("Idempotency-Key"));
    }
    assert_eq!(item_count(&stack).await, before, "nothing was written");

    // An extension may not carry the end past a year ahead either.
    let expiry = tsunagu::clock::iso(stack.app.now() + 364 * 86_400);
    let (status, s) = stack
        .api(
            "POST",
            "/v1/sessions",
            Some(json!({"date_expiry": expiry, "participants": participants(A, B)})),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let (status, p) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{}/extend", sid(&s)),
            Some(json!({"seconds": 2 * 86_400})),
        )
        .await;
    assert_eq!((status, p["code"].as_u64()), (400, Some(140004)), "{p}");
    let (_, read) = stack
        .api("GET", &format!("/v1/sessions/{}", sid(&s)), None)
        .await;
    assert_eq!(
        read["date_expiry"], s["date_expiry"],
        "the end did not move"
    );
}

#[tokio::test]
async fn allowed_countries_opens_participants_to_other_countries() {
    let stack = stack_with(tsunagu_tests::stack::Options {
        // Calls abroad also need their rate, or the session is refused for want of a price.
        env: vec![
            ("ALLOWED_COUNTRIES".into(), "81,1".into()),
            ("RATE_OUTBOUND_FOREIGN_JPY_PER_MIN".into(), "30".into()),
        ],
        ..Default::default()
    })
    .await;
    stack.add_proxy_number(P1).await;
    let (status, s) = stack
        .api(
            "POST",
            "/v1/sessions",
            Some(session_body(A, "+1 415 555 0100")),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let (status, p) = stack
        .api(
            "POST",
            "/v1/sessions",
            Some(session_body(B, "+44 20 7946 0000")),
        )
        .await;
    assert_eq!((status, p["code"].as_u64()), (400, Some(140002)), "{p}");
}

#[tokio::test]
async fn a_foreign_number_allowed_but_without_a_rate_is_refused_and_changes_nothing() {
    // ALLOWED_COUNTRIES admits +1, but RATE_OUTBOUND_FOREIGN_JPY_PER_MIN is unset.
    let stack = stack_with(tsunagu_tests::stack::Options {
        env: vec![("ALLOWED_COUNTRIES".into(), "81,1".into())],
        ..Default::default()
    })
    .await;
    stack.add_proxy_number(P1).await;
    let abroad = "+1 415 555 0100";
    let before = item_count(&stack).await;
    let (status, p) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, abroad)))
        .await;
    assert_eq!((status, p["code"].as_u64()), (400, Some(80701)), "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("RATE_OUTBOUND_FOREIGN_JPY_PER_MIN"),
        "{p}"
    );
    assert_eq!(item_count(&stack).await, before, "no session was written");

    // Added later to a session of A alone, the number is refused the same way.
    let (status, s) = stack
        .api(
            "POST",
            "/v1/sessions",
            Some(json!({"participants": [{"identifier": A}]})),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let before = item_count(&stack).await;
    let (status, p) = stack
        .api(
            "POST",
            &format!("/v1/sessions/{}/participants", sid(&s)),
            Some(json!({"identifier": abroad})),
        )
        .await;
    assert_eq!((status, p["code"].as_u64()), (400, Some(80701)), "{p}");
    assert_eq!(item_count(&stack).await, before, "nothing was written");
    let (_, read) = stack
        .api("GET", &format!("/v1/sessions/{}", sid(&s)), None)
        .await;
    assert_eq!(read["participants"].as_array().unwrap().len(), 1, "{read}");
}

#[tokio::test]
async fn an_empty_pool_refuses_a_session_with_80205_and_writes_nothing() {
    let stack = stack().await;
    let before = item_count(&stack).await;
    let (status, p) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!((status, p["code"].as_u64()), (409, Some(80205)), "{p}");
    assert_eq!(item_count(&stack).await, before, "nothing was written");
    let (_, listed) = stack.api("GET", "/v1/sessions", None).await;
    assert_eq!(listed["sessions"], json!([]), "{listed}");
    // With a number in the pool, the same request is served.
    stack.add_proxy_number(P1).await;
    let (status, s) = stack
        .api("POST", "/v1/sessions", Some(session_body(A, B)))
        .await;
    assert_eq!(status, 201, "{s}");
}

/// A unique name is held while its session is open, and free again once it closes, by
/// DELETE or by expiring; until it is taken again it still finds the closed session.
#[tokio::test]
async fn a_unique_name_is_released_when_its_session_closes_or_expires() {
    let stack = stack_with(tsunagu_tests::stack::Options {
        sweep_every: None,
        ..Default::default()
    })
    .await;
    stack.add_proxy_number(P1).await;
    stack.add_proxy_number(P2).await;
    let body = |expiry: Option<String>| {
        let mut b = json!({"unique_name": "order-77", "participants": [{"identifier": A}, {"identifier": B}]});
        if let Some(e) = expiry {
            b["date_expiry"] = json!(e);
        }
        b
    };
    let (status, first) = stack.api("POST", "/v1/sessions", Some(body(None))).await;
    assert_eq!(status, 201, "{first}");
    let (status, p) = stack.api("POST", "/v1/sessions", Some(body(None))).await;
    assert_eq!(
        (status, p["code"].as_u64()),
        (409, Some(80603)),
        "held while open"
    );

    let (status, _) = stack.api("DELETE", "/v1/sessions/order-77", None).await;
    assert_eq!(status, 200);
    let (_, read) = stack.api("GET", "/v1/sessions/order-77", None).await;
    assert_eq!(
        (read["sid"].clone(), read["status"].clone()),
        (first["sid"].clone(), json!("closed"))
    );

    let expiry = tsunagu::clock::iso(stack.app.now() + 600);
    let (status, second) = stack
        .api("POST", "/v1/sessions", Some(body(Some(expiry))))
        .await;
    assert_eq!(status, 201, "free once closed: {second}");
    let (_, read) = stack.api("GET", "/v1/sessions/order-77", None).await;
    assert_eq!(
        read["sid"], second["sid"],
        "the name now finds the new session"
    );

    // The sweep closes the second one at its date_expiry: the name is free again.
    stack
        .sweep_at(stack.clock.now() + time::Duration::seconds(601))
        .await;
    let (_, read) = stack.api("GET", "/v1/sessions/order-77", None).await;
    assert_eq!(read["closed_reason"], "expired", "{read}");
    let (status, third) = stack.api("POST", "/v1/sessions", Some(body(None))).await;
    assert_eq!(status, 201, "free once expired: {third}");
}
