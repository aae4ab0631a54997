//! A hostile webhook body refused before parsing: its extra memory and its CPU time.
//!
//! The body is the review's: 4.5 MB of `a&a&…` (2.25 M empty pairs), unsigned. The global
//! allocator of this bench binary counts bytes, so the peak extra memory of answering it is
//! measured, not guessed; parsing the same body, as before the guard, is measured alongside.
//!
//! `cargo bench -p tsunagu --bench webhook_guard -- --warm-up-time 1 --measurement-time 3`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use lambda_http::{Body, Request};
use tsunagu::App;
use tsunagu::clock::SystemClock;
use tsunagu::config::Config;
use tsunagu::secrets::{SecretError, SecretSource, TwilioCredentials};

/// Counts live bytes and their peak since the last [`reset_peak`].
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of `f`, beyond what was live when it started.
fn peak_extra<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// The secret must never be read for a refused request.
struct NoSecret;

#[async_trait::async_trait]
impl SecretSource for NoSecret {
    async fn fetch(&self) -> Result<TwilioCredentials, SecretError> {
        panic!("a refused webhook read the secret")
    }
}

fn app() -> Arc<App> {
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some("tsunagu".into()),
        "TWILIO_SECRET_ID" => Some("tsunagu/twilio".into()),
        "PUBLIC_BASE_URL" => Some("https://voice.example.jp".into()),
        _ => None,
    })
    .unwrap();
    let aws = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("ap-northeast-1"))
        .build();
    Arc::new(App::with_secret_source(
        config,
        aws_sdk_dynamodb::Client::new(&aws),
        Arc::new(SystemClock),
        Arc::new(NoSecret),
    ))
}

fn hostile(body: &str) -> Request {
    http::Request::builder()
        .method("POST")
        .uri("https://voice.example.jp/twilio/voice/inbound")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", "Zm9yZ2Vk")
        .body(Body::Text(body.to_owned()))
        .unwrap()
}

fn refusal(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = app();
    let body = "a&".repeat(2_250_000);

    // The request (its 4.5 MB body included) exists before the measurement starts, as it does
    // in Lambda before the handler runs; what is measured is what answering it adds.
    let req = hostile(&body);
    let (status, extra) = peak_extra(|| {
        runtime
            .block_on(tsunagu::webhooks::inbound_call(app.clone(), req))
            .status()
    });
    assert_eq!(status.as_u16(), 413);
    println!(
        "refusing a {} byte body: {} bytes of extra memory at the peak (limit 1 MiB = 1048576)",
        body.len(),
        extra
    );
    assert!(extra < 1 << 20, "{extra} bytes");
    let (pairs, parsed) = peak_extra(|| tsunagu::signature::parse_form(body.as_bytes()).len());
    println!(
        "parsing the same body, as before the guard: {pairs} pairs, {parsed} bytes at the peak"
    );

    c.bench_function("refuse a 4.5 MB webhook body (413, whole handler)", |b| {
        b.iter_batched(
            || hostile(&body),
            |req| runtime.block_on(tsunagu::webhooks::inbound_call(app.clone(), black_box(req))),
            criterion::BatchSize::LargeInput,
        )
    });
    let many = vec!["a=1"; 201].join("&");
    c.bench_function("refuse 201 parameters (400, whole handler)", |b| {
        b.iter_batched(
            || hostile(&many),
            |req| runtime.block_on(tsunagu::webhooks::inbound_call(app.clone(), black_box(req))),
            criterion::BatchSize::SmallInput,
        )
    });
    let req = hostile(&many);
    c.bench_function("webhooks::guard on 201 parameters", |b| {
        b.iter(|| tsunagu::webhooks::guard(black_box(&req)).is_err())
    });
}

criterion_group!(benches, refusal);
criterion_main!(benches);
