//! IAM, enforced locally as AWS enforces it: every DynamoDB, Secrets Manager and Scheduler request a
//! function makes is checked against that function's `Policies` in `template.yaml`.
//!
//! The emulator can't do this faithfully: moto checks the operation name as the action (so a
//! transaction needs a `dynamodb:TransactWriteItems` that AWS doesn't have) and matches no
//! table ARN. So each function's SDK clients carry an interceptor that derives, from the
//! request itself, the actions and resources AWS would authorise:
//! - one action per operation on the table's ARN, or the index's ARN for a Query or Scan of
//!   an index ("DynamoDB API permissions: Actions, resources, and conditions reference");
//! - a `TransactWriteItems` item by item: `Put`, `Update`, `Delete` and `ConditionCheck` need
//!   `PutItem`, `UpdateItem`, `DeleteItem` and `ConditionCheckItem` on that item's table, and
//!   a `TransactGetItems` needs `GetItem` ("Using IAM with DynamoDB transactions");
//! - `secretsmanager:GetSecretValue` on the secret's full ARN;
//! - EventBridge Scheduler's `CreateSchedule`, `UpdateSchedule`, `DeleteSchedule` and
//!   `GetSchedule` on the schedule's ARN, and `iam:PassRole` on the role a created or updated
//!   schedule's target names.
//! - SQS: the action named after the operation on the queue's ARN, a batch operation
//!   needing its single form (`SendMessageBatch` → `sqs:SendMessage`, "Amazon SQS API
//!   permissions: Actions and resource reference");
//! - DynamoDB Streams, as Lambda's event source mapping reads them with the function's role:
//!   `dynamodb:DescribeStream`, `GetShardIterator`, `GetRecords` on the stream's ARN.
//!
//! Policies are evaluated as AWS does ("Policy evaluation logic"): an explicit Deny wins, then
//! any matching Allow, else the request is denied. Forms this checker doesn't model
//! (`NotAction`, `Condition`, SAM policy templates, …) are refused when the template is read,
//! rather than guessed at.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::Input;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// The account and region the emulator reports (moto's defaults).
pub const ACCOUNT: &str = "123456789012";

/// A YAML node that keeps CloudFormation's short-form tags (`!Ref`, `!GetAtt`, `!Sub`).
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Scalar(String, Option<String>),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Map(entries) => entries,
            _ => &[],
        }
    }

    fn plain(&self) -> Option<&str> {
        match self {
            Node::Scalar(s, None) => Some(s),
            _ => None,
        }
    }
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<(Node, Option<String>)>,
    done: Option<Node>,
}

impl TreeBuilder {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.done = Some(node),
            Some((Node::Seq(items), _)) => items.push(node),
            Some((Node::Map(entries), pending)) => match pending.take() {
                None => {
                    let key = match node {
                        Node::Scalar(s, _) => s,
                        _ => String::new(),
                    };
                    *pending = Some(key);
                }
                Some(key) => entries.push((key, node)),
            },
            Some(_) => {}
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, _mark: Marker) {
        match event {
            Event::Scalar(value, _, _, tag) => {
                let tag = tag.filter(|t| t.handle == "!").map(|t| t.suffix);
                self.push(Node::Scalar(value, tag));
            }
            Event::SequenceStart(..) => self.stack.push((Node::Seq(Vec::new()), None)),
            Event::MappingStart(..) => self.stack.push((Node::Map(Vec::new()), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.push(node);
                }
            }
            _ => {}
        }
    }
}

fn parse_tree(text: &str) -> Result<Node, String> {
    let mut builder = TreeBuilder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| format!("template.yaml: {e}"))?;
    builder
        .done
        .ok_or_else(|| "template.yaml is empty".to_owned())
}

/// What `!Ref`, `!GetAtt` and `!Sub` resolve to in the local world.
#[derive(Debug, Clone)]
pub struct Bindings {
    pub region: String,
    pub account: String,
    /// Template parameters, and `!Ref` of resources (the table's name).
    pub refs: HashMap<String, String>,
    /// `Resource.Attribute` → value (`Table.Arn`).
    pub attributes: HashMap<String, String>,
}

