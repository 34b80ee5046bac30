//! Property tests of [`parse_message`]. Whatever the body (any text, any JSON value, a real
//! launch envelope with fields removed, retyped, huge or in any script, inside an SNS
//! notification or not), it returns a trigger, an ignored event with a reason, or an error with
//! a reason, and never panics. A valid launch envelope keeps its identity, and whatever it
//! parses can be recorded the way the pipeline records it.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

use super::*;
use crate::core::proptest_support::config;

/// Keys the parser reads, at any level, so that random objects often look like envelopes.
const KEYS: [&str; 24] = [
    "id",
    "detail-type",
    "source",
    "account",
    "region",
    "time",
    "detail",
    "version",
    "resources",
    "Type",
    "TopicArn",
    "Message",
    "AutoScalingGroupName",
    "EC2InstanceId",
    "Details",
    "Subnet ID",
    "Availability Zone",
    "StatusMessage",
    "cluster",
    "nodegroup",
    "issues",
    "eventName",
    "requestParameters",
    "responseElements",
];

/// Values the parser compares against.
const WORDS: [&str; 13] = [
    "aws.autoscaling",
    LAUNCH_SUCCESSFUL,
    LAUNCH_UNSUCCESSFUL,
    NODEMEDIC_SOURCE,
    HEALTH_ISSUE,
    JOIN_CHECK,
    "aws.eks",
    CLOUDTRAIL_API_CALL,
    "CreateNodegroup",
    "Notification",
    "2024-10-04T18:06:36Z",
    "",
    " ",
];

