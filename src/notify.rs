//! Notifications: a plan waiting for approval, every outcome, and escalations (verification failed,
//! rollback, breaker opened), sent to webhooks (nodemedic JSON, Slack-compatible JSON, or a text
//! template) and optionally an SNS topic. Best effort: a failed notification is logged, never
//! allowed to stop an incident.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use serde::Serialize;
use tracing::{debug, warn};

use crate::net::{NetError, http_client};
use crate::settings::{NotifySettings, Webhook, WebhookFormat};

/// What happened, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// `plan_awaiting_approval`, `outcome` or `escalation`.
    pub event: &'static str,
    pub incident_id: String,
    pub cluster: String,
    pub nodegroup: String,
    pub cause: String,
    pub summary: String,
    pub outcome: Option<String>,
    pub plan_id: Option<String>,
    /// Extra context: the steps waiting, or why it escalated.
    pub detail: String,
}

#[derive(Clone)]
pub struct Notifier {
    webhooks: Vec<Webhook>,
    sns: Option<(aws_sdk_sns::Client, String)>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("webhooks", &self.webhooks.len())
            .field("sns", &self.sns.as_ref().map(|(_, topic)| topic))
            .finish()
    }
}

impl Notifier {
    /// Sends nothing.
    pub fn disabled() -> Arc<Notifier> {
        Arc::new(Notifier {
            webhooks: Vec::new(),
            sns: None,
            http: None,
        })
    }

    pub fn new(settings: &NotifySettings, sdk: &SdkConfig) -> Result<Arc<Notifier>, NetError> {
        let http = if settings.webhooks.is_empty() {
            None
        } else {
            Some(http_client(WEBHOOK_TIMEOUT)?)
        };
        let sns = (!settings.sns_topic_arn.is_empty()).then(|| {
            (
                aws_sdk_sns::Client::new(sdk),
                settings.sns_topic_arn.clone(),
            )
        });
        Ok(Arc::new(Notifier {
            webhooks: settings.webhooks.clone(),
            sns,
            http,
        }))
    }

    pub fn is_enabled(&self) -> bool {
        !self.webhooks.is_empty() || self.sns.is_some()
    }

    pub async fn send(&self, notice: &Notice) {
        for webhook in &self.webhooks {
            let (content_type, body) = render(webhook, notice);
            match self.post(&webhook.url, content_type, body).await {
                Ok(status) if status.is_success() => {
                    debug!(url = %redact(&webhook.url), "notified")
                }
                Ok(status) => {
                    warn!(url = %redact(&webhook.url), %status, "webhook refused the notification")
                }
                Err(error) => {
                    warn!(url = %redact(&webhook.url), %error, "webhook notification failed")
                }
            }
        }
        if let Some((sns, topic)) = &self.sns {
            let message = serde_json::to_string(notice).unwrap_or_default();
            let subject: String = format!(
                "nodemedic {}: {}/{}",
                notice.event, notice.cluster, notice.nodegroup
            )
            .chars()
            .take(100)
            .collect();
            if let Err(error) = sns
                .publish()
                .topic_arn(topic)
                .subject(subject)
                .message(message)
                .send()
                .await
            {
                warn!(%topic, error = %aws_sdk_sns::error::DisplayErrorContext(&error), "SNS notification failed");
            }
        }
    }

    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: String,
    ) -> Result<reqwest::StatusCode, String> {
        let Some(http) = &self.http else {
            return Err("no HTTP client".into());
        };
        let response = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            // Without the URL: it may carry the webhook's secret.
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        // Read the body so the connection can be reused.
        let _ = response.bytes().await;
        Ok(status)
    }
}

/// A webhook that does not answer within this is given up: notifications are best effort.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Webhook URLs often carry their secret in the path, the query or the user part: logs get the
/// scheme and host only.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(webhook)".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}/…")
}

