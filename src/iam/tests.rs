use std::collections::BTreeSet;

use super::*;
use crate::settings::{Overrides, Settings};

fn input(mode: Mode) -> PolicyInput {
    let mut settings = Settings::load_with_env(&Overrides::default(), Some(Default::default()))
        .expect("the built-in defaults load");
    settings.mode = mode;
    settings.queue_url = "https://sqs.us-west-2.amazonaws.com/123456789012/nodemedic-events".into();
    PolicyInput::from_settings(&settings)
}

fn is_mutation(action: &str) -> bool {
    let verb = action.split(':').nth(1).unwrap_or("");
    !(verb.starts_with("Describe")
        || verb.starts_with("Get")
        || verb.starts_with("List")
        || matches!(
            action,
            "sqs:ReceiveMessage"
                | "sqs:DeleteMessage"
                | "sqs:GetQueueAttributes"
                | "sqs:ChangeMessageVisibility"
                | "sqs:SendMessage"
                | "sns:Publish"
                | "access-analyzer:ValidatePolicy"
        ))
}

#[test]
fn observe_and_dry_run_get_a_read_only_policy() {
    for mode in [Mode::Observe, Mode::DryRun] {
        let mutations: Vec<&str> = allowed_actions(&input(mode))
            .into_iter()
            .filter(|a| is_mutation(a))
            .collect();
        assert!(mutations.is_empty(), "{mode}: {mutations:?}");
    }
}

#[test]
fn each_enabled_fix_adds_its_own_actions_and_its_rollback() {
    let auto = allowed_actions(&input(Mode::Auto));
    for action in [
        "ec2:CreateRoute",
        "ec2:DeleteRoute",
        "ec2:ReplaceRoute",
        "kms:PutKeyPolicy",
        "eks:UpdateNodegroupConfig",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "eks:CreateAccessEntry",
        "eks:DeleteAccessEntry",
        "ec2:ModifyVpcAttribute",
        "ec2:ModifySubnetAttribute",
    ] {
        assert!(auto.contains(&action), "{action}");
    }
    let mut only_routes = input(Mode::Auto);
    only_routes.fixes = vec![FixKind::AddNatRoute];
    let actions: Vec<&str> = allowed_actions(&only_routes)
        .into_iter()
        .filter(|a| is_mutation(a))
        .collect();
    assert_eq!(actions, vec!["ec2:CreateRoute", "ec2:DeleteRoute"]);
}

#[test]
fn the_node_role_fix_may_attach_only_the_node_policies() {
    let policy = policy_json(&input(Mode::Auto));
    let statement = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "FixNodeRolePolicy")
        .unwrap();
    let allowed = statement["Condition"]["ArnEquals"]["iam:PolicyARN"]
        .as_array()
        .unwrap();
    assert_eq!(allowed.len(), 4);
    assert!(allowed.contains(&json!("arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy")));
}

#[test]
fn the_ignore_tag_is_enforced_by_iam_too() {
    let policy = policy_json(&input(Mode::Auto));
    let deny = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Effect"] == "Deny")
        .expect("a deny statement");
    assert_eq!(
        deny["Condition"]["Null"]["aws:ResourceTag/nodemedic.io/ignore"],
        "false"
    );
    let denied: BTreeSet<&str> = deny["Action"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mutations: BTreeSet<&str> = allowed_actions(&input(Mode::Auto))
        .into_iter()
        .filter(|a| is_mutation(a))
        .collect();
    assert_eq!(denied, mutations, "every mutation honours the tag");
}

#[test]
fn the_queue_is_named_by_its_arn() {
    assert_eq!(
        queue_arn("https://sqs.eu-west-1.amazonaws.com/123456789012/events").as_deref(),
        Some("arn:aws:sqs:eu-west-1:123456789012:events")
    );
    assert_eq!(
        queue_arn("http://127.0.0.1:4566/123456789012/events").as_deref(),
        Some("arn:aws:sqs:*:123456789012:events")
    );
    assert_eq!(queue_arn("not a url"), None);
    let policy = policy_json(&input(Mode::Observe));
    let queue = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "EventQueue")
        .unwrap();
    assert_eq!(
        queue["Resource"][0],
        "arn:aws:sqs:us-west-2:123456789012:nodemedic-events"
    );
}