/// Every (source, detail-type) pair the parser acts on.
const KNOWN_EVENTS: [(&str, &str); 5] = [
    ("aws.autoscaling", LAUNCH_SUCCESSFUL),
    ("aws.autoscaling", LAUNCH_UNSUCCESSFUL),
    (NODEMEDIC_SOURCE, HEALTH_ISSUE),
    (NODEMEDIC_SOURCE, JOIN_CHECK),
    ("aws.eks", CLOUDTRAIL_API_CALL),
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(KEYS.as_slice()).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        any::<String>().prop_map(Value::String),
        select(WORDS.as_slice()).prop_map(|w| Value::String(w.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Text made of JSON's tokens and the envelope's keys: mostly almost-JSON.
fn json_like_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        select(
            [
                "{", "}", "[", "]", ",", ":", "\"", "\\", "null", "true", "1e999", "-0", "\"\\u",
                "\\ud800", " ", "\n"
            ]
            .as_slice()
        )
        .prop_map(str::to_string),
        select(KEYS.as_slice()).prop_map(|k| format!("\"{k}\"")),
        select(WORDS.as_slice()).prop_map(|w| format!("\"{w}\"")),
        any::<String>(),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

/// An id, account, region or group name: AWS's alphabet or any script, never blank (the parser
/// reads a blank field as a missing one).
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9_.:/-]{1,40}", "\\PC{1,24}", any::<String>(),]
        .prop_filter("blank means absent", |s| !s.trim().is_empty())
}

/// RFC 3339 times over the whole range `time` parses, the last day of year 9999 included.
fn rfc3339_time() -> impl Strategy<Value = String> {
    let year = prop_oneof![Just(0u32), Just(9999u32), 0u32..=9999];
    let month_day = prop_oneof![Just((12u8, 31u8)), (1u8..=12, 1u8..=28)];
    let fraction = prop::option::of(0u32..1_000_000_000).prop_map(|f| match f {
        Some(nanos) => format!(".{nanos:09}"),
        None => String::new(),
    });
    let offset = prop_oneof![
        Just("Z".to_string()),
        (any::<bool>(), 0u8..=23, 0u8..=59)
            .prop_map(|(east, h, m)| format!("{}{h:02}:{m:02}", if east { '+' } else { '-' })),
    ];
    (year, month_day, 0u8..=23, 0u8..=59, 0u8..=59, fraction, offset).prop_map(
        |(year, (month, day), hour, minute, second, fraction, offset)| {
            format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{offset}")
        },
    )
}

#[derive(Debug, Clone)]
struct LaunchFields {
    event_id: String,
    account: String,
    region: String,
    group: String,
    time: String,
    outcome: LaunchOutcome,
    instance: Option<String>,
    subnet: Option<String>,
}

fn launch_fields() -> impl Strategy<Value = LaunchFields> {
    (
        name(),
        name(),
        name(),
        name(),
        rfc3339_time(),
        prop_oneof![
            Just(LaunchOutcome::Successful),
            Just(LaunchOutcome::Unsuccessful)
        ],
        prop::option::of(name()),
        prop::option::of(name()),
    )
        .prop_map(
            |(event_id, account, region, group, time, outcome, instance, subnet)| LaunchFields {
                event_id,
                account,
                region,
                group,
                time,
                outcome,
                instance,
                subnet,
            },
        )
}

/// The envelope EventBridge delivers for an Auto Scaling launch event.
fn launch_envelope(f: &LaunchFields) -> Value {
    let (detail_type, status) = match f.outcome {
        LaunchOutcome::Successful => (LAUNCH_SUCCESSFUL, "InProgress"),
        LaunchOutcome::Unsuccessful => (LAUNCH_UNSUCCESSFUL, "Failed"),
    };
    json!({
        "version": "0",
        "id": f.event_id,
        "detail-type": detail_type,
        "source": "aws.autoscaling",
        "account": f.account,
        "time": f.time,
        "region": f.region,
        "resources": [format!("arn:aws:autoscaling:{}:{}:autoScalingGroup:0:autoScalingGroupName/{}", f.region, f.account, f.group)],
        "detail": {
            "StatusCode": status,
            "AutoScalingGroupName": f.group,
            "ActivityId": "87654321-4321-4321-4321-210987654321",
            "Details": { "Availability Zone": "us-west-2b", "Subnet ID": f.subnet.clone().unwrap_or_default() },
            "RequestId": "12345678-1234-1234-1234-123456789012",
            "StatusMessage": "",
            "Description": "Launching a new EC2 instance",
            "EC2InstanceId": f.instance.clone().unwrap_or_default(),
            "Cause": "At 2024-10-04T18:06:36Z an instance was started",
        }
    })
}

/// An SNS notification (without raw delivery) carrying `message`.
fn in_sns(message: Value) -> Value {
    json!({
        "Type": "Notification",
        "MessageId": "0b0b0b0b-1111-2222-3333-444444444444",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:nodemedic",
        "Message": message,
        "Timestamp": "2024-10-04T18:06:41.000Z",
    })
}

/// Places in a launch envelope a mutation may hit.
const PATHS: [&[&str]; 14] = [
    &["id"],
    &["detail-type"],
    &["source"],
    &["account"],
    &["region"],
    &["time"],
    &["detail"],
    &["version"],
    &["resources"],
    &["detail", "AutoScalingGroupName"],
    &["detail", "EC2InstanceId"],
    &["detail", "Details"],
    &["detail", "Details", "Subnet ID"],
    &["detail", "StatusMessage"],
];

#[derive(Debug, Clone)]
enum Mutation {
    Remove(&'static [&'static str]),
    Retype(&'static [&'static str], Value),
    /// A string of this many characters.
    Huge(&'static [&'static str], usize),
    Unicode(&'static [&'static str], String),
    /// `Details` as the JSON-encoded string the Auto Scaling API uses.
    DetailsAsText,
    /// Wrapped in an SNS notification, its `Message` the envelope's text.
    WrapInSns,
    /// Wrapped in an SNS notification whose `Message` is any JSON value instead.
    SnsMessage(Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let path = || select(PATHS.as_slice());
    prop_oneof![
        path().prop_map(Mutation::Remove),
        (path(), json_value()).prop_map(|(p, v)| Mutation::Retype(p, v)),
        (path(), prop_oneof![0usize..64, 100_000usize..300_000])
            .prop_map(|(p, n)| Mutation::Huge(p, n)),
        (path(), "\\PC{0,16}").prop_map(|(p, s)| Mutation::Unicode(p, s)),
        Just(Mutation::DetailsAsText),
        Just(Mutation::WrapInSns),
        json_value().prop_map(Mutation::SnsMessage),
    ]
}

