//! Parsing an SQS message body into a [`Trigger`]: EventBridge envelopes, optionally wrapped in
//! an SNS notification. Pure: text in, a typed trigger or a reason out.

use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::core::trigger::{
    HealthEvent, LaunchEvent, LaunchOutcome, NodegroupApiCall, Trigger, TriggerKind,
};

/// The Auto Scaling detail-types nodemedic acts on.
pub const LAUNCH_UNSUCCESSFUL: &str = "EC2 Instance Launch Unsuccessful";
pub const LAUNCH_SUCCESSFUL: &str = "EC2 Instance Launch Successful";
const AUTOSCALING_SOURCE: &str = "aws.autoscaling";
/// Events nodemedic publishes to its own queue.
pub const NODEMEDIC_SOURCE: &str = "nodemedic";
pub const HEALTH_ISSUE: &str = "Nodegroup Health Issue";
pub const JOIN_CHECK: &str = "Node Join Check";
const EKS_SOURCE: &str = "aws.eks";
pub const CLOUDTRAIL_API_CALL: &str = "AWS API Call via CloudTrail";
/// EKS API calls after which nodemedic checks the nodegroup at once.
pub const PREFLIGHT_CALLS: [&str; 2] = ["CreateNodegroup", "UpdateNodegroupConfig"];

/// Why a message body could not be read as an event. Such a message is left on the queue so
/// that its redrive policy moves it to the dead-letter queue.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is JSON but not an EventBridge event: missing or invalid field `{0}`")]
    MissingField(&'static str),
    #[error("SNS notification carries no `Message` string")]
    EmptySnsMessage,
    #[error("field `{field}` is invalid: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
}

/// A well-formed event nodemedic does not act on; it is acknowledged and recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IgnoredEvent {
    pub event_id: String,
    pub source: String,
    pub detail_type: String,
    pub reason: String,
}

/// The result of reading one message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Trigger(Box<Trigger>),
    Ignored(IgnoredEvent),
}

#[derive(Deserialize)]
struct RawEnvelope {
    id: Option<String>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    source: Option<String>,
    account: Option<String>,
    region: Option<String>,
    time: Option<String>,
    detail: Option<Value>,
}

#[derive(Deserialize)]
struct RawLaunchDetail {
    #[serde(rename = "AutoScalingGroupName")]
    asg_name: Option<String>,
    #[serde(rename = "EC2InstanceId")]
    instance_id: Option<String>,
    #[serde(rename = "Details")]
    details: Option<Value>,
    #[serde(rename = "StatusCode")]
    status_code: Option<String>,
    #[serde(rename = "StatusMessage")]
    status_message: Option<String>,
    #[serde(rename = "Description")]
    description: Option<String>,
    #[serde(rename = "Cause")]
    cause: Option<String>,
    #[serde(rename = "ActivityId")]
    activity_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawPlacement {
    #[serde(rename = "Subnet ID")]
    subnet_id: Option<String>,
    #[serde(rename = "Availability Zone")]
    availability_zone: Option<String>,
}

/// Reads one SQS message body.
pub fn parse_message(body: &str) -> Result<Parsed, EnvelopeError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let value = unwrap_sns(value)?;
    parse_envelope(value)
}

/// EventBridge can deliver through an SNS topic; without raw delivery the event is the
/// notification's `Message`, itself a JSON string.
fn unwrap_sns(value: Value) -> Result<Value, EnvelopeError> {
    let is_sns = value.get("Type").and_then(Value::as_str) == Some("Notification")
        && value.get("TopicArn").is_some();
    if !is_sns {
        return Ok(value);
    }
    let message = value
        .get("Message")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or(EnvelopeError::EmptySnsMessage)?;
    serde_json::from_str(message).map_err(|e| EnvelopeError::NotJson(format!("SNS Message: {e}")))
}

enum Known {
    Launch(LaunchOutcome),
    Health,
    JoinCheck,
    CloudTrail,
}

