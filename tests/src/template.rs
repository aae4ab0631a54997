//! Reads what the local stack needs from `template.yaml`, the single source of truth: every
//! function's HTTP routes, and the DynamoDB table's definition.

use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use yaml_rust2::{Yaml, YamlLoader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    /// With `{name}` placeholders, as in the template.
    pub path: String,
    /// The crate under `functions/`, from the function's `CodeUri`.
    pub function: String,
}

impl Route {
    /// Matches a request path; returns the path parameters when it matches.
    pub fn matches(&self, method: &str, path: &str) -> Option<Vec<(String, String)>> {
        if !self.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let pattern: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let actual: Vec<&str> = path.trim_matches('/').split('/').collect();
        if pattern.len() != actual.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, a) in pattern.iter().zip(&actual) {
            match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if !a.is_empty() => params.push((name.to_owned(), (*a).to_owned())),
                Some(_) => return None,
                None if p == a => {}
                None => return None,
            }
        }
        Some(params)
    }

    pub fn route_key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Clone)]
pub struct TableDef {
    pub attributes: Vec<(String, String)>,
    pub keys: Vec<(String, String)>,
    pub indexes: Vec<IndexDef>,
    pub ttl_attribute: Option<String>,
    /// `StreamSpecification.StreamViewType`, when the table has a stream.
    pub stream_view_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IndexDef {
    pub name: String,
    pub keys: Vec<(String, String)>,
    pub projection: String,
    /// `NonKeyAttributes` of an `INCLUDE` projection.
    pub non_key: Vec<String>,
}

/// An SQS queue of the template: its logical id and the attributes the local world follows.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDef {
    pub logical_id: String,
    pub fifo: bool,
    pub visibility_timeout: Option<u64>,
    /// `RedrivePolicy`: (the dead-letter queue's logical id, maxReceiveCount).
    pub redrive: Option<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub routes: Vec<Route>,
    /// (function, schedule expression) for every `Type: Schedule` event.
    pub schedules: Vec<(String, String)>,
    /// (function, event type) for every `Type: DynamoDB` or `Type: SQS` event source.
    pub sources: Vec<(String, String)>,
    /// Every `AWS::SQS::Queue`, as the local stack creates it.
    pub queues: Vec<QueueDef>,
    pub functions: Vec<String>,
    pub table: TableDef,
}

/// `template.yaml` at the workspace root.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("template.yaml")
}