/// The object holding the last key of `path`, when every step on the way is an object.
fn parent<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let (_, steps) = path.split_last()?;
    let mut here = value;
    for step in steps {
        here = here.as_object_mut()?.get_mut(*step)?;
    }
    here.as_object_mut()
}

fn set(value: &mut Value, path: &[&str], new: Value) {
    if let (Some(object), Some(last)) = (parent(value, path), path.last()) {
        object.insert((*last).to_string(), new);
    }
}

fn apply(mut value: Value, mutation: &Mutation) -> Value {
    match mutation {
        Mutation::Remove(path) => {
            if let (Some(object), Some(last)) = (parent(&mut value, path), path.last()) {
                object.remove(*last);
            }
        }
        Mutation::Retype(path, new) => set(&mut value, path, new.clone()),
        Mutation::Huge(path, length) => set(&mut value, path, json!("é".repeat(*length))),
        Mutation::Unicode(path, text) => set(&mut value, path, json!(text)),
        Mutation::DetailsAsText => {
            if let Some(details) = value.pointer("/detail/Details").cloned() {
                set(
                    &mut value,
                    &["detail", "Details"],
                    json!(details.to_string()),
                );
            }
        }
        Mutation::WrapInSns => return in_sns(json!(value.to_string())),
        Mutation::SnsMessage(message) => return in_sns(message.clone()),
    }
    value
}

/// Every error says why; an ignored event says why it is ignored; a trigger can be recorded.
fn check_answer(body: &str) -> Result<(), TestCaseError> {
    match parse_message(body) {
        Ok(Parsed::Trigger(trigger)) => check_recordable(&trigger),
        Ok(Parsed::Ignored(ignored)) => {
            prop_assert!(!ignored.event_id.trim().is_empty());
            prop_assert!(!ignored.reason.trim().is_empty());
            Ok(())
        }
        Err(error) => {
            let has_reason = match &error {
                EnvelopeError::NotJson(why) => !why.trim().is_empty(),
                EnvelopeError::MissingField(field) => !field.is_empty(),
                EnvelopeError::EmptySnsMessage => true,
                EnvelopeError::InvalidField { field, problem } => {
                    !field.is_empty() && !problem.trim().is_empty()
                }
            };
            prop_assert!(has_reason, "an error without a reason: {error:?}");
            Ok(())
        }
    }
}