fn parse_envelope(value: Value) -> Result<Parsed, EnvelopeError> {
    let raw: RawEnvelope = serde_json::from_value(value)
        .map_err(|e| EnvelopeError::NotJson(format!("envelope: {e}")))?;
    let event_id = non_empty(raw.id).ok_or(EnvelopeError::MissingField("id"))?;
    let detail_type =
        non_empty(raw.detail_type).ok_or(EnvelopeError::MissingField("detail-type"))?;
    let source = non_empty(raw.source).ok_or(EnvelopeError::MissingField("source"))?;
    let detail = raw.detail.ok_or(EnvelopeError::MissingField("detail"))?;
    let ignored = |reason: String| {
        Ok(Parsed::Ignored(IgnoredEvent {
            event_id: event_id.clone(),
            source: source.clone(),
            detail_type: detail_type.clone(),
            reason,
        }))
    };

    let known = match (source.as_str(), detail_type.as_str()) {
        (AUTOSCALING_SOURCE, LAUNCH_UNSUCCESSFUL) => Known::Launch(LaunchOutcome::Unsuccessful),
        (AUTOSCALING_SOURCE, LAUNCH_SUCCESSFUL) => Known::Launch(LaunchOutcome::Successful),
        (NODEMEDIC_SOURCE, HEALTH_ISSUE) => Known::Health,
        (NODEMEDIC_SOURCE, JOIN_CHECK) => Known::JoinCheck,
        (EKS_SOURCE, CLOUDTRAIL_API_CALL) => Known::CloudTrail,
        _ => {
            return ignored(format!(
                "nodemedic does not act on `{source}` / `{detail_type}` events"
            ));
        }
    };

    let account = non_empty(raw.account).ok_or(EnvelopeError::MissingField("account"))?;
    let region = non_empty(raw.region).ok_or(EnvelopeError::MissingField("region"))?;
    let time_text = non_empty(raw.time).ok_or(EnvelopeError::MissingField("time"))?;
    let time =
        OffsetDateTime::parse(&time_text, &Rfc3339).map_err(|e| EnvelopeError::InvalidField {
            field: "time",
            problem: format!("`{time_text}` is not RFC 3339: {e}"),
        })?;
    // The audit trail stamps records with the event's time in UTC. A time on 9999-12-31 behind
    // UTC parses, but has no UTC form (converting it panics), so it is refused here.
    if time.checked_to_offset(UtcOffset::UTC).is_none() {
        return Err(EnvelopeError::InvalidField {
            field: "time",
            problem: format!("`{time_text}` is after 9999-12-31T23:59:59Z"),
        });
    }
    let invalid_detail = |e: serde_json::Error| EnvelopeError::InvalidField {
        field: "detail",
        problem: e.to_string(),
    };
    let kind = match known {
        Known::Launch(outcome) => TriggerKind::Launch(parse_launch(detail, outcome)?),
        Known::Health => {
            let health: HealthEvent = serde_json::from_value(detail).map_err(invalid_detail)?;
            if health.cluster.is_empty() || health.nodegroup.is_empty() {
                return Err(EnvelopeError::MissingField(
                    "detail.cluster / detail.nodegroup",
                ));
            }
            TriggerKind::Health(health)
        }
        Known::JoinCheck => {
            TriggerKind::JoinCheck(serde_json::from_value(detail).map_err(invalid_detail)?)
        }
        Known::CloudTrail => match parse_cloudtrail(&detail)? {
            Ok(call) => TriggerKind::Preflight(call),
            Err(reason) => return ignored(reason),
        },
    };
    Ok(Parsed::Trigger(Box::new(Trigger {
        event_id,
        account,
        region,
        time,
        kind,
    })))
}

fn parse_launch(detail: Value, outcome: LaunchOutcome) -> Result<LaunchEvent, EnvelopeError> {
    let detail: RawLaunchDetail =
        serde_json::from_value(detail).map_err(|e| EnvelopeError::InvalidField {
            field: "detail",
            problem: e.to_string(),
        })?;
    let asg_name = non_empty(detail.asg_name)
        .ok_or(EnvelopeError::MissingField("detail.AutoScalingGroupName"))?;
    let placement = parse_placement(detail.details)?;
    Ok(LaunchEvent {
        outcome,
        asg_name,
        instance_id: non_empty(detail.instance_id),
        subnet_id: non_empty(placement.subnet_id),
        availability_zone: non_empty(placement.availability_zone),
        status_code: non_empty(detail.status_code),
        status_message: non_empty(detail.status_message),
        description: non_empty(detail.description),
        cause: non_empty(detail.cause),
        activity_id: non_empty(detail.activity_id),
    })
}