impl Bindings {
    /// The bindings of a stack whose table is `table` and whose Twilio secret has `secret_arn`.
    pub fn local(region: &str, table: &str, secret_arn: &str) -> Bindings {
        let table_arn = dynamodb_table_arn(region, ACCOUNT, table);
        Bindings {
            region: region.to_owned(),
            account: ACCOUNT.to_owned(),
            refs: HashMap::from([
                ("Table".to_owned(), table.to_owned()),
                ("TwilioSecretArn".to_owned(), secret_arn.to_owned()),
                ("CallTimers".to_owned(), schedule_group(table)),
            ]),
            attributes: HashMap::from([
                ("Table.Arn".to_owned(), table_arn),
                ("CallTimersRole.Arn".to_owned(), call_timers_role_arn(table)),
                (
                    "ExpiryWarningFunction.Arn".to_owned(),
                    lambda_function_arn(region, "expiry-warning"),
                ),
            ]),
        }
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(self.region.clone()),
            "AWS::AccountId" => Some(self.account.clone()),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            _ => None,
        }
    }

    fn resolve(&self, node: &Node) -> Result<String, String> {
        match node {
            Node::Scalar(value, None) => Ok(value.clone()),
            Node::Scalar(name, Some(tag)) if tag == "Ref" => self.reference(name),
            Node::Scalar(name, Some(tag)) if tag == "GetAtt" => self.attribute(name),
            Node::Scalar(text, Some(tag)) if tag == "Sub" => self.substitute(text),
            Node::Map(entries) if entries.len() == 1 => {
                let (function, argument) = &entries[0];
                let argument = argument.plain().ok_or_else(|| {
                    format!("{function} with a non-scalar argument is not modelled")
                })?;
                match function.as_str() {
                    "Ref" => self.reference(argument),
                    "Fn::GetAtt" => self.attribute(argument),
                    "Fn::Sub" => self.substitute(argument),
                    other => Err(format!("intrinsic {other} is not modelled")),
                }
            }
            other => Err(format!("cannot resolve {other:?}")),
        }
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        self.pseudo(name)
            .or_else(|| self.refs.get(name).cloned())
            .ok_or_else(|| format!("!Ref {name}: no local binding"))
    }

    fn attribute(&self, name: &str) -> Result<String, String> {
        self.attributes
            .get(name)
            .cloned()
            .ok_or_else(|| format!("!GetAtt {name}: no local binding"))
    }

    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("!Sub {text}: unclosed ${{"))?;
            let name = &rest[start + 2..start + end];
            let value = if name.contains('.') {
                self.attribute(name)?
            } else {
                self.reference(name)?
            };
            out.push_str(&value);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The local stack's schedule group: `${AWS::StackName}-call-timers`, the table standing
/// for the stack.
pub fn schedule_group(table: &str) -> String {
    format!("{table}-call-timers")
}

/// The role Scheduler would assume to invoke the timers' target.
pub fn call_timers_role_arn(table: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{table}-call-timers")
}

/// A function's ARN, named as the local gateway's Invoke API names it.
pub fn lambda_function_arn(region: &str, function: &str) -> String {
    format!("arn:aws:lambda:{region}:{ACCOUNT}:function:{function}")
}

impl Bindings {
    /// With the event resources: the table's stream, and each queue's URL (`!Ref`), ARN
    /// (`!GetAtt X.Arn`) and name (`!GetAtt X.QueueName`), by logical id.
    pub fn with_events(mut self, stream_arn: &str, queues: &[(String, String, String)]) -> Self {
        self.attributes
            .insert("Table.StreamArn".to_owned(), stream_arn.to_owned());
        for (logical_id, url, arn) in queues {
            self.refs.insert(logical_id.clone(), url.clone());
            self.attributes
                .insert(format!("{logical_id}.Arn"), arn.clone());
            let name = url.rsplit('/').next().unwrap_or_default().to_owned();
            self.attributes
                .insert(format!("{logical_id}.QueueName"), name);
        }
        self
    }
}

/// `arn:aws:sqs:{region}:{account}:{name}` for a queue URL `…/{account}/{name}`.
pub fn sqs_queue_arn(region: &str, url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or_default();
    format!("arn:aws:sqs:{region}:{ACCOUNT}:{name}")
}

