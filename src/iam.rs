//! The least-privilege IAM policy for a configuration: what `nodemedic iam-policy` prints and what
//! the deployment templates embed. Reading is always allowed; each enabled fix adds only its own
//! actions (and the calls that undo it), scoped by resource type and, where AWS supports it, by
//! condition keys; the ignore tag is enforced by IAM as well as by the guard.

use serde_json::{Value, json};

use crate::aws::MemberAccess;
use crate::core::checks::identity::REQUIRED_POLICIES;
use crate::core::guard::{FixPolicy, Mode};
use crate::core::plan::FixKind;
use crate::settings::{Settings, StoreBackend};

/// Where a statement applies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Any,
    /// The event queue.
    Queue,
    /// The notification topic.
    Topic,
    /// The DynamoDB state table and its indexes.
    StateTable,
    StateTableIndexes,
    /// The DynamoDB audit table.
    AuditTable,
    /// The role nodemedic assumes in each member account.
    MemberRoles,
    /// The customer managed key the DynamoDB tables are encrypted with.
    TablesKey,
    /// A resource type: `service`, then the ARN's resource part (`route-table/*`). The account and
    /// region are left open in plain JSON (events come from every region) and bound to the stack's
    /// account in templates.
    Typed(&'static str, &'static str),
}

/// One IAM statement.
#[derive(Debug, Clone, PartialEq)]
struct Statement {
    sid: &'static str,
    allow: bool,
    actions: Vec<&'static str>,
    resources: Vec<Resource>,
    condition: Option<Value>,
    /// Only present when the mode may change anything (a template condition).
    mutates: bool,
}

impl Statement {
    fn read(sid: &'static str, actions: &[&'static str], resources: Vec<Resource>) -> Statement {
        Statement {
            sid,
            allow: true,
            actions: actions.to_vec(),
            resources,
            condition: None,
            mutates: false,
        }
    }

    fn fix(sid: &'static str, actions: &[&'static str], resources: Vec<Resource>) -> Statement {
        Statement {
            mutates: true,
            ..Statement::read(sid, actions, resources)
        }
    }
}

/// What the policy is built for.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInput {
    pub mode: Mode,
    /// Fixes the policy lets nodemedic apply (their fix policy is not `never`).
    pub fixes: Vec<FixKind>,
    /// Join checks or the health watcher publish to the queue.
    pub publishes: bool,
    pub sns_topic: Option<String>,
    pub queue_url: String,
    pub ignore_tag: String,
    /// The DynamoDB tables (state, audit), when the store is DynamoDB.
    pub dynamodb: Option<(String, String)>,
    /// Their customer managed key, when they have one.
    pub tables_key: Option<String>,
    /// The roles assumed in member accounts (hub and spoke); empty in single-account mode.
    pub member_roles: Vec<String>,
    /// The partition of every ARN of the JSON policy (`aws`, `aws-us-gov`, `aws-cn`).
    pub partition: String,
    /// Mutations only on resources tagged `nodemedic.io/managed=true` (JSON policy).
    pub managed_tag: bool,
}

impl PolicyInput {
    pub fn from_settings(settings: &Settings) -> PolicyInput {
        let policy = settings.policy();
        PolicyInput {
            mode: settings.mode,
            fixes: FixKind::ALL
                .into_iter()
                .filter(|fix| policy.fix_policy(*fix) != FixPolicy::Never)
                .collect(),
            publishes: settings.join_deadline_secs() > 0 || settings.watch.enabled(),
            sns_topic: Some(settings.notify.sns_topic_arn.clone()).filter(|t| !t.is_empty()),
            queue_url: settings.queue_url.clone(),
            ignore_tag: settings.scope.ignore_tag.clone(),
            dynamodb: (settings.store.backend == StoreBackend::Dynamodb).then(|| {
                (
                    settings.store.state_table.clone(),
                    settings.store.audit_table.clone(),
                )
            }),
            tables_key: Some(settings.store.tables_key_arn.clone())
                .filter(|key| settings.store.backend == StoreBackend::Dynamodb && !key.is_empty()),
            // IAM policies are printed offline, so the partition is the commercial one; other
            // partitions take the ARNs from the template's MemberRoleArns parameter.
            member_roles: MemberAccess::from_settings(&settings.accounts)
                .map(|access| {
                    access
                        .members
                        .iter()
                        .map(|account| access.role_arn("aws", account))
                        .collect()
                })
                .unwrap_or_default(),
            partition: "aws".into(),
            managed_tag: false,
        }
    }