/// A CloudTrail record of an EKS API call: the nodegroup it created or changed, or why it is
/// not one nodemedic checks.
fn parse_cloudtrail(detail: &Value) -> Result<Result<NodegroupApiCall, String>, EnvelopeError> {
    let text = |value: &Value| value.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let event_name =
        text(&detail["eventName"]).ok_or(EnvelopeError::MissingField("detail.eventName"))?;
    if !PREFLIGHT_CALLS.contains(&event_name.as_str()) {
        return Ok(Err(format!(
            "nodemedic does not check after `{event_name}`"
        )));
    }
    if let Some(error) = text(&detail["errorCode"]) {
        return Ok(Err(format!(
            "`{event_name}` failed with {error}; nothing changed"
        )));
    }
    let request = &detail["requestParameters"];
    let created = &detail["responseElements"]["nodegroup"];
    let cluster = text(&request["name"])
        .or_else(|| text(&request["clusterName"]))
        .or_else(|| text(&created["clusterName"]))
        .ok_or(EnvelopeError::MissingField("detail.requestParameters.name"))?;
    let nodegroup = text(&request["nodegroupName"])
        .or_else(|| text(&created["nodegroupName"]))
        .ok_or(EnvelopeError::MissingField(
            "detail.requestParameters.nodegroupName",
        ))?;
    Ok(Ok(NodegroupApiCall {
        cluster,
        nodegroup,
        event_name,
    }))
}