fn str_of(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn key_pairs(list: &Yaml, name_key: &str, type_key: &str) -> Vec<(String, String)> {
    list.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|e| Some((str_of(&e[name_key])?, str_of(&e[type_key])?)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn load(path: &Path) -> Result<Template, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text)
}

pub fn parse(text: &str) -> Result<Template, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("template.yaml: {e}"))?;
    let doc = docs.first().ok_or("template.yaml is empty")?;
    let resources = doc["Resources"]
        .as_hash()
        .ok_or("template.yaml has no Resources")?;
    let mut routes = Vec::new();
    let mut schedules = Vec::new();
    let mut sources = Vec::new();
    let mut queues = Vec::new();
    let mut functions = Vec::new();
    let mut table = None;
    for (logical_id, resource) in resources {
        match resource["Type"].as_str() {
            Some("AWS::SQS::Queue") => {
                let p = &resource["Properties"];
                let number = |y: &Yaml| str_of(y).and_then(|v| v.parse::<u64>().ok());
                // `!GetAtt X.Arn` reads back as the plain string `X.Arn`.
                let redrive = str_of(&p["RedrivePolicy"]["deadLetterTargetArn"])
                    .map(|arn| arn.trim_end_matches(".Arn").to_owned())
                    .zip(number(&p["RedrivePolicy"]["maxReceiveCount"]));
                queues.push(QueueDef {
                    logical_id: str_of(logical_id).unwrap_or_default(),
                    fifo: p["FifoQueue"].as_bool() == Some(true),
                    visibility_timeout: number(&p["VisibilityTimeout"]),
                    redrive,
                });
            }
            Some("AWS::Serverless::Function") => {
                let code_uri = str_of(&resource["Properties"]["CodeUri"])
                    .ok_or("a function has no CodeUri")?;
                let function = code_uri
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                functions.push(function.clone());
                if let Some(events) = resource["Properties"]["Events"].as_hash() {
                    for (_, event) in events {
                        if event["Type"].as_str() == Some("Schedule") {
                            if let Some(expr) = str_of(&event["Properties"]["Schedule"]) {
                                schedules.push((function.clone(), expr));
                            }
                            continue;
                        }
                        if let Some(kind @ ("DynamoDB" | "SQS")) = event["Type"].as_str() {
                            sources.push((function.clone(), kind.to_owned()));
                            continue;
                        }
                        if event["Type"].as_str() != Some("HttpApi") {
                            continue;
                        }
                        let props = &event["Properties"];
                        routes.push(Route {
                            method: str_of(&props["Method"])
                                .ok_or("an HttpApi event has no Method")?
                                .to_ascii_uppercase(),
                            path: str_of(&props["Path"]).ok_or("an HttpApi event has no Path")?,
                            function: function.clone(),
                        });
                    }
                }
            }
            Some("AWS::DynamoDB::Table") => {
                let p = &resource["Properties"];
                table = Some(TableDef {
                    attributes: key_pairs(
                        &p["AttributeDefinitions"],
                        "AttributeName",
                        "AttributeType",
                    ),
                    keys: key_pairs(&p["KeySchema"], "AttributeName", "KeyType"),
                    indexes: p["GlobalSecondaryIndexes"]
                        .as_vec()
                        .map(|v| {
                            v.iter()
                                .filter_map(|g| {
                                    Some(IndexDef {
                                        name: str_of(&g["IndexName"])?,
                                        keys: key_pairs(
                                            &g["KeySchema"],
                                            "AttributeName",
                                            "KeyType",
                                        ),
                                        projection: str_of(&g["Projection"]["ProjectionType"])
                                            .unwrap_or("ALL".into()),
                                        non_key: g["Projection"]["NonKeyAttributes"]
                                            .as_vec()
                                            .into_iter()
                                            .flatten()
                                            .filter_map(str_of)
                                            .collect(),
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    ttl_attribute: str_of(&p["TimeToLiveSpecification"]["AttributeName"]),
                    stream_view_type: str_of(&p["StreamSpecification"]["StreamViewType"]),
                });
            }
            _ => {}
        }
    }
    Ok(Template {
        routes,
        schedules,
        sources,
        queues,
        functions,
        table: table.ok_or("template.yaml defines no AWS::DynamoDB::Table")?,
    })
}

fn key_schema(keys: &[(String, String)]) -> Result<Vec<KeySchemaElement>, String> {
    keys.iter()
        .map(|(name, kind)| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::from(kind.as_str()))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Creates `name` exactly as the template defines the table (keys, indexes, TTL).
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    def: &TableDef,
    name: &str,
) -> Result<(), String> {
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&def.keys)?));
    for (attr, kind) in &def.attributes {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    for index in &def.indexes {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_schema(&index.keys)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(index.projection.as_str()))
                        .set_non_key_attributes(
                            (!index.non_key.is_empty()).then(|| index.non_key.clone()),
                        )
                        .build(),
                )
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(view) = &def.stream_view_type {
        req = req.stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    req.send().await.map_err(|e| {
        format!(
            "CreateTable {name}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        )
    })?;
    if let Some(attr) = &def.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(true)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .send()
            .await
            .map_err(|e| {
                format!(
                    "UpdateTimeToLive: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
    }
    Ok(())
}

/// A function's environment as `template.yaml` sets it: `Globals.Function.Environment`
/// and then the function's own `Environment` (by its CodeUri name). A value naming a
/// template parameter or resource (`!Ref X`; the YAML reader keeps only `X`) becomes
/// `locals[X]` when given, else the parameter's `Default`; one with neither is an error,
/// so a new `!Ref` cannot go unnoticed locally.
pub fn function_environment(
    text: &str,
    function: &str,
    locals: &std::collections::HashMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("template.yaml: {e}"))?;
    let doc = docs.first().ok_or("template.yaml is empty")?;
    let own = doc["Resources"]
        .as_hash()
        .into_iter()
        .flatten()
        .map(|(_, r)| r)
        .find(|r| {
            str_of(&r["Properties"]["CodeUri"])
                .is_some_and(|uri| uri.trim_end_matches('/').rsplit('/').next() == Some(function))
        })
        .ok_or_else(|| format!("template.yaml has no function {function}"))?;
    let mut env: Vec<(String, String)> = Vec::new();
    for vars in [
        &doc["Globals"]["Function"]["Environment"]["Variables"],
        &own["Properties"]["Environment"]["Variables"],
    ] {
        for (name, value) in vars.as_hash().into_iter().flatten() {
            let name = str_of(name).ok_or("an environment variable without a name")?;
            // `!If [Condition, !Ref X, !Ref AWS::NoValue]`: the variable is set only when the
            // condition holds (an optional parameter given), as CloudFormation does.
            let value = match value.as_vec() {
                Some(branches) => match if_branch(doc, branches, locals)? {
                    Some(chosen) => chosen,
                    None => continue,
                },
                None => str_of(value).unwrap_or_default(),
            };
            let parameter = &doc["Parameters"][value.as_str()];
            let is_ref =
                !parameter.is_badvalue() || !doc["Resources"][value.as_str()].is_badvalue();
            let resolved = if let Some(local) = locals.get(&value) {
                local.clone()
            } else if is_ref {
                str_of(&parameter["Default"]).ok_or_else(|| {
                    format!("{name}: !Ref {value} has no default; give it a local value")
                })?
            } else {
                value
            };
            env.retain(|(n, _)| *n != name);
            env.push((name, resolved));
        }
    }
    Ok(env)
}

/// The branch an `!If` takes, for the one condition shape the template uses:
/// `!Not [!Equals [!Ref Parameter, "literal"]]` (the YAML reader keeps `[[Parameter,
/// "literal"]]`). `None` when the chosen branch is `AWS::NoValue`. Any other shape is an
/// error rather than a guess.
fn if_branch(
    doc: &Yaml,
    branches: &[Yaml],
    locals: &std::collections::HashMap<String, String>,
) -> Result<Option<String>, String> {
    let [condition, then, otherwise] = branches else {
        return Err(format!("an !If needs three items: {branches:?}"));
    };
    let condition = str_of(condition).ok_or("an !If without a condition name")?;
    let shape = &doc["Conditions"][condition.as_str()];
    let (parameter, literal) = match shape.as_vec().map(Vec::as_slice) {
        Some([equals]) => match equals.as_vec().map(Vec::as_slice) {
            Some([p, l]) => (str_of(p), str_of(l)),
            _ => (None, None),
        },
        _ => (None, None),
    };
    let (Some(parameter), Some(literal)) = (parameter, literal) else {
        return Err(format!(
            "condition {condition}: only !Not [!Equals [!Ref P, \"…\"]] is understood here"
        ));
    };
    let value = match locals.get(&parameter) {
        Some(v) => v.clone(),
        None => str_of(&doc["Parameters"][parameter.as_str()]["Default"]).unwrap_or_default(),
    };
    let chosen = if value != literal { then } else { otherwise };
    let chosen = str_of(chosen).unwrap_or_default();
    if chosen == "AWS::NoValue" {
        return Ok(None);
    }
    Ok(Some(match locals.get(&chosen) {
        Some(v) => v.clone(),
        None => str_of(&doc["Parameters"][chosen.as_str()]["Default"]).unwrap_or(chosen),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_variable_is_set_only_when_its_parameter_is_given() {
        let text = std::fs::read_to_string(default_path()).unwrap();
        let mut locals = std::collections::HashMap::from([
            ("Table".to_owned(), "t1".to_owned()),
            ("TwilioSecretArn".to_owned(), "arn:secret".to_owned()),
            ("PublicBaseUrl".to_owned(), "https://x.example".to_owned()),
            ("CallTimers".to_owned(), "t1-call-timers".to_owned()),
        ]);
        let has = |env: &[(String, String)]| {
            env.iter()
                .find(|(n, _)| n == "RATE_OUTBOUND_IP_JPY_PER_MIN")
                .map(|(_, v)| v.clone())
        };
        let env = function_environment(&text, "call-status", &locals).unwrap();
        assert_eq!(has(&env), None, "an empty optional rate is left unset");
        locals.insert("RateOutboundIpJpyPerMin".into(), "4.5".into());
        let env = function_environment(&text, "call-status", &locals).unwrap();
        assert_eq!(has(&env).as_deref(), Some("4.5"));
    }

    #[test]
    fn a_function_environment_resolves_refs_to_locals_or_defaults() {
        let text = std::fs::read_to_string(default_path()).unwrap();
        let mut locals = std::collections::HashMap::from([
            ("Table".to_owned(), "t1".to_owned()),
            ("TwilioSecretArn".to_owned(), "arn:secret".to_owned()),
            ("PublicBaseUrl".to_owned(), "https://x.example".to_owned()),
            ("CallTimers".to_owned(), "t1-call-timers".to_owned()),
        ]);
        let env = function_environment(&text, "inbound-call", &locals).unwrap();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("TABLE_NAME"), Some("t1"));
        assert_eq!(get("TWILIO_SECRET_ID"), Some("arn:secret"));
        assert_eq!(get("TWILIO_API_BASE_URL"), Some("https://api.twilio.com"));
        assert_eq!(get("RETENTION_DAYS"), Some("90"));
        assert_eq!(get("INTERCEPT_CALLBACK_URL"), Some(""));
        assert_eq!(get("DEFAULT_TTL_SECONDS"), Some("0"));
        assert_eq!(get("SCHEDULE_GROUP"), Some("t1-call-timers"));
        locals.remove("TwilioSecretArn");
        let missing = function_environment(&text, "inbound-call", &locals).unwrap_err();
        assert!(missing.contains("TwilioSecretArn"), "{missing}");
    }

    /// A function fetches the Twilio secret during init (`PREFETCH_TWILIO_SECRET`) exactly
    /// when its policy lets it read the secret, and reads no table item at init unless its
    /// policy allows `GetItem` (`tsunagu::app::warm_up`'s first DynamoDB connection).
    #[test]
    fn the_init_warm_up_asks_only_what_each_policy_allows() {
        let text = std::fs::read_to_string(default_path()).unwrap();
        let secret = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:twilio-AbCdEf";
        let queue = |id: &str| {
            (
                id.to_owned(),
                format!("https://sqs.example/123456789012/{id}"),
                format!("arn:aws:sqs:ap-northeast-1:123456789012:{id}"),
            )
        };
        let bindings = crate::iam::Bindings::local("ap-northeast-1", "t1", secret).with_events(
            "arn:aws:dynamodb:ap-northeast-1:123456789012:table/t1/stream/x",
            &[
                queue("EventQueue"),
                queue("EventDeadLetterQueue"),
                queue("PublishEventsStreamFailures"),
            ],
        );
        let policies = crate::iam::function_policies(&text, &bindings).unwrap();
        let table = crate::iam::dynamodb_table_arn("ap-northeast-1", crate::iam::ACCOUNT, "t1");
        let locals = std::collections::HashMap::from([
            ("Table".to_owned(), "t1".to_owned()),
            ("TwilioSecretArn".to_owned(), secret.to_owned()),
            ("PublicBaseUrl".to_owned(), "https://x.example".to_owned()),
            ("CallTimers".to_owned(), "t1-call-timers".to_owned()),
            ("CallTimersRole.Arn".to_owned(), "arn:role".to_owned()),
            ("ExpiryWarningFunction.Arn".to_owned(), "arn:fn".to_owned()),
            ("EventQueue".to_owned(), "https://sqs.example/q".to_owned()),
        ]);
        assert!(policies.len() >= 14, "every function's policy");
        for (function, policy) in &policies {
            let env = function_environment(&text, function, &locals).unwrap();
            let prefetch = env
                .iter()
                .any(|(n, v)| n == tsunagu::handlers::PREFETCH_TWILIO_SECRET && v == "true");
            assert_eq!(
                prefetch,
                policy.allows("secretsmanager:GetSecretValue", secret),
                "{function}: PREFETCH_TWILIO_SECRET must be \"true\" exactly when its policy \
                 allows secretsmanager:GetSecretValue"
            );
            let warms_table = !env
                .iter()
                .any(|(n, v)| n == tsunagu::handlers::WARM_UP_TABLE && v == "false");
            assert_eq!(
                warms_table,
                policy.allows("dynamodb:GetItem", &table),
                "{function}: the init warm-up reads one (absent) item exactly when the policy \
                 allows it (else WARM_UP_TABLE: \"false\")"
            );
        }
    }

    #[test]
    fn the_real_template_has_every_function_and_the_table() {
        let t = load(&default_path()).unwrap();
        for f in tsunagu::handlers::HTTP_FUNCTIONS {
            assert!(
                t.functions.iter().any(|g| g == f),
                "{f} missing from template.yaml"
            );
            assert!(
                t.routes.iter().any(|r| &r.function == f),
                "{f} has no route"
            );
        }
        for f in &t.functions {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../functions")
                    .join(f)
                    .join("Cargo.toml")
                    .exists(),
                "{f} has no crate"
            );
        }
        for f in tsunagu::handlers::EVENT_FUNCTIONS {
            assert!(
                t.schedules
                    .iter()
                    .any(|(g, e)| g == f && e == "rate(1 minute)")
                    || t.sources.iter().any(|(g, _)| g == f),
                "{f} has no schedule and no event source"
            );
        }
        assert!(
            t.sources
                .contains(&("publish-events".into(), "DynamoDB".into()))
        );
        assert!(t.sources.contains(&("deliver-events".into(), "SQS".into())));
        assert_eq!(
            t.table.stream_view_type.as_deref(),
            Some("NEW_AND_OLD_IMAGES")
        );
        let queue = t
            .queues
            .iter()
            .find(|q| q.logical_id == "EventQueue")
            .unwrap();
        assert!(queue.fifo);
        assert_eq!(queue.redrive, Some(("EventDeadLetterQueue".to_owned(), 8)));
        assert!(
            t.queues
                .iter()
                .any(|q| q.logical_id == "EventDeadLetterQueue" && q.fifo),
            "a FIFO queue's dead-letter queue is FIFO too"
        );
        assert!(t.table.keys.contains(&("pk".into(), "HASH".into())));
        assert!(
            t.table
                .indexes
                .iter()
                .any(|i| i.name == tsunagu::store::DUE_INDEX)
        );
        assert_eq!(t.table.ttl_attribute.as_deref(), Some("expire_at"));
        let r = t
            .routes
            .iter()
            .find(|r| r.path == "/v1/sessions/{sid}" && r.method == "GET")
            .unwrap();
        assert_eq!(r.function, "get-session");
        assert_eq!(
            r.matches("GET", "/v1/sessions/KC1"),
            Some(vec![("sid".into(), "KC1".into())])
        );
        assert_eq!(r.matches("GET", "/v1/sessions/KC1/interactions"), None);
        assert_eq!(r.matches("DELETE", "/v1/sessions/KC1"), None);
    }
}
