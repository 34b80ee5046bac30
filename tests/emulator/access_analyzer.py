"""IAM Access Analyzer's ValidatePolicy, which moto does not offer (it answers 500), for the
second opinion nodemedic asks before it writes a key policy (nodemedic_emulator.py imports it
from its own folder).

Not Access Analyzer's checks: a document that is not a JSON object with a Version and a
Statement gets the ERROR finding AWS gives such documents; any other document gets the
findings a test set with POST /_emulator/policy-findings (none by default), so a test can make
AWS disagree with nodemedic's own evaluator.
"""

import json

from werkzeug.wrappers import Response

_findings = []


def set_policy_findings(findings):
    """The findings every later ValidatePolicy answers with: [{"findingType", "issueCode",
    "findingDetails"}]."""
    _findings.clear()
    for finding in findings:
        _findings.append({
            "findingType": finding["findingType"],
            "issueCode": finding["issueCode"],
            "findingDetails": finding.get("findingDetails", ""),
            "learnMoreLink": "https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html",
            "locations": [],
        })


def clear_policy_findings():
    _findings.clear()


def is_validate_policy(environ):
    return environ.get("PATH_INFO", "") == "/policy/validation" and environ.get("REQUEST_METHOD") == "POST"


def validate_policy_endpoint(request):
    try:
        body = json.loads(request.get_data(as_text=True) or "{}")
    except ValueError:
        return _error("ValidationException", "The request body is not JSON")
    document = body.get("policyDocument")
    if not isinstance(document, str) or body.get("policyType") not in (
        "IDENTITY_POLICY", "RESOURCE_POLICY", "SERVICE_CONTROL_POLICY", "RESOURCE_CONTROL_POLICY"
    ):
        return _error("ValidationException", "policyDocument and a valid policyType are required")
    try:
        policy = json.loads(document)
    except ValueError:
        policy = None
    if not isinstance(policy, dict) or "Statement" not in policy or "Version" not in policy:
        findings = [{
            "findingType": "ERROR",
            "issueCode": "JSON_SYNTAX_ERROR" if policy is None else "MISSING_VERSION",
            "findingDetails": "The policy is not a JSON policy document with a Version and a Statement.",
            "learnMoreLink": "https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html",
            "locations": [],
        }]
    else:
        findings = list(_findings)
    return Response(json.dumps({"findings": findings}), status=200, content_type="application/json")


def _error(code, message):
    return Response(
        json.dumps({"message": message}),
        status=400,
        content_type="application/json",
        headers={"x-amzn-ErrorType": code},
    )
