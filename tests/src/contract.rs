//! `docs/openapi.yaml`, the /v1 contract, checked against the code: its routes against
//! `template.yaml`, its problem codes against `tsunagu::problem::Code`, and the answers the
//! edge and the domain's errors map to against the statuses it lists them under. A failure
//! names what to add to (or remove from) the spec. `make fuzz` checks the running handlers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// `docs/openapi.yaml` at the workspace root.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
        .join("openapi.yaml")
}

pub fn load(path: &Path) -> Result<Yaml, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut docs = YamlLoader::load_from_str(&text).map_err(|e| format!("openapi.yaml: {e}"))?;
    if docs.is_empty() {
        return Err("openapi.yaml is empty".into());
    }
    Ok(docs.swap_remove(0))
}

/// Follows a local `$ref` ("#/components/responses/NotFound"); anything else as it is.
pub fn resolve<'a>(doc: &'a Yaml, node: &'a Yaml) -> &'a Yaml {
    let Some(reference) = node["$ref"].as_str() else {
        return node;
    };
    let mut target = doc;
    for part in reference.trim_start_matches("#/").split('/') {
        target = &target[part];
    }
    resolve(doc, target)
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// Every operation: (METHOD, path, the operation).
pub fn operations(doc: &Yaml) -> Vec<(String, String, &Yaml)> {
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_hash() {
        for (path, item) in paths {
            let Some(path) = path.as_str() else { continue };
            for method in METHODS {
                if !item[method].is_badvalue() {
                    out.push((method.to_ascii_uppercase(), path.to_owned(), &item[method]));
                }
            }
        }
    }
    out
}

/// An operation's problem answers: (HTTP status, code) for every code listed under a status.
/// Only a `code` enum stated by the response itself counts, not the global `ProblemCode`.
pub fn problem_answers(doc: &Yaml, operation: &Yaml) -> BTreeSet<(u16, i64)> {
    let mut out = BTreeSet::new();
    let Some(responses) = operation["responses"].as_hash() else {
        return out;
    };
    for (status, response) in responses {
        let Some(status) = status.as_str().and_then(|s| s.parse::<u16>().ok()) else {
            continue;
        };
        let response = resolve(doc, response);
        let schema = resolve(
            doc,
            &response["content"]["application/problem+json"]["schema"],
        );
        let parts = schema["allOf"]
            .as_vec()
            .cloned()
            .unwrap_or_else(|| vec![schema.clone()]);
        for part in &parts {
            let part = resolve(doc, part);
            for code in part["properties"]["code"]["enum"]
                .as_vec()
                .into_iter()
                .flatten()
            {
                if let Some(code) = code.as_i64() {
                    out.insert((status, code));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use lambda_http::Body;
    use tsunagu::domain::DomainError;
    use tsunagu::domain::ports::CallError;
    use tsunagu::problem::{Code, Problem};
    use tsunagu::store::StoreError;

    fn spec() -> Yaml {
        load(&default_path()).unwrap()
    }

    fn all_answers(doc: &Yaml) -> BTreeSet<(u16, i64)> {
        operations(doc)
            .into_iter()
            .flat_map(|(_, _, op)| problem_answers(doc, op))
            .collect()
    }

    fn diff<T: Ord + Clone + std::fmt::Debug>(
        what: &str,
        code: &BTreeSet<T>,
        spec: &BTreeSet<T>,
    ) -> Result<(), String> {
        let missing: Vec<_> = code.difference(spec).cloned().collect();
        let extra: Vec<_> = spec.difference(code).cloned().collect();
        if missing.is_empty() && extra.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{what}: add to docs/openapi.yaml {missing:?}; remove from it (or from the code) {extra:?}"
            ))
        }
    }

    #[test]
    fn the_spec_describes_exactly_the_v1_routes_of_the_template() {
        let template = crate::template::load(&crate::template::default_path()).unwrap();
        let routes: BTreeSet<String> = template
            .routes
            .iter()
            .filter(|r| r.path.starts_with("/v1/"))
            .map(|r| r.route_key())
            .collect();
        let doc = spec();
        let described: BTreeSet<String> = operations(&doc)
            .into_iter()
            .map(|(method, path, _)| format!("{method} {path}"))
            .collect();
        assert!(routes.len() >= 9, "{routes:?}");
        diff("routes of template.yaml", &routes, &described).unwrap();
    }

    #[test]
    fn every_problem_code_is_in_the_spec_and_no_other() {
        let doc = spec();
        let code: BTreeSet<i64> = Code::ALL.iter().map(|c| *c as i64).collect();
        let listed: BTreeSet<i64> = doc["components"]["schemas"]["ProblemCode"]["enum"]
            .as_vec()
            .expect("components.schemas.ProblemCode.enum")
            .iter()
            .filter_map(Yaml::as_i64)
            .collect();
        diff("codes of problem::Code vs ProblemCode", &code, &listed).unwrap();
        let answered: BTreeSet<i64> = all_answers(&doc).into_iter().map(|(_, c)| c).collect();
        diff(
            "codes of problem::Code vs the operations' responses",
            &code,
            &answered,
        )
        .unwrap();
    }

    #[test]
    fn every_error_response_is_problem_json_with_its_own_status() {
        let doc = spec();
        for (method, path, op) in operations(&doc) {
            for (status, response) in op["responses"].as_hash().unwrap() {
                let status: u16 = status.as_str().unwrap().parse().unwrap();
                let response = resolve(&doc, response);
                let content = response["content"].as_hash();
                if status < 400 {
                    assert!(
                        content.is_none_or(|c| c
                            .keys()
                            .all(|k| k.as_str() == Some("application/json"))),
                        "{method} {path} {status}: success answers are JSON"
                    );
                    continue;
                }
                let content =
                    content.unwrap_or_else(|| panic!("{method} {path} {status}: no content"));
                assert_eq!(
                    content.keys().filter_map(Yaml::as_str).collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{method} {path} {status}"
                );
                let schema = resolve(
                    &doc,
                    &response["content"]["application/problem+json"]["schema"],
                );
                let consts: Vec<i64> = schema["allOf"]
                    .as_vec()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| resolve(&doc, p)["properties"]["status"]["const"].as_i64())
                    .collect();
                assert_eq!(
                    consts,
                    [status as i64],
                    "{method} {path} {status}: status const"
                );
                assert!(
                    problem_answers(&doc, op).iter().any(|(s, _)| *s == status),
                    "{method} {path} {status}: lists no code"
                );
            }
        }
    }

    #[test]
    fn every_post_takes_an_idempotency_key_and_documents_its_refusals() {
        let doc = spec();
        for (method, path, op) in operations(&doc) {
            if method != "POST" {
                continue;
            }
            let takes_key = op["parameters"]
                .as_vec()
                .into_iter()
                .flatten()
                .any(|p| resolve(&doc, p)["name"].as_str() == Some("Idempotency-Key"));
            assert!(takes_key, "{method} {path}: Idempotency-Key");
            let answers = problem_answers(&doc, op);
            for pair in [
                (409, Code::IdempotencyInProgress as i64),
                (422, Code::IdempotencyKeyReused as i64),
                (400, Code::InvalidParameter as i64),
                (400, Code::MalformedBody as i64),
                (413, Code::PayloadTooLarge as i64),
                (415, Code::UnsupportedMediaType as i64),
            ] {
                assert!(answers.contains(&pair), "{method} {path}: {pair:?}");
            }
        }
    }

    fn json_request(content_type: &str, body: &str) -> lambda_http::Request {
        http::Request::builder()
            .method("POST")
            .uri("https://x.test/v1/sessions")
            .header("content-type", content_type)
            .body(Body::Text(body.to_owned()))
            .unwrap()
    }

    /// Every answer the edge (body reading, idempotency, the time budget) and the domain's
    /// errors map to, as (status, code).
    fn answers_of_the_code() -> Vec<(&'static str, Problem)> {
        let read = |ct: &str, body: &str| {
            tsunagu::web::read_json::<std::collections::HashMap<String, u64>>(&json_request(
                ct, body,
            ))
            .unwrap_err()
        };
        let big = " ".repeat(tsunagu::web::MAX_BODY_BYTES + 1);
        let refused = CallError::Refused {
            status: 400,
            code: 21210,
            message: "not verified".into(),
        };
        let domain = [
            DomainError::Invalid("x".into()),
            DomainError::NotFound("x".into()),
            DomainError::SessionClosed("x".into()),
            DomainError::CallInProgress("x".into()),
            DomainError::NothingToExtend("x".into()),
            DomainError::ExtensionPastMaxCost("x".into()),
            DomainError::SessionChanged("x".into()),
            DomainError::NoProxyNumber("x".into()),
            DomainError::NoNumbersInPool("x".into()),
            DomainError::OnlyReservedNumbers("x".into()),
            DomainError::ParticipantIsProxyNumber("x".into()),
            DomainError::BeyondMaximumEnd("x".into()),
            DomainError::NumberNotInPool("x".into()),
            DomainError::IdentifierConflict("x".into()),
            DomainError::UniqueNameTaken("x".into()),
            DomainError::TooManyParticipants("x".into()),
            DomainError::ParticipantAlreadyInSession("x".into()),
            DomainError::InvalidStatusTransition("x".into()),
            DomainError::Contention("x".into()),
            DomainError::CallNotPlaced {
                callee: "x".into(),
                cause: refused,
            },
            DomainError::CallNotPlaced {
                callee: "x".into(),
                cause: CallError::Unreachable("x".into()),
            },
            DomainError::CallNotPlaced {
                callee: "x".into(),
                cause: CallError::OutOfTime,
            },
            DomainError::CallNotPlaced {
                callee: "x".into(),
                cause: CallError::Credentials("x".into()),
            },
            DomainError::Store(StoreError::Backend("x".into())),
        ];
        // A new DomainError variant stops this compiling until it is added above.
        for e in &domain {
            match e {
                DomainError::Invalid(_)
                | DomainError::NotFound(_)
                | DomainError::SessionClosed(_)
                | DomainError::CallInProgress(_)
                | DomainError::NothingToExtend(_)
                | DomainError::ExtensionPastMaxCost(_)
                | DomainError::SessionChanged(_)
                | DomainError::NoProxyNumber(_)
                | DomainError::NoNumbersInPool(_)
                | DomainError::OnlyReservedNumbers(_)
                | DomainError::ParticipantIsProxyNumber(_)
                | DomainError::BeyondMaximumEnd(_)
                | DomainError::NumberNotInPool(_)
                | DomainError::IdentifierConflict(_)
                | DomainError::UniqueNameTaken(_)
                | DomainError::TooManyParticipants(_)
                | DomainError::ParticipantAlreadyInSession(_)
                | DomainError::InvalidStatusTransition(_)
                | DomainError::Contention(_)
                | DomainError::CallNotPlaced { .. }
                | DomainError::Store(_) => {}
            }
        }
        let mut out: Vec<(&'static str, Problem)> = vec![
            ("a body over the limit", read("application/json", &big)),
            ("a text/plain body", read("text/plain", "{}")),
            ("an empty body", read("application/json", "")),
            ("malformed JSON", read("application/json", "{")),
            (
                "a field of the wrong type",
                read("application/json", r#"{"a":"b"}"#),
            ),
            (
                "the API's time budget run out",
                Problem::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    Code::Upstream,
                    "Timed out",
                    "x",
                ),
            ),
        ];
        out.extend(
            domain
                .into_iter()
                .map(|e| ("a DomainError", Problem::from(e))),
        );
        out
    }

    #[test]
    fn the_answers_of_the_edge_and_the_domain_are_in_the_spec() {
        let doc = spec();
        let answers = all_answers(&doc);
        for (what, p) in answers_of_the_code() {
            let pair = (p.status.as_u16(), p.code_number() as i64);
            assert!(
                answers.contains(&pair),
                "{what} ({p}) answers {pair:?}, which no operation of docs/openapi.yaml lists"
            );
        }
    }
}