/// What the pipeline does with every trigger: names it in logs, stamps audit records with its
/// time, and stores it as JSON in records and the plans table, from which an approval reads it
/// back.
fn check_recordable(trigger: &Trigger) -> Result<(), TestCaseError> {
    for field in [&trigger.event_id, &trigger.account, &trigger.region] {
        prop_assert!(!field.trim().is_empty());
    }
    prop_assert!(!trigger.describe().is_empty());
    prop_assert!(!crate::core::time::timestamp(trigger.time).is_empty());
    let stored = serde_json::to_string(trigger).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let read_back: Trigger =
        serde_json::from_str(&stored).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&read_back, trigger);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_gets_an_answer(body in any::<String>()) {
        check_answer(&body)?;
    }

    #[test]
    fn almost_json_gets_an_answer(body in json_like_text()) {
        check_answer(&body)?;
    }

    #[test]
    fn any_json_value_gets_an_answer(value in json_value(), wrapped in any::<bool>()) {
        let value = if wrapped { in_sns(json!(value.to_string())) } else { value };
        check_answer(&value.to_string())?;
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack(
        depth in 1usize..20_000,
        opener in select(["[", "{\"detail\":", "{\"Message\":"].as_slice()),
    ) {
        let body = opener.repeat(depth);
        check_answer(&body)?;
        check_answer(&in_sns(json!(body)).to_string())?;
    }

    #[test]
    fn any_event_nodemedic_knows_gets_an_answer(
        (source, detail_type) in select(KNOWN_EVENTS.as_slice()),
        fields in launch_fields(),
        detail in prop::collection::vec((key(), json_value()), 0..8),
    ) {
        let detail: Map<String, Value> = detail.into_iter().collect();
        let envelope = json!({
            "id": fields.event_id, "detail-type": detail_type, "source": source,
            "account": fields.account, "region": fields.region, "time": fields.time,
            "detail": detail,
        });
        check_answer(&envelope.to_string())?;
    }

    #[test]
    fn mutated_launch_envelopes_get_an_answer(
        fields in launch_fields(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let envelope = mutations.iter().fold(launch_envelope(&fields), apply);
        check_answer(&envelope.to_string())?;
    }

    #[test]
    fn a_valid_launch_envelope_keeps_its_identity(
        fields in launch_fields(),
        wrapped in any::<bool>(),
        details_as_text in any::<bool>(),
    ) {
        let mut envelope = launch_envelope(&fields);
        if details_as_text {
            envelope = apply(envelope, &Mutation::DetailsAsText);
        }
        if wrapped {
            envelope = apply(envelope, &Mutation::WrapInSns);
        }
        let trigger = match parse_message(&envelope.to_string()) {
            Ok(Parsed::Trigger(trigger)) => *trigger,
            // A time whose UTC instant falls after 9999-12-31 is refused, with its reason.
            Err(EnvelopeError::InvalidField { field: "time", .. }) => {
                let time = OffsetDateTime::parse(&fields.time, &Rfc3339)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(time.checked_to_offset(time::UtcOffset::UTC).is_none());
                return Ok(());
            }
            other => return Err(TestCaseError::fail(format!("expected a trigger, got {other:?}"))),
        };
        check_recordable(&trigger)?;
        prop_assert_eq!(&trigger.event_id, &fields.event_id);
        prop_assert_eq!(&trigger.account, &fields.account);
        prop_assert_eq!(&trigger.region, &fields.region);
        let launch = trigger.launch().ok_or_else(|| TestCaseError::fail("not a launch"))?;
        prop_assert_eq!(&launch.asg_name, &fields.group);
        prop_assert_eq!(launch.outcome, fields.outcome);
        let present = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        prop_assert_eq!(&launch.instance_id, &present(&fields.instance));
        prop_assert_eq!(&launch.subnet_id, &present(&fields.subnet));
    }

    #[test]
    fn a_launch_envelope_without_a_required_field_names_it(
        fields in launch_fields(),
        missing in select(vec![&["id"][..], &["detail-type"], &["source"], &["account"], &["region"],
            &["time"], &["detail"], &["detail", "AutoScalingGroupName"]]),
        wrapped in any::<bool>(),
    ) {
        // Only the missing field may be wrong: a time with no UTC form is refused first.
        let time = OffsetDateTime::parse(&fields.time, &Rfc3339)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assume!(time.checked_to_offset(time::UtcOffset::UTC).is_some());
        let mut envelope = apply(launch_envelope(&fields), &Mutation::Remove(missing));
        if wrapped {
            envelope = apply(envelope, &Mutation::WrapInSns);
        }
        let error = parse_message(&envelope.to_string())
            .err()
            .ok_or_else(|| TestCaseError::fail("parsed without a required field"))?;
        let field = missing.join(".");
        prop_assert!(
            matches!(&error, EnvelopeError::MissingField(named) if *named == field),
            "removing {} gave {:?}", field, error
        );
    }
}