/// The body a webhook gets, by its format.
pub fn render(webhook: &Webhook, notice: &Notice) -> (&'static str, String) {
    match webhook.format {
        WebhookFormat::Slack => {
            let headline = match notice.event {
                "plan_awaiting_approval" => "Plan waiting for approval",
                "escalation" => "Escalation",
                _ => "Incident concluded",
            };
            let mut lines = vec![
                format!(
                    "*nodemedic: {headline}* — `{}/{}`",
                    notice.cluster, notice.nodegroup
                ),
                format!("*Cause:* `{}` — {}", notice.cause, notice.summary),
            ];
            if let Some(outcome) = &notice.outcome {
                lines.push(format!("*Outcome:* {outcome}"));
            }
            if let Some(plan) = &notice.plan_id {
                lines.push(format!("*Plan:* `{plan}` (`nodemedic approve {plan}`)"));
            }
            if !notice.detail.is_empty() {
                lines.push(notice.detail.clone());
            }
            lines.push(format!(
                "Incident `{}`: `nodemedic audit show {}`",
                notice.incident_id, notice.incident_id
            ));
            let text = lines.join("\n");
            (
                "application/json",
                serde_json::json!({
                    "text": text,
                    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
                })
                .to_string(),
            )
        }
        WebhookFormat::Template => {
            // A JSON template gets its values escaped, so that quotes and newlines in a summary
            // cannot break it.
            // (`{"` opens a JSON object; `{name}` is a placeholder.)
            let json = webhook
                .template
                .trim_start()
                .strip_prefix('{')
                .is_some_and(|rest| rest.trim_start().starts_with('"'));
            let fill = |value: &str| {
                if json {
                    let quoted = serde_json::Value::from(value).to_string();
                    quoted[1..quoted.len() - 1].to_string()
                } else {
                    value.to_string()
                }
            };
            let mut text = webhook.template.clone();
            for (key, value) in [
                ("event", notice.event),
                ("incident_id", &notice.incident_id),
                ("cluster", &notice.cluster),
                ("nodegroup", &notice.nodegroup),
                ("cause", &notice.cause),
                ("summary", &notice.summary),
                ("outcome", notice.outcome.as_deref().unwrap_or("")),
                ("plan_id", notice.plan_id.as_deref().unwrap_or("")),
                ("detail", &notice.detail),
            ] {
                text = text.replace(&format!("{{{key}}}"), &fill(value));
            }
            let content_type = if json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            (content_type, text)
        }
        WebhookFormat::Json => (
            "application/json",
            serde_json::to_string(notice).unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            event: "plan_awaiting_approval",
            incident_id: "inc-1".into(),
            cluster: "eks-workshop".into(),
            nodegroup: "ng".into(),
            cause: "kms_key_policy_blocks_autoscaling".into(),
            summary: "the key locks Auto Scaling out".into(),
            outcome: None,
            plan_id: Some("plan-abc".into()),
            detail: "patch_kms_key_policy".into(),
        }
    }

    fn hook(format: WebhookFormat, template: &str) -> Webhook {
        Webhook {
            url: "https://hooks.example.com/services/SECRET".into(),
            format,
            template: template.into(),
        }
    }

    #[test]
    fn slack_gets_text_and_a_block_with_the_approve_command() {
        let (content_type, body) = render(&hook(WebhookFormat::Slack, ""), &notice());
        assert_eq!(content_type, "application/json");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            value["text"]
                .as_str()
                .unwrap()
                .contains("nodemedic approve plan-abc")
        );
        assert_eq!(value["blocks"][0]["type"], "section");
    }

    #[test]
    fn a_template_fills_its_placeholders() {
        let (content_type, body) = render(
            &hook(
                WebhookFormat::Template,
                "{event}: {cluster}/{nodegroup} {cause} plan={plan_id} outcome={outcome}",
            ),
            &notice(),
        );
        assert_eq!(content_type, "text/plain; charset=utf-8");
        assert_eq!(
            body,
            "plan_awaiting_approval: eks-workshop/ng kms_key_policy_blocks_autoscaling plan=plan-abc outcome="
        );
        let (content_type, _) = render(
            &hook(WebhookFormat::Template, "{\"id\": \"{incident_id}\"}"),
            &notice(),
        );
        assert_eq!(content_type, "application/json");
    }

    #[test]
    fn json_is_the_notice_itself() {
        let (_, body) = render(&hook(WebhookFormat::Json, ""), &notice());
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["plan_id"], "plan-abc");
    }

    #[test]
    fn webhook_secrets_stay_out_of_logs() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/XYZ"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact("https://hooks.example.com?token=SECRET"),
            "https://hooks.example.com/…"
        );
        assert_eq!(
            redact("https://user:SECRET@hooks.example.com/x"),
            "https://hooks.example.com/…"
        );
        assert_eq!(redact("not a url SECRET"), "(webhook)");
    }

    #[test]
    fn a_json_template_stays_json_whatever_the_values_hold() {
        let mut notice = notice();
        notice.summary = "a \"quoted\" summary\nwith a newline".into();
        let (content_type, body) = render(
            &hook(WebhookFormat::Template, "{\"text\": \"{summary}\"}"),
            &notice,
        );
        assert_eq!(content_type, "application/json");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["text"], notice.summary.as_str());
    }
}