/// The action and queue URL of an SQS request.
fn sqs_request(input: &Input) -> Option<(&'static str, String)> {
    use aws_sdk_sqs::operation::{
        change_message_visibility::ChangeMessageVisibilityInput,
        change_message_visibility_batch::ChangeMessageVisibilityBatchInput,
        delete_message::DeleteMessageInput, delete_message_batch::DeleteMessageBatchInput,
        get_queue_attributes::GetQueueAttributesInput, receive_message::ReceiveMessageInput,
        send_message::SendMessageInput, send_message_batch::SendMessageBatchInput,
    };
    macro_rules! try_op {
        ($($ty:ty => $action:literal),* $(,)?) => {$(
            if let Some(i) = input.downcast_ref::<$ty>() {
                return Some(($action, i.queue_url().unwrap_or_default().to_owned()));
            }
        )*};
    }
    try_op!(
        SendMessageInput => "sqs:SendMessage",
        SendMessageBatchInput => "sqs:SendMessage",
        ReceiveMessageInput => "sqs:ReceiveMessage",
        DeleteMessageInput => "sqs:DeleteMessage",
        DeleteMessageBatchInput => "sqs:DeleteMessage",
        ChangeMessageVisibilityInput => "sqs:ChangeMessageVisibility",
        ChangeMessageVisibilityBatchInput => "sqs:ChangeMessageVisibility",
        GetQueueAttributesInput => "sqs:GetQueueAttributes",
    );
    None
}

/// The interceptor on one function's SQS client (its own, or the event source mapping's).
#[derive(Debug, Clone)]
pub struct SqsGuard {
    pub function: String,
    pub policy: Arc<Policy>,
    pub region: String,
    pub denials: Denials,
}

impl aws_sdk_sqs::config::Intercept for SqsGuard {
    fn name(&self) -> &'static str {
        "LocalIamSqs"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_sqs::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_sdk_sqs::config::ConfigBag,
    ) -> Result<(), BoxError> {
        let pair = match sqs_request(context.input()) {
            Some((action, url)) => (action.to_owned(), sqs_queue_arn(&self.region, &url)),
            None => (
                "sqs:?".to_owned(),
                "an operation the local IAM check does not model".to_owned(),
            ),
        };
        check(&self.function, &self.policy, &self.denials, vec![pair])
    }
}

/// The interceptor on the DynamoDB Streams client the local event source mapping reads the
/// table's stream with, held to the function's role as Lambda's is.
#[derive(Debug, Clone)]
pub struct StreamsGuard {
    pub function: String,
    pub policy: Arc<Policy>,
    pub stream_arn: String,
    pub denials: Denials,
}

impl aws_sdk_dynamodbstreams::config::Intercept for StreamsGuard {
    fn name(&self) -> &'static str {
        "LocalIamDynamoDbStreams"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_dynamodbstreams::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_sdk_dynamodbstreams::config::ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodbstreams::operation::{
            describe_stream::DescribeStreamInput, get_records::GetRecordsInput,
            get_shard_iterator::GetShardIteratorInput,
        };
        let input = context.input();
        // A shard iterator stands for its stream: AWS authorises GetRecords on the stream ARN.
        let action = if input.downcast_ref::<DescribeStreamInput>().is_some() {
            "dynamodb:DescribeStream"
        } else if input.downcast_ref::<GetShardIteratorInput>().is_some() {
            "dynamodb:GetShardIterator"
        } else if input.downcast_ref::<GetRecordsInput>().is_some() {
            "dynamodb:GetRecords"
        } else {
            "dynamodb:?"
        };
        check(
            &self.function,
            &self.policy,
            &self.denials,
            vec![(action.to_owned(), self.stream_arn.clone())],
        )
    }
}