/// `Details` is an object in EventBridge events but a JSON-encoded string in the Auto Scaling
/// activity API; accept both.
fn parse_placement(details: Option<Value>) -> Result<RawPlacement, EnvelopeError> {
    let invalid = |problem: String| EnvelopeError::InvalidField {
        field: "detail.Details",
        problem,
    };
    match details {
        None | Some(Value::Null) => Ok(RawPlacement::default()),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(RawPlacement::default()),
        Some(Value::String(text)) => {
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))
        }
        Some(object @ Value::Object(_)) => {
            serde_json::from_value(object).map_err(|e| invalid(e.to_string()))
        }
        Some(other) => Err(invalid(format!("expected an object, got {other}"))),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unsuccessful() -> Value {
        json!({
            "version": "0",
            "id": "12345678-1234-1234-1234-123456789012",
            "detail-type": "EC2 Instance Launch Unsuccessful",
            "source": "aws.autoscaling",
            "account": "123456789012",
            "time": "2024-10-04T18:06:36Z",
            "region": "us-west-2",
            "resources": ["auto-scaling-group-arn", "instance-arn"],
            "detail": {
                "StatusCode": "Failed",
                "AutoScalingGroupName": "eks-new_nodegroup_1-abcd",
                "ActivityId": "87654321-4321-4321-4321-210987654321",
                "Details": { "Availability Zone": "us-west-2b", "Subnet ID": "subnet-12345678" },
                "RequestId": "12345678-1234-1234-1234-123456789012",
                "StatusMessage": "Instance became unhealthy while waiting for instance to be in InService state. Termination Reason: Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state",
                "EndTime": "2024-10-04T18:06:40Z",
                "EC2InstanceId": "i-1234567890abcdef0",
                "StartTime": "2024-10-04T18:06:36Z",
                "Cause": "At 2024-10-04T18:06:36Z an instance was started"
            }
        })
    }

    fn trigger_of(value: &Value) -> Trigger {
        match parse_message(&value.to_string()) {
            Ok(Parsed::Trigger(trigger)) => *trigger,
            other => panic!("expected a trigger, got {other:?}"),
        }
    }

    fn launch_of(value: &Value) -> LaunchEvent {
        trigger_of(value).launch().cloned().expect("a launch event")
    }

    #[test]
    fn reads_the_documented_unsuccessful_event() {
        let trigger = trigger_of(&unsuccessful());
        assert_eq!(trigger.account, "123456789012");
        let trigger = trigger.launch().cloned().unwrap();
        assert_eq!(trigger.outcome, LaunchOutcome::Unsuccessful);
        assert_eq!(trigger.asg_name, "eks-new_nodegroup_1-abcd");
        assert_eq!(trigger.subnet_id.as_deref(), Some("subnet-12345678"));
        assert_eq!(trigger.availability_zone.as_deref(), Some("us-west-2b"));
        assert_eq!(trigger.instance_id.as_deref(), Some("i-1234567890abcdef0"));
        assert!(trigger.status_message.unwrap().contains("InvalidKMSKey"));
    }

    #[test]
    fn reads_the_successful_event_with_its_description() {
        let mut event = unsuccessful();
        event["detail-type"] = json!("EC2 Instance Launch Successful");
        event["detail"]["StatusCode"] = json!("InProgress");
        event["detail"]["StatusMessage"] = json!("");
        event["detail"]["Description"] = json!("Launching a new EC2 instance: i-12345678");
        let trigger = launch_of(&event);
        assert_eq!(trigger.outcome, LaunchOutcome::Successful);
        assert_eq!(trigger.status_message, None, "an empty message means none");
        assert_eq!(
            trigger.description.as_deref(),
            Some("Launching a new EC2 instance: i-12345678")
        );
    }

    #[test]
    fn an_empty_or_missing_instance_id_means_no_instance() {
        let mut event = unsuccessful();
        event["detail"]["EC2InstanceId"] = json!("");
        assert_eq!(launch_of(&event).instance_id, None);
        event["detail"]
            .as_object_mut()
            .unwrap()
            .remove("EC2InstanceId");
        assert_eq!(launch_of(&event).instance_id, None);
    }

    #[test]
    fn details_may_be_a_json_encoded_string() {
        let mut event = unsuccessful();
        event["detail"]["Details"] =
            json!("{\"Subnet ID\":\"subnet-5ea0c127\",\"Availability Zone\":\"us-west-2b\"}");
        assert_eq!(
            launch_of(&event).subnet_id.as_deref(),
            Some("subnet-5ea0c127")
        );
    }

    #[test]
    fn unwraps_an_sns_notification() {
        let wrapped = json!({
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:nodemedic",
            "Message": unsuccessful().to_string(),
            "Timestamp": "2024-10-04T18:06:41.000Z"
        });
        assert_eq!(
            trigger_of(&wrapped).event_id,
            "12345678-1234-1234-1234-123456789012"
        );
    }

    #[test]
    fn a_time_with_no_utc_form_is_refused_not_left_to_panic_later() {
        // Found by the property tests: 20:00 at -04:00 on 9999-12-31 is midnight of year 10000
        // in UTC, which the audit timestamp cannot represent.
        let mut event = unsuccessful();
        event["time"] = json!("9999-12-31T20:00:00-04:00");
        let error = parse_message(&event.to_string()).unwrap_err();
        assert!(
            matches!(error, EnvelopeError::InvalidField { field: "time", .. }),
            "{error:?}"
        );
        event["time"] = json!("9999-12-31T19:59:59-04:00");
        let trigger = trigger_of(&event);
        assert_eq!(
            crate::core::time::timestamp(trigger.time),
            "9999-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn other_well_formed_events_are_ignored_with_a_reason() {
        let mut event = unsuccessful();
        event["detail-type"] = json!("EC2 Instance Terminate Successful");
        match parse_message(&event.to_string()) {
            Ok(Parsed::Ignored(ignored)) => {
                assert_eq!(ignored.detail_type, "EC2 Instance Terminate Successful");
                assert!(ignored.reason.contains("does not act on"));
            }
            other => panic!("expected ignored, got {other:?}"),
        }
        event["source"] = json!("aws.ec2");
        event["detail-type"] = json!("EC2 Instance Launch Successful");
        assert!(matches!(
            parse_message(&event.to_string()),
            Ok(Parsed::Ignored(_))
        ));
    }

    #[test]
    fn malformed_bodies_are_rejected_with_the_reason() {
        let cases: Vec<(String, &str)> = vec![
            ("not json at all".into(), "not JSON"),
            ("".into(), "not JSON"),
            ("[1,2,3]".into(), "envelope"),
            ("{}".into(), "`id`"),
            (
                json!({"id": "x", "source": "aws.autoscaling", "detail": {}}).to_string(),
                "`detail-type`",
            ),
            (
                {
                    let mut e = unsuccessful();
                    e.as_object_mut().unwrap().remove("detail");
                    e.to_string()
                },
                "`detail`",
            ),
            (
                {
                    let mut e = unsuccessful();
                    e["detail"]
                        .as_object_mut()
                        .unwrap()
                        .remove("AutoScalingGroupName");
                    e.to_string()
                },
                "AutoScalingGroupName",
            ),
            (
                {
                    let mut e = unsuccessful();
                    e["time"] = json!("yesterday");
                    e.to_string()
                },
                "RFC 3339",
            ),
            (
                {
                    let mut e = unsuccessful();
                    e["detail"]["Details"] = json!(42);
                    e.to_string()
                },
                "Details",
            ),
            (
                {
                    let mut e = unsuccessful();
                    e["detail"]["StatusCode"] = json!(7);
                    e.to_string()
                },
                "detail",
            ),
            (
                json!({"Type": "Notification", "TopicArn": "arn:aws:sns:x", "Message": ""})
                    .to_string(),
                "SNS",
            ),
            (
                json!({"Type": "Notification", "TopicArn": "arn:aws:sns:x", "Message": "{oops"})
                    .to_string(),
                "SNS Message",
            ),
        ];
        for (body, expected) in cases {
            let error = parse_message(&body).expect_err(&body);
            assert!(
                error.to_string().contains(expected),
                "body {body:?}: error {error} should mention {expected}"
            );
        }
    }

    fn envelope(source: &str, detail_type: &str, detail: Value) -> Value {
        json!({"version": "0", "id": "e-1", "detail-type": detail_type, "source": source,
            "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-west-2",
            "resources": [], "detail": detail})
    }

    #[test]
    fn reads_nodemedics_own_health_and_join_check_events() {
        let health = trigger_of(&envelope(
            NODEMEDIC_SOURCE,
            HEALTH_ISSUE,
            json!({
                "cluster": "c", "nodegroup": "ng", "status": "DEGRADED",
                "issues": [{"code": "NodeCreationFailure", "message": "Instances failed to join the kubernetes cluster", "resourceIds": ["i-1"]}]
            }),
        ));
        assert_eq!(health.nodegroup(), Some(("c", "ng")));
        let TriggerKind::Health(event) = health.kind else {
            panic!("health")
        };
        assert_eq!(event.issues[0].resource_ids, vec!["i-1"]);

        let check = trigger_of(&envelope(
            NODEMEDIC_SOURCE,
            JOIN_CHECK,
            json!({
                "cluster": "c", "nodegroup": "ng", "asg_name": "eks-ng", "instance_id": "i-1", "subnet_id": "subnet-1",
                "launched_at": "2026-01-01T00:00:00Z", "due_at": "2026-01-01T00:15:00Z"
            }),
        ));
        assert!(matches!(check.kind, TriggerKind::JoinCheck(ref j) if j.instance_id == "i-1"));

        let bad = envelope(
            NODEMEDIC_SOURCE,
            HEALTH_ISSUE,
            json!({"cluster": "", "nodegroup": "ng", "status": "x", "issues": []}),
        );
        assert!(parse_message(&bad.to_string()).is_err());
    }

    #[test]
    fn a_cloudtrail_nodegroup_call_is_a_preflight() {
        let created = trigger_of(&envelope(
            "aws.eks",
            CLOUDTRAIL_API_CALL,
            json!({
                "eventSource": "eks.amazonaws.com", "eventName": "CreateNodegroup",
                "requestParameters": {"name": "eks-workshop", "nodegroupName": "new_nodegroup_2"},
                "responseElements": {"nodegroup": {"nodegroupName": "new_nodegroup_2", "clusterName": "eks-workshop"}}
            }),
        ));
        assert_eq!(
            created.kind,
            TriggerKind::Preflight(NodegroupApiCall {
                cluster: "eks-workshop".into(),
                nodegroup: "new_nodegroup_2".into(),
                event_name: "CreateNodegroup".into()
            })
        );
        let other = envelope(
            "aws.eks",
            CLOUDTRAIL_API_CALL,
            json!({"eventName": "DescribeCluster", "requestParameters": {"name": "c"}}),
        );
        assert!(
            matches!(parse_message(&other.to_string()), Ok(Parsed::Ignored(i)) if i.reason.contains("DescribeCluster"))
        );
        let failed = envelope(
            "aws.eks",
            CLOUDTRAIL_API_CALL,
            json!({"eventName": "UpdateNodegroupConfig", "errorCode": "InvalidParameterException",
            "requestParameters": {"name": "c", "nodegroupName": "ng"}}),
        );
        assert!(
            matches!(parse_message(&failed.to_string()), Ok(Parsed::Ignored(i)) if i.reason.contains("InvalidParameterException"))
        );
        let nameless = envelope(
            "aws.eks",
            CLOUDTRAIL_API_CALL,
            json!({"eventName": "CreateNodegroup", "requestParameters": {"name": "c"}}),
        );
        assert!(
            parse_message(&nameless.to_string())
                .unwrap_err()
                .to_string()
                .contains("nodegroupName")
        );
    }
}

#[cfg(test)]
mod proptests;