/// Every AWS call the daemon's own code makes, read from the source: the policy for auto mode
/// with every fix enabled must allow each of them, so a new call cannot ship without its
/// permission.
#[test]
fn every_call_the_daemon_makes_is_in_the_policy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut calls = BTreeSet::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            // The labs and the demo build emulator worlds; they never run against real AWS.
            if relative.starts_with("lab") || relative == "demo.rs" {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // record_aws_call counts the calls the SDK makes on its own (AssumeRole).
            for marker in [".op(", "calls.record(", "record_aws_call("] {
                for piece in text.split(marker).skip(1) {
                    let Some(quoted) = piece.trim_start().strip_prefix('"') else {
                        continue;
                    };
                    let call = quoted.split('"').next().unwrap_or("");
                    if call.contains(':') && !call.contains(' ') {
                        calls.insert(call.to_string());
                    }
                }
            }
        }
    }
    assert!(calls.len() > 30, "the scan found the calls: {calls:?}");
    assert!(
        calls.contains("sts:AssumeRole"),
        "the scan sees the calls the SDK makes for nodemedic: {calls:?}"
    );
    let mut everything = input(Mode::Auto);
    everything.fixes = FixKind::ALL.to_vec();
    everything.sns_topic = Some("arn:aws:sns:us-west-2:123456789012:t".into());
    everything.member_roles = vec!["arn:aws:iam::111111111111:role/nodemedic-member".into()];
    let allowed = allowed_actions(&everything);
    let missing: Vec<&String> = calls
        .iter()
        .filter(|c| !allowed.contains(&c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "calls without a permission: {missing:?}"
    );
}

#[test]
fn the_cloudformation_block_gates_fixes_and_the_topic() {
    let block = policy_cloudformation(&input(Mode::Observe));
    assert!(block.starts_with("PolicyDocument:\n"));
    assert!(block.contains("- CanMutate\n"));
    assert!(block.contains("- HasNotificationTopic\n"));
    assert!(block.contains("!Ref EventQueueArn"));
    assert!(block.contains("- HasMemberRoles\n"));
    assert!(
        block.contains("Resource: !Ref MemberRoleArns\n"),
        "the member roles are the parameter's list itself"
    );
    assert!(
        block.contains("Sid: FixRoutes"),
        "every fix, whatever the mode"
    );
}

/// The blocks between `# BEGIN nodemedic iam-policy` and `# END nodemedic iam-policy` in a
/// template, each dedented to the BEGIN line's indentation.
/// The generated blocks of a template, each with whether its marker says `--member`.
fn embedded_blocks(template: &str) -> Vec<(bool, String)> {
    let mut blocks = Vec::new();
    let mut lines = template.lines();
    while let Some(line) = lines.next() {
        let Some(pad) = line.find("# BEGIN nodemedic iam-policy") else {
            continue;
        };
        let member = line.contains("--member");
        let mut block = String::new();
        for line in lines.by_ref() {
            if line.trim_start().starts_with("# END nodemedic iam-policy") {
                break;
            }
            block.push_str(line.get(pad..).unwrap_or(""));
            block.push('\n');
        }
        blocks.push((member, block));
    }
    blocks
}

#[test]
fn the_templates_embed_exactly_the_generated_policy() {
    let settings = Settings::load_with_env(&Overrides::default(), Some(Default::default()))
        .expect("the built-in defaults load");
    let input = PolicyInput::from_settings(&settings);
    let expected = policy_cloudformation(&input);
    let expected_member = member_policy_cloudformation(&input);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/cloudformation");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (member, block) in embedded_blocks(&text) {
            found += 1;
            let expected = if member { &expected_member } else { &expected };
            assert!(
                block == *expected,
                "{} embeds an IAM policy that differs from `nodemedic iam-policy --format cloudformation`: run scripts/sync-iam-policy",
                path.display()
            );
        }
    }
    assert!(
        found >= 2,
        "the ECS task role and the EKS pod role embed the policy; found {found} block(s)"
    );
}