pub fn dynamodb_table_arn(region: &str, account: &str, table: &str) -> String {
    format!("arn:aws:dynamodb:{region}:{account}:table/{table}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// One function's identity-based policy: the statements of its `Policies`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

impl Policy {
    /// AWS's evaluation for one action on one resource: explicit Deny, then Allow, else deny.
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        let matching = |effect: Effect| {
            self.statements.iter().any(|s| {
                s.effect == effect
                    && s.actions.iter().any(|a| wildcard_match(a, action, true))
                    && s.resources
                        .iter()
                        .any(|r| wildcard_match(r, resource, false))
            })
        };
        !matching(Effect::Deny) && matching(Effect::Allow)
    }
}

/// IAM's wildcards: `*` any run of characters, `?` one. Actions compare case-insensitively.
pub fn wildcard_match(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if ignore_case {
            s.to_ascii_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, v) = (fold(pattern), fold(value));
    // Iterative glob match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < v.len() {
        if i < p.len() && (p[i] == '?' || p[i] == v[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

fn string_list(node: &Node, bindings: &Bindings) -> Result<Vec<String>, String> {
    match node {
        Node::Seq(items) => items.iter().map(|n| bindings.resolve(n)).collect(),
        other => Ok(vec![bindings.resolve(other)?]),
    }
}

fn statement(node: &Node, bindings: &Bindings) -> Result<Statement, String> {
    for (key, _) in node.entries() {
        if !matches!(key.as_str(), "Sid" | "Effect" | "Action" | "Resource") {
            return Err(format!(
                "statement key {key} is not modelled by the local IAM check"
            ));
        }
    }
    let effect = match node.get("Effect").and_then(Node::plain) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        other => return Err(format!("statement Effect {other:?}")),
    };
    Ok(Statement {
        effect,
        actions: string_list(
            node.get("Action").ok_or("statement without Action")?,
            bindings,
        )?,
        resources: string_list(
            node.get("Resource").ok_or("statement without Resource")?,
            bindings,
        )?,
    })
}

/// Every function's policy, by the crate name its `CodeUri` names (as the gateway routes).
pub fn function_policies(
    template: &str,
    bindings: &Bindings,
) -> Result<HashMap<String, Policy>, String> {
    let root = parse_tree(template)?;
    let resources = root
        .get("Resources")
        .ok_or("template.yaml has no Resources")?;
    let mut policies = HashMap::new();
    for (logical_id, resource) in resources.entries() {
        if resource.get("Type").and_then(Node::plain) != Some("AWS::Serverless::Function") {
            continue;
        }
        let props = resource.get("Properties");
        let function = props
            .and_then(|p| p.get("CodeUri"))
            .and_then(Node::plain)
            .and_then(|uri| uri.trim_end_matches('/').rsplit('/').next())
            .ok_or_else(|| format!("{logical_id} has no CodeUri"))?
            .to_owned();
        let mut policy = Policy::default();
        let documents = match props.and_then(|p| p.get("Policies")) {
            Some(Node::Seq(documents)) => documents.clone(),
            Some(other) => vec![other.clone()],
            None => Vec::new(),
        };
        for document in &documents {
            let statements = match document.get("Statement") {
                Some(Node::Seq(statements)) => statements.clone(),
                Some(one @ Node::Map(_)) => vec![one.clone()],
                _ => {
                    return Err(format!(
                        "{logical_id}: only inline policy documents (Statement lists) are \
                         modelled by the local IAM check, not {document:?}"
                    ));
                }
            };
            for s in &statements {
                policy
                    .statements
                    .push(statement(s, bindings).map_err(|e| format!("{logical_id}: {e}"))?);
            }
        }
        policies.insert(function, policy);
    }
    Ok(policies)
}

/// One refused request, as AWS would refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub function: String,
    pub action: String,
    pub resource: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AccessDeniedException: function {} is not authorized to perform {} on resource {} \
             (its Policies in template.yaml)",
            self.function, self.action, self.resource
        )
    }
}

/// Denials seen by every function of one stack, so a test fails on any of them.
pub type Denials = Arc<Mutex<Vec<Denial>>>;

