"""Whether a KMS key policy lets the Auto Scaling service-linked role use the key, judged the way
the emulator gates launches (nodemedic_emulator.py imports it from its own folder).

A deliberately small reading of the policy: an Allow that names the role and grants use
(kms:Decrypt and kms:GenerateDataKey*, or kms:*) and kms:CreateGrant. nodemedic's own evaluator
is in src/core/key_policy.rs; this one only has to decide the worlds the tests build.
"""

import json

SLR_SUFFIX = ":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"


def policy_grants_autoscaling(policy_text, account_id):
    try:
        policy = json.loads(policy_text)
    except (TypeError, ValueError):
        return False
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    slr = f"arn:aws:iam::{account_id}{SLR_SUFFIX}"
    granted = set()
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        principals = principal.get("AWS", []) if isinstance(principal, dict) else principal
        if isinstance(principals, str):
            principals = [principals]
        if slr not in principals:
            continue
        actions = statement.get("Action", [])
        if isinstance(actions, str):
            actions = [actions]
        granted.update(actions)
    use = {"kms:*"} & granted or {"kms:Decrypt", "kms:GenerateDataKey*"} <= granted
    grant = "kms:*" in granted or "kms:CreateGrant" in granted
    return bool(use) and grant