    fn mutates(&self) -> bool {
        matches!(self.mode, Mode::Approve | Mode::Auto)
    }

    fn enabled(&self, fixes: &[FixKind]) -> bool {
        fixes.iter().any(|fix| self.fixes.contains(fix))
    }
}

/// The managed policies `attach_node_role_policy` may attach, and nothing else.
fn attachable_policies() -> Vec<String> {
    REQUIRED_POLICIES
        .iter()
        .flat_map(|names| names.iter())
        .map(|name| format!("arn:aws:iam::aws:policy/{name}"))
        .collect()
}

fn statements(input: &PolicyInput, every_fix: bool) -> Vec<Statement> {
    use Resource::*;
    let mut out = vec![
        Statement::read(
            "ReadAutoScaling",
            &[
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeScalingActivities",
            ],
            vec![Any],
        ),
        Statement::read(
            "ReadEc2",
            &[
                "ec2:DescribeDhcpOptions",
                "ec2:DescribeImages",
                "ec2:DescribeInstances",
                "ec2:DescribeLaunchTemplateVersions",
                "ec2:DescribeNatGateways",
                "ec2:DescribeNetworkAcls",
                "ec2:DescribeRouteTables",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcAttribute",
                "ec2:DescribeVpcEndpoints",
                "ec2:DescribeVpcs",
            ],
            vec![Any],
        ),
        Statement::read(
            "ReadEks",
            &[
                "eks:DescribeAccessEntry",
                "eks:DescribeCluster",
                "eks:DescribeNodegroup",
                "eks:DescribeUpdate",
                "eks:ListClusters",
                "eks:ListNodegroups",
                "eks:ListUpdates",
            ],
            vec![Any],
        ),
        Statement::read(
            "ReadKms",
            &[
                "kms:DescribeKey",
                "kms:GetKeyPolicy",
                "kms:ListGrants",
                "kms:ListResourceTags",
            ],
            vec![Typed("kms", "key/*")],
        ),
        Statement::read(
            "ReadIam",
            &["iam:GetRole", "iam:ListAttachedRolePolicies"],
            vec![Typed("iam", "role/*")],
        ),
        Statement::read(
            "ReadInstanceProfiles",
            &["iam:GetInstanceProfile"],
            vec![Typed("iam", "instance-profile/*")],
        ),
        // The boot log of an instance that ran past the join deadline without a Node.
        Statement::read(
            "ReadConsoleOutput",
            &["ec2:GetConsoleOutput"],
            vec![Typed("ec2", "instance/*")],
        ),
        Statement::read("Identity", &["sts:GetCallerIdentity"], vec![Any]),
        // A second opinion on a key policy before it is written; reads nothing of the account.
        Statement::read(
            "ReviewPolicies",
            &["access-analyzer:ValidatePolicy"],
            vec![Any],
        ),
    ];
    // GetQueueAttributes reads the redrive policy once, for the dead-letter metric.
    let mut queue = vec![
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ];
    if input.publishes {
        queue.push("sqs:SendMessage");
    }
    out.push(Statement::read("EventQueue", &queue, vec![Queue]));
    if input.dynamodb.is_some() || every_fix {
        // TransactWriteItems needs the permission of each kind of write it carries.
        out.push(Statement::read(
            "SharedState",
            &[
                "dynamodb:ConditionCheckItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            vec![StateTable, StateTableIndexes],
        ));
        // Records are only ever added: no update or delete, even for nodemedic itself. `audit
        // verify` scans for chains whose head was deleted.
        out.push(Statement::read(
            "AuditTrail",
            &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:Scan",
            ],
            vec![AuditTable],
        ));
    }
    if input.tables_key.is_some() || every_fix {
        // The tables' own key, and only through DynamoDB.
        let mut key = Statement::read(
            "TablesKey",
            &["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"],
            vec![TablesKey],
        );
        key.condition =
            Some(json!({ "StringLike": { "kms:ViaService": "dynamodb.*.amazonaws.com" } }));
        out.push(key);
    }
    if input.sns_topic.is_some() || every_fix {
        out.push(Statement::read("Notify", &["sns:Publish"], vec![Topic]));
    }
    if !input.member_roles.is_empty() || every_fix {
        out.push(Statement::read(
            "AssumeMemberRoles",
            &["sts:AssumeRole"],
            vec![MemberRoles],
        ));
    }
    if !input.mutates() && !every_fix {
        return out;
    }
    let wanted = |fixes: &[FixKind]| every_fix || input.enabled(fixes);
    let mut mutations: Vec<&'static str> = Vec::new();
    let mut fix = |statement: Statement, mutations: &mut Vec<&'static str>| {
        mutations.extend(statement.actions.iter().copied());
        out.push(statement);
    };
    if wanted(&[FixKind::AddNatRoute, FixKind::ReplaceDefaultRoute]) {
        let mut actions = vec!["ec2:DeleteRoute"];
        if wanted(&[FixKind::AddNatRoute]) {
            actions.push("ec2:CreateRoute");
        }
        if wanted(&[FixKind::ReplaceDefaultRoute]) {
            actions.push("ec2:ReplaceRoute");
        }
        actions.sort();
        fix(
            Statement::fix("FixRoutes", &actions, vec![Typed("ec2", "route-table/*")]),
            &mut mutations,
        );
    }
    if wanted(&[FixKind::AddRoleToInstanceProfile]) {
        fix(
            Statement::fix(
                "FixInstanceProfile",
                &[
                    "iam:AddRoleToInstanceProfile",
                    "iam:RemoveRoleFromInstanceProfile",
                ],
                vec![Typed("iam", "instance-profile/*")],
            ),
            &mut mutations,
        );
        // AddRoleToInstanceProfile needs PassRole on the role, and only towards EC2.
        let mut pass = Statement::fix(
            "PassNodeRoleToEc2",
            &["iam:PassRole"],
            vec![Typed("iam", "role/*")],
        );
        pass.condition =
            Some(json!({ "StringEquals": { "iam:PassedToService": "ec2.amazonaws.com" } }));
        fix(pass, &mut mutations);
    }
    if wanted(&[FixKind::EnableEndpointPrivateDns]) {
        fix(
            Statement::fix(
                "FixEndpointPrivateDns",
                &["ec2:ModifyVpcEndpoint"],
                vec![Typed("ec2", "vpc-endpoint/*")],
            ),
            &mut mutations,
        );
    }
    if wanted(&[FixKind::EnableVpcDns]) {
        fix(
            Statement::fix(
                "FixVpcDns",
                &["ec2:ModifyVpcAttribute"],
                vec![Typed("ec2", "vpc/*")],
            ),
            &mut mutations,
        );
    }
    if wanted(&[FixKind::EnableSubnetPublicIp]) {
        fix(
            Statement::fix(
                "FixSubnetPublicIp",
                &["ec2:ModifySubnetAttribute"],
                vec![Typed("ec2", "subnet/*")],
            ),
            &mut mutations,
        );
    }
    if wanted(&[FixKind::PatchKmsKeyPolicy]) {
        fix(
            Statement::fix(
                "FixKeyPolicy",
                &["kms:PutKeyPolicy"],
                vec![Typed("kms", "key/*")],
            ),
            &mut mutations,
        );
    }
    if wanted(&[FixKind::CycleNodegroup]) {
        fix(
            Statement::fix(
                "CycleNodegroup",
                &["eks:UpdateNodegroupConfig"],
                vec![Typed("eks", "nodegroup/*")],
            ),
            &mut mutations,
        );
    }
    if wanted(&[FixKind::AttachNodeRolePolicy]) {
        let mut statement = Statement::fix(
            "FixNodeRolePolicy",
            &["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            vec![Typed("iam", "role/*")],
        );
        statement.condition =
            Some(json!({ "ArnEquals": { "iam:PolicyARN": attachable_policies() } }));
        fix(statement, &mut mutations);
    }
    if wanted(&[FixKind::AttachClusterRolePolicy]) {
        let mut statement = Statement::fix(
            "FixClusterRolePolicy",
            &["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            vec![Typed("iam", "role/*")],
        );
        statement.condition = Some(json!({
            "ArnEquals": { "iam:PolicyARN": ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"] }
        }));
        fix(statement, &mut mutations);
    }
    if wanted(&[FixKind::CreateAccessEntry]) {
        fix(
            Statement::fix(
                "FixAccessEntry",
                &["eks:CreateAccessEntry", "eks:DeleteAccessEntry"],
                vec![Typed("eks", "cluster/*"), Typed("eks", "access-entry/*")],
            ),
            &mut mutations,
        );
    }
    if !input.ignore_tag.is_empty() && !mutations.is_empty() {
        mutations.sort();
        out.push(Statement {
            sid: "HonourIgnoreTag",
            allow: false,
            actions: mutations,
            resources: vec![Any],
            condition: Some(json!({
                "Null": { format!("aws:ResourceTag/{}", input.ignore_tag): "false" }
            })),
            mutates: true,
        });
    }
    out
}

/// The queue's ARN from its URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
pub fn queue_arn(queue_url: &str) -> Option<String> {
    let without_scheme = queue_url.split_once("://").map(|(_, rest)| rest)?;
    let mut parts = without_scheme.split('/');
    let host = parts.next()?;
    let account = parts.next().filter(|a| a.len() == 12)?;
    let name = parts.next().filter(|n| !n.is_empty())?;
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split('.').next())
        .unwrap_or("*");
    Some(format!("arn:aws:sqs:{region}:{account}:{name}"))
}

/// The policy document for `input`, as IAM takes it: the daemon's own (hub) role.
pub fn policy_json(input: &PolicyInput) -> Value {
    document(input, statements(input, false))
}

/// What only the hub does: read its own identity, the queue, the topic, the store's tables and
/// their key, and assume the member roles.
fn hub_only(statement: &Statement) -> bool {
    statement.sid == "Identity"
        || statement.resources.iter().any(|r| {
            matches!(
                r,
                Resource::Queue
                    | Resource::Topic
                    | Resource::MemberRoles
                    | Resource::StateTable
                    | Resource::StateTableIndexes
                    | Resource::AuditTable
                    | Resource::TablesKey
            )
        })
}

/// The permissions of the role nodemedic assumes in a member account: the same reads and fixes
/// as the hub's, without what only the hub does.
pub fn member_policy_json(input: &PolicyInput) -> Value {
    let member = statements(input, false)
        .into_iter()
        .filter(|s| !hub_only(s))
        .collect();
    document(input, member)
}

/// The member role's policy as nodemedic-member.yaml embeds it: the fixes under `CanMutate`.
pub fn member_policy_cloudformation(input: &PolicyInput) -> String {
    cloudformation_block(
        statements(input, true)
            .into_iter()
            .filter(|s| !hub_only(s))
            .collect(),
    )
}

/// Why a member role's policies cannot be printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberRoleError {
    #[error(
        "the hub principal {0:?} is neither a 12-digit account id nor an IAM ARN (arn:aws:iam::<account>:role/<name>)"
    )]
    HubPrincipal(String),
    #[error("accounts.role_name is empty: name the role nodemedic assumes in member accounts")]
    NoRoleName,
}

/// The hub as a trust policy principal: an account id means any principal of that account the
/// account allows to assume the role (its own IAM policy decides), an ARN exactly that principal.
pub fn hub_principal(text: &str) -> Result<String, MemberRoleError> {
    if text.len() == 12 && text.chars().all(|c| c.is_ascii_digit()) {
        return Ok(format!("arn:aws:iam::{text}:root"));
    }
    let mut parts = text.split(':');
    let is_iam_arn = parts.next() == Some("arn")
        && parts.next().is_some_and(|p| p.starts_with("aws"))
        && parts.next() == Some("iam")
        && parts.next() == Some("")
        && parts.next().is_some_and(|a| a.len() == 12)
        && parts.next().is_some_and(|r| !r.is_empty());
    if is_iam_arn {
        Ok(text.to_string())
    } else {
        Err(MemberRoleError::HubPrincipal(text.to_string()))
    }
}

/// The member role's trust policy: the hub may assume it, with the external id when one is set.
pub fn member_trust_policy(hub_principal: &str, external_id: Option<&str>) -> Value {
    let mut statement = json!({
        "Sid": "NodemedicHub",
        "Effect": "Allow",
        "Principal": { "AWS": hub_principal },
        "Action": "sts:AssumeRole",
    });
    if let Some(external_id) = external_id {
        statement["Condition"] = json!({ "StringEquals": { "sts:ExternalId": external_id } });
    }
    json!({ "Version": "2012-10-17", "Statement": [statement] })
}

/// What `nodemedic iam-policy --member` prints: the role to create in every member account.
pub fn member_role(
    settings: &Settings,
    hub: &str,
    narrowed: impl FnOnce(PolicyInput) -> PolicyInput,
) -> Result<Value, MemberRoleError> {
    let accounts = &settings.accounts;
    if !accounts.hub_and_spoke() {
        return Err(MemberRoleError::NoRoleName);
    }
    let principal = hub_principal(hub)?;
    let external_id = Some(accounts.external_id.as_str()).filter(|id| !id.is_empty());
    let input = narrowed(PolicyInput::from_settings(settings));
    let mut trust = member_trust_policy(&principal, external_id);
    narrowing::in_partition(&mut trust, &input.partition);
    Ok(json!({
        "RoleName": accounts.role_name,
        "MaxSessionDuration": accounts.session_duration_secs.max(3600),
        "TrustPolicy": trust,
        "PermissionsPolicy": member_policy_json(&input),
    }))
}

fn document(input: &PolicyInput, statements: Vec<Statement>) -> Value {
    let resources = |resource: &Resource| -> Vec<String> {
        match resource {
            Resource::Any => vec!["*".into()],
            Resource::Queue => vec![queue_arn(&input.queue_url).unwrap_or_else(|| "*".into())],
            Resource::Topic => vec![input.sns_topic.clone().unwrap_or_else(|| "*".into())],
            Resource::MemberRoles => input.member_roles.clone(),
            Resource::TablesKey => input.tables_key.iter().cloned().collect(),
            Resource::StateTable | Resource::StateTableIndexes | Resource::AuditTable => {
                let (state, audit) = input.dynamodb.clone().unwrap_or_default();
                vec![match resource {
                    Resource::StateTable => format!("arn:aws:dynamodb:*:*:table/{state}"),
                    Resource::StateTableIndexes => {
                        format!("arn:aws:dynamodb:*:*:table/{state}/index/*")
                    }
                    _ => format!("arn:aws:dynamodb:*:*:table/{audit}"),
                }]
            }
            Resource::Typed(service, path) if *service == "iam" => {
                vec![format!("arn:aws:iam::*:{path}")]
            }
            Resource::Typed(service, path) => vec![format!("arn:aws:{service}:*:*:{path}")],
        }
    };
    let statements: Vec<Value> = statements
        .iter()
        .map(|s| {
            let mut value = json!({
                "Sid": s.sid,
                "Effect": if s.allow { "Allow" } else { "Deny" },
                "Action": s.actions,
                "Resource": s.resources.iter().flat_map(resources).collect::<Vec<_>>(),
            });
            if let Some(condition) = &s.condition {
                value["Condition"] = condition.clone();
            }
            if s.mutates && s.allow {
                narrowing::narrow_mutation(&mut value, input.managed_tag);
            }
            value
        })
        .collect();
    let mut document = json!({ "Version": "2012-10-17", "Statement": statements });
    narrowing::in_partition(&mut document, &input.partition);
    document
}

/// The policy as the CloudFormation templates embed it: every statement a fix could need, the
/// mutating ones under the template condition `CanMutate`, the topic under
/// `HasNotificationTopic`, the member roles under `HasMemberRoles`, the DynamoDB tables under
/// `UsesDynamoDb`; the queue, topic, member roles and tables as the parameters `EventQueueArn`,
/// `NotificationTopicArn`, `MemberRoleArns`, `StateTableName` and `AuditTableName`; other ARNs
/// bound to the stack's partition and account.
pub fn policy_cloudformation(input: &PolicyInput) -> String {
    cloudformation_block(statements(input, true))
}

fn cloudformation_block(statements: Vec<Statement>) -> String {
    let mut out = String::from("PolicyDocument:\n  Version: \"2012-10-17\"\n  Statement:\n");
    let resource = |resource: &Resource| -> String {
        match resource {
            Resource::Any => "\"*\"".into(),
            Resource::Queue => "!Ref EventQueueArn".into(),
            Resource::Topic => "!Ref NotificationTopicArn".into(),
            Resource::StateTable => "!Sub \"arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${StateTableName}\"".into(),
            Resource::StateTableIndexes => "!Sub \"arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${StateTableName}/index/*\"".into(),
            Resource::AuditTable => "!Sub \"arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${AuditTableName}\"".into(),
            Resource::MemberRoles => "!Ref MemberRoleArns".into(),
            Resource::TablesKey => "!Ref TablesKeyArn".into(),
            Resource::Typed(service, path) if *service == "iam" => {
                format!("!Sub \"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:{path}\"")
            }
            Resource::Typed(service, path) => {
                format!("!Sub \"arn:${{AWS::Partition}}:{service}:*:${{AWS::AccountId}}:{path}\"")
            }
        }
    };
    for statement in statements {
        let mut body = vec![
            format!("Sid: {}", statement.sid),
            format!("Effect: {}", if statement.allow { "Allow" } else { "Deny" }),
            "Action:".to_string(),
        ];
        body.extend(statement.actions.iter().map(|a| format!("  - {a}")));
        if statement.resources == [Resource::MemberRoles] {
            // The parameter is a list already: it is the Resource, not an item of it.
            body.push(format!("Resource: {}", resource(&Resource::MemberRoles)));
        } else {
            body.push("Resource:".into());
            body.extend(
                statement
                    .resources
                    .iter()
                    .map(|r| format!("  - {}", resource(r))),
            );
        }
        if let Some(condition) = &statement.condition {
            body.push("Condition:".into());
            body.extend(yaml_lines(condition, 1));
        }
        let gate = if statement.mutates {
            Some("CanMutate")
        } else if statement.resources.contains(&Resource::TablesKey) {
            Some("HasTablesKey")
        } else if statement.resources.contains(&Resource::Topic) {
            Some("HasNotificationTopic")
        } else if statement
            .resources
            .iter()
            .any(|r| matches!(r, Resource::StateTable | Resource::AuditTable))
        {
            Some("UsesDynamoDb")
        } else if statement.resources.contains(&Resource::MemberRoles) {
            Some("HasMemberRoles")
        } else {
            None
        };
        match gate {
            None => push_item(&mut out, 2, &body),
            Some(condition) => {
                out.push_str("    - !If\n");
                out.push_str(&format!("      - {condition}\n"));
                push_item(&mut out, 4, &body);
                out.push_str("      - !Ref AWS::NoValue\n");
            }
        }
    }
    out
}

/// Every AWS action the policy for `input` allows.
pub fn allowed_actions(input: &PolicyInput) -> Vec<&'static str> {
    let mut actions: Vec<&'static str> = statements(input, false)
        .into_iter()
        .filter(|s| s.allow)
        .flat_map(|s| s.actions)
        .collect();
    actions.sort();
    actions.dedup();
    actions
}

mod narrowing;
mod yaml;
pub use narrowing::MANAGED_TAG;
use yaml::{push_item, yaml_lines};

#[cfg(test)]
mod tests;