/// The (action, resource) pairs AWS authorises for a DynamoDB request.
fn dynamodb_requests(
    input: &Input,
    arn: &dyn Fn(&str) -> String,
) -> Result<Vec<(String, String)>, String> {
    use aws_sdk_dynamodb::operation as op;
    let on = |action: &str, table: Option<&str>| {
        (format!("dynamodb:{action}"), arn(table.unwrap_or_default()))
    };
    let on_index = |action: &str, table: Option<&str>, index: Option<&str>| {
        let table_arn = arn(table.unwrap_or_default());
        let resource = match index {
            Some(index) => format!("{table_arn}/index/{index}"),
            None => table_arn,
        };
        (format!("dynamodb:{action}"), resource)
    };
    if let Some(i) = input.downcast_ref::<op::get_item::GetItemInput>() {
        return Ok(vec![on("GetItem", i.table_name())]);
    }
    if let Some(i) = input.downcast_ref::<op::put_item::PutItemInput>() {
        return Ok(vec![on("PutItem", i.table_name())]);
    }
    if let Some(i) = input.downcast_ref::<op::update_item::UpdateItemInput>() {
        return Ok(vec![on("UpdateItem", i.table_name())]);
    }
    if let Some(i) = input.downcast_ref::<op::delete_item::DeleteItemInput>() {
        return Ok(vec![on("DeleteItem", i.table_name())]);
    }
    if let Some(i) = input.downcast_ref::<op::query::QueryInput>() {
        return Ok(vec![on_index("Query", i.table_name(), i.index_name())]);
    }
    if let Some(i) = input.downcast_ref::<op::scan::ScanInput>() {
        return Ok(vec![on_index("Scan", i.table_name(), i.index_name())]);
    }
    if let Some(i) = input.downcast_ref::<op::transact_write_items::TransactWriteItemsInput>() {
        let mut out = Vec::new();
        for item in i.transact_items() {
            if let Some(p) = item.put() {
                out.push(on("PutItem", Some(p.table_name())));
            }
            if let Some(u) = item.update() {
                out.push(on("UpdateItem", Some(u.table_name())));
            }
            if let Some(d) = item.delete() {
                out.push(on("DeleteItem", Some(d.table_name())));
            }
            if let Some(c) = item.condition_check() {
                out.push(on("ConditionCheckItem", Some(c.table_name())));
            }
        }
        return Ok(out);
    }
    if let Some(i) = input.downcast_ref::<op::transact_get_items::TransactGetItemsInput>() {
        return Ok(i
            .transact_items()
            .iter()
            .filter_map(|t| t.get())
            .map(|g| on("GetItem", Some(g.table_name())))
            .collect());
    }
    if let Some(i) = input.downcast_ref::<op::batch_get_item::BatchGetItemInput>() {
        return Ok(i
            .request_items()
            .into_iter()
            .flat_map(|m| m.keys())
            .map(|t| on("BatchGetItem", Some(t)))
            .collect());
    }
    if let Some(i) = input.downcast_ref::<op::batch_write_item::BatchWriteItemInput>() {
        return Ok(i
            .request_items()
            .into_iter()
            .flat_map(|m| m.keys())
            .map(|t| on("BatchWriteItem", Some(t)))
            .collect());
    }
    Err("an operation the local IAM check does not model (add it in tests/src/iam.rs)".into())
}

/// Every DynamoDB request the functions of one stack made, in order: (function, operation).
/// One entry per request as the SDK sends it (the interceptor runs once per operation, before
/// any retry), so a test can count the round trips a webhook costs.
pub type RequestLog = Arc<Mutex<Vec<(String, &'static str)>>>;

/// The operation a DynamoDB request is.
fn operation_of(input: &Input) -> &'static str {
    use aws_sdk_dynamodb::operation as op;
    macro_rules! named {
        ($($module:ident :: $ty:ident => $name:literal),*) => {
            $(if input.downcast_ref::<op::$module::$ty>().is_some() { return $name; })*
        };
    }
    named!(
        get_item::GetItemInput => "GetItem",
        put_item::PutItemInput => "PutItem",
        update_item::UpdateItemInput => "UpdateItem",
        delete_item::DeleteItemInput => "DeleteItem",
        query::QueryInput => "Query",
        scan::ScanInput => "Scan",
        transact_write_items::TransactWriteItemsInput => "TransactWriteItems",
        transact_get_items::TransactGetItemsInput => "TransactGetItems",
        batch_get_item::BatchGetItemInput => "BatchGetItem",
        batch_write_item::BatchWriteItemInput => "BatchWriteItem"
    );
    "other"
}

/// The interceptor on one function's DynamoDB client.
#[derive(Debug, Clone)]
pub struct DynamoGuard {
    pub function: String,
    pub policy: Arc<Policy>,
    pub region: String,
    pub denials: Denials,
    pub requests: RequestLog,
}

impl Intercept for DynamoGuard {
    fn name(&self) -> &'static str {
        "LocalIamDynamoDb"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((self.function.clone(), operation_of(context.input())));
        let arn = |table: &str| dynamodb_table_arn(&self.region, ACCOUNT, table);
        let pairs = dynamodb_requests(context.input(), &arn).map_err(|e| {
            let denial = Denial {
                function: self.function.clone(),
                action: "dynamodb:?".into(),
                resource: e,
            };
            record(&self.denials, denial.clone());
            denial.to_string()
        })?;
        check(&self.function, &self.policy, &self.denials, pairs)
    }
}