#[test]
fn a_dynamodb_store_may_add_records_but_never_change_them() {
    let mut with_tables = input(Mode::Observe);
    with_tables.dynamodb = Some(("nodemedic-state".into(), "nodemedic-audit".into()));
    let policy = policy_json(&with_tables);
    let statement = |sid: &str| {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .cloned()
            .unwrap_or_else(|| panic!("{sid}"))
    };
    let audit = statement("AuditTrail");
    assert_eq!(
        audit["Resource"][0],
        "arn:aws:dynamodb:*:*:table/nodemedic-audit"
    );
    let actions = audit["Action"].to_string();
    assert!(actions.contains("dynamodb:PutItem"));
    assert!(!actions.contains("UpdateItem") && !actions.contains("DeleteItem"));
    assert!(
        statement("SharedState")["Resource"][1]
            .as_str()
            .unwrap()
            .ends_with("table/nodemedic-state/index/*")
    );
    assert!(
        policy_json(&input(Mode::Observe))["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["Sid"] != "SharedState"),
        "SQLite needs no DynamoDB"
    );
}

fn hub_and_spoke(mode: Mode, external_id: &str) -> Settings {
    let mut env: std::collections::HashMap<String, String> = [
        ("NODEMEDIC_ACCOUNTS__ROLE_NAME", "nodemedic-member"),
        ("NODEMEDIC_ACCOUNTS__MEMBERS", "111111111111,222222222222"),
        (
            "NODEMEDIC_QUEUE_URL",
            "https://sqs.us-west-2.amazonaws.com/123456789012/nodemedic-events",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if !external_id.is_empty() {
        env.insert(
            "NODEMEDIC_ACCOUNTS__EXTERNAL_ID".into(),
            external_id.to_string(),
        );
    }
    let mut settings =
        Settings::load_with_env(&Overrides::default(), Some(env)).expect("settings load");
    settings.mode = mode;
    settings
}

fn statement<'a>(policy: &'a Value, sid: &str) -> Option<&'a Value> {
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == sid)
}

#[test]
fn the_hub_may_assume_exactly_the_member_roles() {
    let policy = policy_json(&PolicyInput::from_settings(&hub_and_spoke(
        Mode::DryRun,
        "hub-7f3a",
    )));
    let assume = statement(&policy, "AssumeMemberRoles").expect("an AssumeRole statement");
    assert_eq!(assume["Action"], json!(["sts:AssumeRole"]));
    assert_eq!(
        assume["Resource"],
        json!([
            "arn:aws:iam::111111111111:role/nodemedic-member",
            "arn:aws:iam::222222222222:role/nodemedic-member"
        ])
    );
    let single = policy_json(&input(Mode::Auto));
    assert!(
        statement(&single, "AssumeMemberRoles").is_none(),
        "a single account assumes no role"
    );
    assert!(!allowed_actions(&input(Mode::Auto)).contains(&"sts:AssumeRole"));
}

