//! CPU per webhook, without I/O: parse Twilio's form body, check X-Twilio-Signature, write
//! the TwiML answer. docs/DESIGN.md, Performance budgets, allows tens of microseconds.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tsunagu::phone::PhoneNumber;
use tsunagu::signature;
use tsunagu::twiml::{Dial, Number, Response, Say};

const TOKEN: &str = "local-auth-token-not-a-secret-00";
const URL: &str =
    "https://abc123defg.execute-api.ap-northeast-1.amazonaws.com/twilio/voice/inbound";
const BODY: &[u8] = b"AccountSid=AC0123456789abcdef0123456789abcdef&ApiVersion=2010-04-01&CallSid=CA11111111111111111111111111111111&CallStatus=ringing&Called=%2B815031234567&CalledCountry=JP&Caller=%2B819012345678&CallerCountry=JP&Direction=inbound&From=%2B819012345678&FromCountry=JP&To=%2B815031234567&ToCountry=JP";

fn inbound_webhook(c: &mut Criterion) {
    let params = signature::parse_form(BODY);
    let header = signature::compute(TOKEN, URL, &params);

    c.bench_function("parse_form", |b| {
        b.iter(|| signature::parse_form(black_box(BODY)))
    });
    c.bench_function("signature::is_valid", |b| {
        b.iter(|| signature::is_valid(TOKEN, black_box(URL), black_box(&params), &header))
    });
    c.bench_function("twiml dial", |b| {
        b.iter(|| {
            Response::new()
                .dial(
                    Dial::new()
                        .number(
                            Number::new("+818098765432")
                                .status_callback("https://abc123defg.execute-api.ap-northeast-1.amazonaws.com/twilio/voice/status?session=KC0123456789abcdef0123456789abcdef&participant=KP0123456789abcdef0123456789abcdef")
                                .status_callback_event(&["initiated", "ringing", "answered", "completed"]),
                        )
                        .caller_id("+815031234567")
                        .time_limit(3600)
                        .timeout(30)
                        .answer_on_bridge(true),
                )
                .to_xml()
        })
    });
    c.bench_function("refusal twiml (Say + Hangup)", |b| {
        b.iter(|| {
            Response::new()
                .say(
                    Say::new("おかけになった番号は、現在お取り扱いしておりません。")
                        .language("ja-JP")
                        .voice("Polly.Mizuki"),
                )
                .hangup()
                .to_xml()
        })
    });
    c.bench_function(
        "whole inbound webhook CPU (parse + verify + route numbers + TwiML)",
        |b| {
            b.iter(|| {
                let params = signature::parse_form(black_box(BODY));
                assert!(signature::is_valid(TOKEN, URL, &params, &header));
                let get = |k: &str| {
                    params
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or("")
                };
                let from = PhoneNumber::parse(get("From")).unwrap();
                let to = PhoneNumber::parse(get("To")).unwrap();
                black_box((from.masked().to_string(), to.class()));
                Response::new()
                    .dial(
                        Dial::new()
                            .number(Number::new("+818098765432"))
                            .caller_id(to.as_str())
                            .time_limit(3600),
                    )
                    .to_xml()
            })
        },
    );
}

criterion_group!(benches, inbound_webhook);
criterion_main!(benches);