/// The interceptor on one function's Secrets Manager client.
#[derive(Debug, Clone)]
pub struct SecretsGuard {
    pub function: String,
    pub policy: Arc<Policy>,
    pub region: String,
    /// Secret names → their full ARNs (AWS authorises against the ARN, suffix included).
    pub secret_arns: HashMap<String, String>,
    pub denials: Denials,
}

impl Intercept for SecretsGuard {
    fn name(&self) -> &'static str {
        "LocalIamSecretsManager"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueInput;
        let pair = match context.input().downcast_ref::<GetSecretValueInput>() {
            Some(i) => {
                let id = i.secret_id().unwrap_or_default();
                let arn = if id.starts_with("arn:") {
                    id.to_owned()
                } else {
                    self.secret_arns.get(id).cloned().unwrap_or_else(|| {
                        format!(
                            "arn:aws:secretsmanager:{}:{ACCOUNT}:secret:{id}",
                            self.region
                        )
                    })
                };
                ("secretsmanager:GetSecretValue".to_owned(), arn)
            }
            None => (
                "secretsmanager:?".to_owned(),
                "an operation the local IAM check does not model".to_owned(),
            ),
        };
        check(&self.function, &self.policy, &self.denials, vec![pair])
    }
}

/// Holds a function's EventBridge Scheduler client to its policy: each schedule operation is
/// authorised on the schedule's ARN, `arn:aws:scheduler:<region>:<account>:schedule/<group>/
/// <name>`, and creating or updating a schedule also needs `iam:PassRole` on the role its
/// target names (EventBridge Scheduler User Guide, "Actions, resources, and condition keys
/// for Amazon EventBridge Scheduler"; IAM User Guide, "Granting a user permissions to pass a
/// role to an AWS service").
#[derive(Debug, Clone)]
pub struct SchedulerGuard {
    pub function: String,
    pub policy: Arc<Policy>,
    pub region: String,
    pub denials: Denials,
}

impl SchedulerGuard {
    fn schedule_arn(&self, group: Option<&str>, name: Option<&str>) -> String {
        format!(
            "arn:aws:scheduler:{}:{ACCOUNT}:schedule/{}/{}",
            self.region,
            group.unwrap_or("default"),
            name.unwrap_or_default()
        )
    }

    /// The action/resource pairs AWS would authorise for `input`.
    pub fn pairs(&self, input: &Input) -> Vec<(String, String)> {
        use aws_sdk_scheduler::operation::create_schedule::CreateScheduleInput;
        use aws_sdk_scheduler::operation::delete_schedule::DeleteScheduleInput;
        use aws_sdk_scheduler::operation::get_schedule::GetScheduleInput;
        use aws_sdk_scheduler::operation::update_schedule::UpdateScheduleInput;
        let pass = |target: Option<&aws_sdk_scheduler::types::Target>| {
            (
                "iam:PassRole".to_owned(),
                target.map(|t| t.role_arn().to_owned()).unwrap_or_default(),
            )
        };
        if let Some(i) = input.downcast_ref::<CreateScheduleInput>() {
            vec![
                (
                    "scheduler:CreateSchedule".to_owned(),
                    self.schedule_arn(i.group_name(), i.name()),
                ),
                pass(i.target()),
            ]
        } else if let Some(i) = input.downcast_ref::<UpdateScheduleInput>() {
            vec![
                (
                    "scheduler:UpdateSchedule".to_owned(),
                    self.schedule_arn(i.group_name(), i.name()),
                ),
                pass(i.target()),
            ]
        } else if let Some(i) = input.downcast_ref::<DeleteScheduleInput>() {
            vec![(
                "scheduler:DeleteSchedule".to_owned(),
                self.schedule_arn(i.group_name(), i.name()),
            )]
        } else if let Some(i) = input.downcast_ref::<GetScheduleInput>() {
            vec![(
                "scheduler:GetSchedule".to_owned(),
                self.schedule_arn(i.group_name(), i.name()),
            )]
        } else {
            vec![(
                "scheduler:?".to_owned(),
                "an operation the local IAM check does not model".to_owned(),
            )]
        }
    }
}

impl Intercept for SchedulerGuard {
    fn name(&self) -> &'static str {
        "LocalIamScheduler"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        check(
            &self.function,
            &self.policy,
            &self.denials,
            self.pairs(context.input()),
        )
    }
}