#[test]
fn a_member_role_reads_and_fixes_like_the_hub_but_owns_no_queue() {
    for mode in [Mode::DryRun, Mode::Auto] {
        let settings = hub_and_spoke(mode, "hub-7f3a");
        let input = PolicyInput::from_settings(&settings);
        let actions = |policy: &Value| -> BTreeSet<String> {
            policy["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["Effect"] == "Allow")
                .flat_map(|s| s["Action"].as_array().unwrap().clone())
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect()
        };
        let member = actions(&member_policy_json(&input));
        let hub = actions(&policy_json(&input));
        let hub_only: BTreeSet<String> = hub.difference(&member).cloned().collect();
        assert!(
            hub_only
                .iter()
                .all(|a| a.starts_with("sqs:") || a.starts_with("sts:") || a == "sns:Publish"),
            "{mode}: {hub_only:?}"
        );
        assert!(hub_only.contains("sts:AssumeRole"));
        assert!(hub_only.contains("sqs:ReceiveMessage"));
        assert!(member.is_subset(&hub), "{mode}");
        assert_eq!(
            member.contains("ec2:CreateRoute"),
            mode == Mode::Auto,
            "fixes follow the mode"
        );
        assert!(member.contains("ec2:DescribeRouteTables"));
        let denies = member_policy_json(&input)["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["Sid"] == "HonourIgnoreTag");
        assert_eq!(
            denies,
            mode == Mode::Auto,
            "the ignore tag binds members too"
        );
    }
}

#[test]
fn the_member_role_trusts_the_hub_with_the_external_id() {
    let role = member_role(
        &hub_and_spoke(Mode::Auto, "hub-7f3a"),
        "123456789012",
        |i| i,
    )
    .unwrap();
    assert_eq!(role["RoleName"], "nodemedic-member");
    let trust = &role["TrustPolicy"]["Statement"][0];
    assert_eq!(trust["Principal"]["AWS"], "arn:aws:iam::123456789012:root");
    assert_eq!(trust["Action"], "sts:AssumeRole");
    assert_eq!(
        trust["Condition"]["StringEquals"]["sts:ExternalId"],
        "hub-7f3a"
    );
    assert!(statement(&role["PermissionsPolicy"], "FixRoutes").is_some());

    let role = member_role(
        &hub_and_spoke(Mode::Auto, ""),
        "arn:aws:iam::123456789012:role/nodemedic",
        |i| i,
    )
    .unwrap();
    let trust = &role["TrustPolicy"]["Statement"][0];
    assert_eq!(
        trust["Principal"]["AWS"],
        "arn:aws:iam::123456789012:role/nodemedic"
    );
    assert!(
        trust.get("Condition").is_none(),
        "no external id, no condition"
    );

    assert_eq!(
        member_role(&hub_and_spoke(Mode::Auto, ""), "hub", |i| i),
        Err(MemberRoleError::HubPrincipal("hub".into()))
    );
    let single = Settings::load_with_env(&Overrides::default(), Some(Default::default())).unwrap();
    assert_eq!(
        member_role(&single, "123456789012", |i| i),
        Err(MemberRoleError::NoRoleName)
    );
}

#[test]
fn the_json_policy_takes_the_partition_and_narrows_every_mutation() {
    let mut gov = input(Mode::Auto);
    gov.partition = "aws-us-gov".into();
    let policy = policy_json(&gov);
    assert!(!policy.to_string().contains("arn:aws:"), "{policy:#}");
    let statements = policy["Statement"].as_array().unwrap();
    for statement in statements.iter().filter(|s| s["Effect"] == "Allow") {
        let mutates = statement["Action"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| is_mutation(a.as_str().unwrap()));
        if mutates {
            assert_eq!(
                statement["Condition"]["StringEquals"]["aws:ResourceAccount"],
                "${aws:PrincipalAccount}",
                "{statement:#}"
            );
        }
    }
    let entries = statements
        .iter()
        .find(|s| s["Sid"] == "FixAccessEntry")
        .expect("the access-entry fix");
    assert_eq!(
        entries["Condition"]["StringEquals"]["eks:accessEntryType"],
        "EC2_LINUX"
    );
    let mut tagged = input(Mode::Auto);
    tagged.managed_tag = true;
    assert!(
        policy_json(&tagged)
            .to_string()
            .contains("aws:ResourceTag/nodemedic.io/managed")
    );
    // The template's conditions name policies in the stack's partition.
    let template = policy_cloudformation(&input(Mode::Auto));
    assert!(!template.contains("\"arn:aws:"), "{template}");
    assert!(
        template.contains("!Sub \"arn:${AWS::Partition}:iam::aws:policy/AmazonEKSClusterPolicy\"")
    );
}

#[test]
fn the_tables_customer_managed_key_is_usable_through_dynamodb_only() {
    let mut settings = Settings::load_with_env(&Overrides::default(), Some(Default::default()))
        .expect("the built-in defaults load");
    settings.store.backend = StoreBackend::Dynamodb;
    assert!(
        !policy_json(&PolicyInput::from_settings(&settings))
            .to_string()
            .contains("TablesKey"),
        "no key, no statement"
    );
    let key = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    settings.store.tables_key_arn = key.into();
    let policy = policy_json(&PolicyInput::from_settings(&settings));
    let statement = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "TablesKey")
        .expect("the key statement");
    assert_eq!(statement["Resource"], serde_json::json!([key]));
    assert_eq!(
        statement["Condition"]["StringLike"]["kms:ViaService"],
        "dynamodb.*.amazonaws.com"
    );
    assert!(policy_cloudformation(&PolicyInput::from_settings(&settings)).contains("HasTablesKey"));
}

#[test]
fn the_member_template_gets_the_member_policy_and_nothing_only_the_hub_does() {
    let mut settings = Settings::load_with_env(&Overrides::default(), Some(Default::default()))
        .expect("the built-in defaults load");
    settings.store.backend = StoreBackend::Dynamodb;
    let block = member_policy_cloudformation(&PolicyInput::from_settings(&settings));
    for hub_only in [
        "EventQueueArn",
        "NotificationTopicArn",
        "MemberRoleArns",
        "dynamodb:",
        "TablesKeyArn",
        "sts:GetCallerIdentity",
    ] {
        assert!(
            !block.contains(hub_only),
            "{hub_only} in the member policy:\n{block}"
        );
    }
    assert!(block.contains("Sid: FixRoutes") && block.contains("CanMutate"));
    assert!(block.contains("Sid: ReadEks"));
}
