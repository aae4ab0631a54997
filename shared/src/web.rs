//! The edge between API Gateway (through `lambda_http`) and the handlers: reading a request's
//! body, path, query and headers, and writing JSON, problem+json and TwiML responses.

use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Serialize, de::DeserializeOwned};

use crate::problem::{self, Problem};

/// Bodies larger than this are refused before parsing; real requests are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// The path as the client sent it, without API Gateway's stage prefix.
pub fn raw_path(req: &Request) -> String {
    let raw = req.raw_http_path();
    if raw.is_empty() {
        req.uri().path().to_owned()
    } else {
        raw.to_owned()
    }
}

/// The query string exactly as received (lambda_http keeps API Gateway's `rawQueryString`).
pub fn raw_query(req: &Request) -> Option<&str> {
    req.uri().query()
}

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn path_param(req: &Request, name: &str) -> Option<String> {
    req.path_parameters().first(name).map(str::to_owned)
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}

/// Parses a JSON body into `T`, refusing wrong media types, oversized bodies, malformed JSON
/// and wrong field types with problems that say what to fix.
pub fn read_json<T: DeserializeOwned>(req: &Request) -> Result<T, Problem> {
    let bytes = body_bytes(req);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            problem::Code::PayloadTooLarge,
            "Payload too large",
            format!(
                "the body has {} bytes; at most {MAX_BODY_BYTES} are accepted",
                bytes.len()
            ),
        ));
    }
    if let Some(ct) = header(req, "content-type") {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                problem::Code::UnsupportedMediaType,
                "Unsupported media type",
                format!("send Content-Type: application/json, not {ct:?}"),
            ));
        }
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::malformed("the body is empty; send a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Problem::invalid(e.to_string()),
        _ => Problem::malformed(format!("the body is not valid JSON: {e}")),
    })
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => with_type(status, "application/json", body),
        Err(e) => problem(
            &Problem::internal(format!("could not encode the response: {e}")),
            None,
        ),
    }
}

pub fn problem(p: &Problem, instance: Option<&str>) -> Response<Body> {
    with_type(p.status, problem::CONTENT_TYPE, p.to_json(instance))
}

pub fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

pub fn twiml(xml: String) -> Response<Body> {
    with_type(StatusCode::OK, crate::twiml::CONTENT_TYPE, xml)
}

pub fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::Text(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: Option<&str>, body: &str) -> Request {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("https://x.test/v1/sessions");
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(Body::Text(body.to_owned())).unwrap()
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Thing {
        ttl: u64,
    }

    #[test]
    fn json_errors_are_classified() {
        let e = read_json::<Thing>(&request(Some("application/json"), "{")).unwrap_err();
        assert_eq!(e.code, problem::Code::MalformedBody);
        let e = read_json::<Thing>(&request(Some("application/json"), r#"{"ttl":"soon"}"#))
            .unwrap_err();
        assert_eq!(e.code, problem::Code::InvalidParameter);
        assert!(e.detail.contains("invalid type"), "{}", e.detail);
        let e = read_json::<Thing>(&request(Some("application/json"), r#"{"ttl":1,"tll":2}"#))
            .unwrap_err();
        assert!(e.detail.contains("unknown field `tll`"), "{}", e.detail);
        let e = read_json::<Thing>(&request(Some("text/plain"), r#"{"ttl":1}"#)).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = read_json::<Thing>(&request(None, &" ".repeat(MAX_BODY_BYTES + 1))).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            read_json::<Thing>(&request(None, r#"{"ttl":5}"#))
                .unwrap()
                .ttl,
            5
        );
    }
}