fn record(denials: &Denials, denial: Denial) {
    eprintln!("local IAM: {denial}");
    denials
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(denial);
}

fn check(
    function: &str,
    policy: &Policy,
    denials: &Denials,
    pairs: Vec<(String, String)>,
) -> Result<(), BoxError> {
    for (action, resource) in pairs {
        if !policy.allows(&action, &resource) {
            let denial = Denial {
                function: function.to_owned(),
                action,
                resource,
            };
            record(denials, denial.clone());
            return Err(denial.to_string().into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE_ARN: &str = "arn:aws:dynamodb:ap-northeast-1:123456789012:table/t";
    const SECRET_ARN: &str = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:s-AbCdEf";

    fn bindings() -> Bindings {
        Bindings::local("ap-northeast-1", "t", SECRET_ARN)
    }

    #[test]
    fn wildcards_follow_iam() {
        assert!(wildcard_match("dynamodb:*", "dynamodb:GetItem", true));
        assert!(wildcard_match("DynamoDB:getitem", "dynamodb:GetItem", true));
        assert!(wildcard_match("dynamodb:Get*", "dynamodb:GetItem", true));
        assert!(!wildcard_match("dynamodb:Get*", "dynamodb:PutItem", true));
        assert!(wildcard_match("a?c", "abc", false));
        assert!(!wildcard_match("a?c", "ac", false));
        assert!(wildcard_match(
            &format!("{TABLE_ARN}/index/*"),
            &format!("{TABLE_ARN}/index/due-index"),
            false
        ));
        // A table's ARN does not cover its indexes, nor another table with the same prefix.
        assert!(!wildcard_match(
            TABLE_ARN,
            &format!("{TABLE_ARN}/index/x"),
            false
        ));
        assert!(!wildcard_match(TABLE_ARN, &format!("{TABLE_ARN}2"), false));
        // Resources are case-sensitive.
        assert!(!wildcard_match(TABLE_ARN, &TABLE_ARN.to_uppercase(), false));
        assert!(wildcard_match("*", "", false));
        assert!(wildcard_match("a*b*c", "aXbYbZc", false));
    }

    #[test]
    fn intrinsics_resolve_to_the_local_resources() {
        let text = r#"
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/f
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, dynamodb:Query]
              Resource:
                - !GetAtt Table.Arn
                - !Sub ${Table.Arn}/index/*
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource: !Ref TwilioSecretArn
            - Effect: Allow
              Action: dynamodb:PutItem
              Resource: !Sub arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${Table}
            - Effect: Deny
              Action: dynamodb:Query
              Resource: {"Fn::Sub": "${Table.Arn}/index/secret-index"}
"#;
        let policies = function_policies(text, &bindings()).unwrap();
        let f = &policies["f"];
        assert!(f.allows("dynamodb:GetItem", TABLE_ARN));
        assert!(f.allows("dynamodb:Query", &format!("{TABLE_ARN}/index/due-index")));
        assert!(
            !f.allows("dynamodb:GetItem", &format!("{TABLE_ARN}-other")),
            "another table"
        );
        assert!(f.allows("dynamodb:PutItem", TABLE_ARN));
        assert!(!f.allows("dynamodb:UpdateItem", TABLE_ARN));
        assert!(f.allows("secretsmanager:GetSecretValue", SECRET_ARN));
        assert!(!f.allows(
            "secretsmanager:GetSecretValue",
            "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:other-AbCdEf"
        ));
        // An explicit Deny wins over an Allow that matches too.
        assert!(!f.allows("dynamodb:Query", &format!("{TABLE_ARN}/index/secret-index")));
    }

    #[test]
    fn unmodelled_policy_forms_are_refused_not_guessed() {
        let with = |statement: &str| {
            format!(
                "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      \
                 CodeUri: functions/f\n      Policies:\n{statement}"
            )
        };
        let condition = with(
            "        - Statement:\n            - Effect: Allow\n              Action: dynamodb:GetItem\n              Resource: '*'\n              Condition: {}\n",
        );
        assert!(function_policies(&condition, &bindings()).is_err());
        let sam_template =
            with("        - DynamoDBCrudPolicy:\n            TableName: !Ref Table\n");
        assert!(function_policies(&sam_template, &bindings()).is_err());
        let unbound = with(
            "        - Statement:\n            - Effect: Allow\n              Action: dynamodb:GetItem\n              Resource: !GetAtt Other.Arn\n",
        );
        let err = function_policies(&unbound, &bindings()).unwrap_err();
        assert!(err.contains("Other.Arn"), "{err}");
    }

    #[test]
    fn a_transaction_is_authorised_item_by_item() {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
        use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
        let key = HashMap::from([("pk".to_owned(), AttributeValue::S("x".into()))]);
        let input = TransactWriteItemsInput::builder()
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name("t")
                            .set_item(Some(key.clone()))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name("t")
                            .set_key(Some(key))
                            .condition_expression("attribute_exists(pk)")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
            .unwrap();
        let erased = Input::erase(input);
        let arn = |t: &str| dynamodb_table_arn("ap-northeast-1", ACCOUNT, t);
        let pairs = dynamodb_requests(&erased, &arn).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("dynamodb:PutItem".to_owned(), TABLE_ARN.to_owned()),
                (
                    "dynamodb:ConditionCheckItem".to_owned(),
                    TABLE_ARN.to_owned()
                ),
            ]
        );
        let denials = Denials::default();
        let put_only = Policy {
            statements: vec![Statement {
                effect: Effect::Allow,
                actions: vec!["dynamodb:PutItem".into()],
                resources: vec![TABLE_ARN.into()],
            }],
        };
        let err = check("f", &put_only, &denials, pairs).unwrap_err();
        assert!(
            err.to_string().contains("dynamodb:ConditionCheckItem"),
            "{err}"
        );
        assert_eq!(denials.lock().unwrap()[0].function, "f");
    }

    #[test]
    fn a_query_of_an_index_is_authorised_on_the_index() {
        use aws_sdk_dynamodb::operation::query::QueryInput;
        let input = QueryInput::builder()
            .table_name("t")
            .index_name("due-index")
            .build()
            .unwrap();
        let erased = Input::erase(input);
        let arn = |t: &str| dynamodb_table_arn("ap-northeast-1", ACCOUNT, t);
        assert_eq!(
            dynamodb_requests(&erased, &arn).unwrap(),
            vec![(
                "dynamodb:Query".to_owned(),
                format!("{TABLE_ARN}/index/due-index")
            )]
        );
    }

    #[test]
    fn a_schedule_is_authorised_on_its_arn_and_creating_one_passes_its_role() {
        use aws_sdk_scheduler::operation::create_schedule::CreateScheduleInput;
        use aws_sdk_scheduler::operation::delete_schedule::DeleteScheduleInput;
        use aws_sdk_scheduler::types::Target;
        let text = r#"
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/f
      Policies:
        - Statement:
            - Effect: Allow
              Action: [scheduler:CreateSchedule, scheduler:DeleteSchedule]
              Resource: !Sub arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${CallTimers}/*
"#;
        let policy = Arc::new(function_policies(text, &bindings()).unwrap()["f"].clone());
        let guard = SchedulerGuard {
            function: "f".into(),
            policy: policy.clone(),
            region: "ap-northeast-1".into(),
            denials: Denials::default(),
        };
        let role = call_timers_role_arn("t");
        let create = CreateScheduleInput::builder()
            .name("KC1-end")
            .group_name(schedule_group("t"))
            .target(
                Target::builder()
                    .arn(lambda_function_arn("ap-northeast-1", "expiry-warning"))
                    .role_arn(&role)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let schedule =
            "arn:aws:scheduler:ap-northeast-1:123456789012:schedule/t-call-timers/KC1-end";
        let pairs = guard.pairs(&Input::erase(create));
        assert_eq!(
            pairs,
            vec![
                ("scheduler:CreateSchedule".to_owned(), schedule.to_owned()),
                ("iam:PassRole".to_owned(), role.clone()),
            ]
        );
        // The policy grants the schedule but not the role: the request is refused.
        assert!(policy.allows(&pairs[0].0, &pairs[0].1));
        assert!(!policy.allows(&pairs[1].0, &pairs[1].1));
        // Another group's schedule is not covered.
        let elsewhere = DeleteScheduleInput::builder()
            .name("KC1-end")
            .group_name("other")
            .build()
            .unwrap();
        let pairs = guard.pairs(&Input::erase(elsewhere));
        assert!(!policy.allows(&pairs[0].0, &pairs[0].1), "{pairs:?}");
    }
}
