#!/usr/bin/env python3
"""Checks of the deployment files that no off-the-shelf linter makes; run by scripts/check-deploy.

  deploy_checks.py dockerignore Dockerfile .dockerignore
      Every path the Dockerfile copies from the build context, and every tracked file under
      it, survives .dockerignore.
  deploy_checks.py resolve-conditions DIR TEMPLATE...
      Writes to DIR two copies of each template that has Conditions: one with every condition
      true, one with every condition false, each Fn::If replaced by its branch and each
      resource or output whose condition is false left out. checkov cannot evaluate a policy
      whose statements sit under Fn::If and silently leaves its IAM checks out; together the
      two copies show it every branch (the whole policy of approve and auto mode, the DynamoDB
      tables, the member roles, the approver token secret, and the policy without them).
  deploy_checks.py ecs-service TEMPLATE
      The rules of the ECS service that no linter knows: one task, the old one stopped before
      the new one starts (single SQLite writer), rollback, no public IP, read-only root
      filesystem, the image's non-root user.
  deploy_checks.py checkov-results RESULTS.json TEMPLATE...
      Reads checkov's JSON report (every result, not only the failures): prints the failed
      checks and fails on any; checkov parsed every template (it skips a file it cannot parse
      without failing); every AWS::IAM::Role of every resolved copy got a result (passed,
      failed or skipped) from each of checkov's IAM checks of a role (checkov drops a check it
      cannot evaluate without a word); lists the checks the templates skip, with their reasons.
  deploy_checks.py same-settings BASE.toml OTHER.toml KEY...
      The two settings files differ only in the lines that set KEY.
  deploy_checks.py rendered RENDERED.yaml PREFIX DEFAULTS.toml [SERVICEMONITORS]
      For the output of `kubectl kustomize`: writes PREFIX.core.yaml (every object but the
      ServiceMonitor, for kubernetes-validate) and PREFIX.toml (the settings in the ConfigMap);
      checks that there are SERVICEMONITORS ServiceMonitors (default 0: an overlay applies
      without the Prometheus Operator's CRDs) and checks them; checks the references between
      the objects (Service, PodDisruptionBudget, NetworkPolicy, PriorityClass, volumes), the
      placement (required node affinity to nodemedic.io/placement=system, and its toleration),
      the NetworkPolicy's DNS and HTTPS egress, and that the settings use only keys of
      DEFAULTS.toml.
"""

import json
import os
import re
import subprocess
import sys

import yaml


def fail(message):
    print(f"check-deploy: {message}", file=sys.stderr)
    sys.exit(1)


# --- .dockerignore -------------------------------------------------------------------------


def docker_pattern(pattern):
    """A .dockerignore pattern as a regex, as Docker's patternmatcher reads it."""
    pattern = os.path.normpath(pattern.strip().lstrip("/"))
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i)
            out += pattern[i : end + 1] if end > i else re.escape(c)
            i = end if end > i else i
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + "$")


def ignored(path, rules):
    """Whether Docker leaves `path` out of the build context: the last rule matching the path
    or one of its parent directories decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def check_dockerignore(dockerfile, dockerignore):
    rules = []
    for line in open(dockerignore):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, docker_pattern(line[1:] if negated else line)))
    sources = []
    for line in open(dockerfile):
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        if any(w.startswith("--from") for w in words):
            continue
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    for source in sources:
        source = os.path.normpath(source)
        if ignored(source, rules):
            fail(f".dockerignore excludes {source}, which the Dockerfile copies")
        try:
            tracked = subprocess.run(
                ["git", "ls-files", "--", source], capture_output=True, text=True, check=True
            ).stdout.split()
        except (OSError, subprocess.CalledProcessError):
            tracked = [
                os.path.join(root, name) for root, _, names in os.walk(source) for name in names
            ]
        for path in tracked:
            if ignored(path, rules):
                fail(f".dockerignore excludes {path}, under {source}, which the Dockerfile copies")
    print(f".dockerignore keeps everything the Dockerfile copies: {', '.join(sources)}")


# --- CloudFormation ----------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short forms (!Ref, !Sub, ...) as their long forms."""


def _intrinsic(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)
NO_VALUE = {"Ref": "AWS::NoValue"}


def resolve(value, conditions):
    """`value` with each Fn::If replaced by its branch for `conditions` (name -> bool), and
    each AWS::NoValue left out of its list or mapping."""
    if isinstance(value, dict):
        branch = value.get("Fn::If")
        if len(value) == 1 and isinstance(branch, list) and len(branch) == 3:
            if branch[0] not in conditions:
                fail(f"Fn::If names an undefined condition {branch[0]!r}")
            return resolve(branch[1] if conditions[branch[0]] else branch[2], conditions)
        resolved = {k: resolve(v, conditions) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v != NO_VALUE}
    if isinstance(value, list):
        items = [resolve(v, conditions) for v in value]
        return [v for v in items if v != NO_VALUE]
    return value


def resolved_template(data, conditions):
    """The template as deployed when each condition has the value in `conditions`: resources
    and outputs whose condition is false left out, the rest without their Condition key."""
    out = dict(data)
    for section in ("Resources", "Outputs"):
        if section not in data:
            continue
        kept = {}
        for name, item in data[section].items():
            condition = item.get("Condition") if isinstance(item, dict) else None
            if condition is not None:
                if condition not in conditions:
                    fail(f"{name} names an undefined condition {condition!r}")
                if not conditions[condition]:
                    continue
                item = {k: v for k, v in item.items() if k != "Condition"}
            kept[name] = resolve(item, conditions)
        out[section] = kept
    return out


def copy_name(template, value):
    stem = os.path.basename(template).rsplit(".", 1)[0]
    return f"{stem}.conditions-{'true' if value else 'false'}.yaml"


def resolve_conditions(out_dir, templates):
    for template in templates:
        data = yaml.load(open(template), CfnLoader)
        names = list(data.get("Conditions", {}))
        if not names:
            continue
        for value in (True, False):
            resolved = resolved_template(data, {name: value for name in names})
            unresolved = json.dumps(resolved.get("Resources", {})).count('"Fn::If"')
            if unresolved:
                fail(f"{template}: {unresolved} Fn::If left after resolving the conditions")
            with open(os.path.join(out_dir, copy_name(template, value)), "w") as f:
                yaml.safe_dump(resolved, f, sort_keys=False)


def with_sqlite(value):
    """The value a deployment with StoreBackend sqlite gets: the false branch of UsesDynamoDb."""
    branch = value.get("Fn::If") if isinstance(value, dict) else None
    if branch and branch[0] == "UsesDynamoDb":
        return branch[2]
    return value


def check_ecs_service(template):
    data = yaml.load(open(template), CfnLoader)
    resources = data["Resources"]
    sqlite_rule = [
        rule
        for rule in data.get("Rules", {}).values()
        if rule.get("RuleCondition") == {"Fn::Equals": [{"Ref": "StoreBackend"}, "sqlite"]}
        and {"Fn::Equals": [{"Ref": "TaskCount"}, "1"]} in [a.get("Assert") for a in rule.get("Assertions", [])]
    ]

    def one(kind):
        found = [r["Properties"] for r in resources.values() if r["Type"] == kind]
        if len(found) != 1:
            fail(f"{template}: expected one {kind}, found {len(found)}")
        return found[0]

    service = one("AWS::ECS::Service")
    deployment = service.get("DeploymentConfiguration", {})
    breaker = deployment.get("DeploymentCircuitBreaker", {})
    network = service.get("NetworkConfiguration", {}).get("AwsvpcConfiguration", {})
    (container,) = one("AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    rules = {
        # SQLite takes one writer: one task, and the old task stops before the new one starts.
        "DesiredCount is TaskCount": service.get("DesiredCount") == {"Ref": "TaskCount"},
        "a rule keeps TaskCount at 1 with sqlite": bool(sqlite_rule),
        "MinimumHealthyPercent is 0 with sqlite": with_sqlite(deployment.get("MinimumHealthyPercent")) == 0,
        "MaximumPercent is 100 with sqlite": with_sqlite(deployment.get("MaximumPercent")) == 100,
        "the circuit breaker rolls back": breaker.get("Enable") is True and breaker.get("Rollback") is True,
        "AssignPublicIp is DISABLED": network.get("AssignPublicIp") == "DISABLED",
        "the root filesystem is read-only": container.get("ReadonlyRootFilesystem") is True,
        "the container runs as 65532": container.get("User") == "65532:65532",
        "the health check runs nodemedic probe": "probe" in container.get("HealthCheck", {}).get("Command", []),
    }
    broken = [rule for rule, ok in rules.items() if not ok]
    if broken:
        fail(f"{template}: {'; '.join(broken)}: not so")


# --- checkov -------------------------------------------------------------------------------


# checkov's checks of an AWS::IAM::Role: who may assume it (always evaluated), and the
# cloudsplaining analyses of its policies (evaluated with or without inline policies). Each
# returns UNKNOWN, which checkov drops from its report, when it meets a policy it cannot read,
# such as statements under Fn::If.
ROLE_CHECKS = {"CKV_AWS_60", "CKV_AWS_61", "CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_109",
               "CKV_AWS_110", "CKV_AWS_111"}
# ... and those that read inline policies only: a role with Policies must get them too.
INLINE_POLICY_CHECKS = {"CKV_AWS_62", "CKV_AWS_63"}
RESOLVED = re.compile(r"\.conditions-(true|false)\.yaml$")


def check_checkov(results_path, templates):
    with open(results_path) as f:
        results = json.load(f)
    reports = results if isinstance(results, list) else [results]
    parsed = 0
    checks = []
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for report in reports:
        summary = report.get("summary", {})
        if summary.get("parsing_errors"):
            fail(f"checkov could not parse {summary['parsing_errors']} file(s)")
        parsed += summary.get("resource_count", 0)
        for kind in counts:
            found = report.get("results", {}).get(f"{kind}_checks", [])
            counts[kind] += len(found)
            checks += [(kind, c) for c in found]
    for kind, check in checks:
        if kind == "failed":
            lines = "-".join(str(n) for n in check.get("file_line_range", []))
            print(
                f"FAILED {check['check_id']} {check['resource']} "
                f"({check['file_path'].lstrip('/')}:{lines}): {check.get('check_name', '')}"
                + (f" ({check['guideline']})" if check.get("guideline") else ""),
                file=sys.stderr,
            )

    expected = 0
    missing = []
    for template in templates:
        data = yaml.load(open(template), CfnLoader)
        resources = data.get("Resources", {})
        expected += len(resources)
        if template.startswith("infra/"):
            for name, resource in resources.items():
                for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                    reason = " ".join(str(skip.get("comment", "")).split())
                    if not reason:
                        fail(f"{template}: {name} skips {skip.get('id')} without a comment")
                    print(f"checkov skip {skip.get('id')} on {name} ({template}): {reason}")
        copy = os.path.basename(template)
        if not RESOLVED.search(copy) and data.get("Conditions"):
            continue  # an original with conditions: its resolved copies are the ones checked
        for name, resource in resources.items():
            if resource.get("Type") != "AWS::IAM::Role":
                continue
            wanted = set(ROLE_CHECKS)
            if resource.get("Properties", {}).get("Policies"):
                wanted |= INLINE_POLICY_CHECKS
            got = {
                check["check_id"]
                for _, check in checks
                if check["resource"] == f"AWS::IAM::Role.{name}"
                and os.path.basename(check["file_path"]) == copy
            }
            if wanted - got:
                missing.append(f"{name} in {copy}: {', '.join(sorted(wanted - got))}")
            else:
                print(f"checkov IAM checks of {name} in {copy}: {len(got & wanted)} of {len(wanted)}")
    print(
        f"checkov: passed {counts['passed']}, failed {counts['failed']}, "
        f"skipped {counts['skipped']} ({len(templates)} templates and resolved copies)"
    )
    if counts["failed"]:
        fail(f"checkov: {counts['failed']} failed check(s), listed above")
    if parsed != expected:
        fail(f"checkov parsed {parsed} resources of {expected}: a template was not read")
    if missing:
        fail(
            "checkov gave no result (it could not evaluate the policy) for these IAM checks: "
            + "; ".join(missing)
        )


# --- settings ------------------------------------------------------------------------------


def check_same_settings(base, other, keys):
    def lines(path):
        return [
            line
            for line in open(path).read().splitlines()
            if not any(re.match(rf"\s*{re.escape(key)}\s*=", line) for key in keys)
        ]

    if lines(base) != lines(other):
        fail(f"{other} differs from {base} in more than {', '.join(keys)}")


def load_toml(text):
    try:
        import tomllib
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            return None
    return tomllib.loads(text)


def unknown_keys(settings, defaults, prefix=""):
    """Keys of `settings` that `defaults` lacks. A table that is empty in the defaults
    ([fixes], http.tokens) takes any key."""
    unknown = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            unknown.append(name)
        elif isinstance(defaults[key], dict) and defaults[key]:
            if not isinstance(value, dict):
                unknown.append(f"{name} (a table in the defaults)")
            else:
                unknown += unknown_keys(value, defaults[key], f"{name}.")
    return unknown


# --- rendered Kubernetes objects -----------------------------------------------------------


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# The keys of the ServiceMonitor spec and endpoints that this check knows (from the CRD of
# prometheus-operator v0.84, monitoring.coreos.com_servicemonitors.yaml). A key outside these
# lists fails, so a misspelt key cannot pass unseen; add a key here after checking the CRD.
SERVICEMONITOR_SPEC_KEYS = {
    "selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
    "podTargetLabels", "sampleLimit", "targetLimit",
}
SERVICEMONITOR_ENDPOINT_KEYS = {
    "port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
    "honorTimestamps", "relabelings", "metricRelabelings", "params",
}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def check_service_monitor(monitor, services):
    """What the API server would check against the CRD's schema for the fields used here,
    and what Prometheus needs to find a target: the selector selects a Service in the same
    namespace, and each endpoint names one of its ports."""
    name = monitor.get("metadata", {}).get("name")
    where = f"ServiceMonitor {name}"
    if monitor.get("apiVersion") != "monitoring.coreos.com/v1":
        fail(f"{where}: apiVersion must be monitoring.coreos.com/v1")
    if not name:
        fail("a ServiceMonitor has no metadata.name")
    spec = monitor.get("spec")
    if not isinstance(spec, dict):
        fail(f"{where}: spec is required")
    unknown = set(spec) - SERVICEMONITOR_SPEC_KEYS
    if unknown:
        fail(f"{where}: spec keys not known to this check: {sorted(unknown)}")
    selector = spec.get("selector")
    endpoints = spec.get("endpoints")
    if not isinstance(selector, dict):
        fail(f"{where}: spec.selector is required")
    if not isinstance(endpoints, list) or not endpoints:
        fail(f"{where}: spec.endpoints is required")
    if set(selector) - {"matchLabels", "matchExpressions"}:
        fail(f"{where}: spec.selector takes matchLabels and matchExpressions")
    namespace = monitor.get("metadata", {}).get("namespace")
    selected = [
        s
        for s in services
        if s["metadata"].get("namespace") == namespace
        and labels_match(selector.get("matchLabels"), s["metadata"].get("labels", {}))
    ]
    if len(selected) != 1:
        fail(f"{where}: spec.selector.matchLabels selects {len(selected)} Services in {namespace}, not 1")
    ports = {p.get("name") for p in selected[0]["spec"].get("ports", [])}
    for endpoint in endpoints:
        if not isinstance(endpoint, dict):
            fail(f"{where}: an endpoint is not a mapping")
        unknown = set(endpoint) - SERVICEMONITOR_ENDPOINT_KEYS
        if unknown:
            fail(f"{where}: endpoint keys not known to this check: {sorted(unknown)}")
        if "port" in endpoint and endpoint["port"] not in ports:
            fail(f"{where}: endpoint port {endpoint['port']!r} is not a port of Service {selected[0]['metadata']['name']}")
        if "port" not in endpoint and "targetPort" not in endpoint:
            fail(f"{where}: an endpoint needs port or targetPort")
        if not str(endpoint.get("path", "/")).startswith("/"):
            fail(f"{where}: endpoint path must start with /")
        if endpoint.get("scheme", "http") not in ("http", "https", "HTTP", "HTTPS"):
            fail(f"{where}: endpoint scheme must be http or https")
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint and not DURATION.match(str(endpoint[key])):
                fail(f"{where}: endpoint {key} {endpoint[key]!r} is not a duration")


def store_backend(settings_text):
    parsed = load_toml(settings_text)
    if parsed is not None:
        return parsed.get("store", {}).get("backend", "sqlite")
    found = re.search(r'^\s*backend\s*=\s*"(\w+)"', settings_text, re.M)
    return found.group(1) if found else "sqlite"


def check_replicas(spec, names, backend):
    volumes = spec["template"]["spec"].get("volumes", [])
    claims = [v["name"] for v in volumes if "persistentVolumeClaim" in v]
    if backend == "sqlite":
        # SQLite has a single writer: never two pods, not even during a rollout.
        if spec.get("replicas") != 1 or spec.get("strategy", {}).get("type") != "Recreate":
            fail("with store.backend sqlite the Deployment must have replicas: 1 and strategy Recreate")
        if not claims:
            fail("with store.backend sqlite the audit database needs a PersistentVolumeClaim")
    elif backend == "dynamodb":
        # Replicas share DynamoDB; a ReadWriteOnce claim would pin them all to one node.
        if claims or names.get("PersistentVolumeClaim"):
            fail(f"with store.backend dynamodb no PersistentVolumeClaim is needed: {claims}")
        if spec.get("replicas", 1) < 2:
            fail("with store.backend dynamodb run at least two replicas")
        if spec.get("strategy", {}).get("type", "RollingUpdate") != "RollingUpdate":
            fail("with store.backend dynamodb roll updates (RollingUpdate), with no gap")
    else:
        fail(f"unknown store.backend {backend!r} in the ConfigMap")


# Where the pod runs: only on nodes of a nodegroup nodemedic does not manage (README, Install on
# EKS), so that no fix of nodemedic's replaces the node it runs on.
PLACEMENT_KEY, PLACEMENT_VALUE = "nodemedic.io/placement", "system"
# Kinds without a namespace: kustomize must not have given them one.
CLUSTER_SCOPED = {"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"}
# The ceiling of a PriorityClass that is not one of the system-* classes.
MAX_USER_PRIORITY = 1_000_000_000


def check_placement(pod_spec):
    """A required node affinity to the placement label in every node selector term (the
    terms are alternatives), and a toleration of the placement taint."""
    terms = (
        pod_spec.get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms", [])
    )
    selector = pod_spec.get("nodeSelector", {})

    def pins(term):
        return any(
            e.get("key") == PLACEMENT_KEY and e.get("operator") == "In" and e.get("values") == [PLACEMENT_VALUE]
            for e in term.get("matchExpressions", [])
        )

    if selector.get(PLACEMENT_KEY) != PLACEMENT_VALUE and not (terms and all(pins(t) for t in terms)):
        fail(f"the pod is not kept to nodes labelled {PLACEMENT_KEY}={PLACEMENT_VALUE} (required node affinity)")
    tolerated = any(
        t.get("key") == PLACEMENT_KEY
        and t.get("effect") in ("NoSchedule", None)
        and (t.get("operator") == "Exists" or t.get("value") == PLACEMENT_VALUE)
        for t in pod_spec.get("tolerations", [])
    )
    if not tolerated:
        fail(f"the pod does not tolerate the taint {PLACEMENT_KEY}={PLACEMENT_VALUE}:NoSchedule")


def check_priority(pod_spec, by_kind):
    name = pod_spec.get("priorityClassName")
    if not name:
        fail("the pod has no priorityClassName")
    if name in ("system-cluster-critical", "system-node-critical"):
        return
    classes = {d["metadata"]["name"]: d for d in by_kind.get("PriorityClass", [])}
    if name not in classes:
        fail(f"priorityClassName {name}: no PriorityClass {name} in the output")
    value = classes[name].get("value")
    if not isinstance(value, int) or not 0 < value <= MAX_USER_PRIORITY:
        fail(f"PriorityClass {name}: value {value!r} is not between 1 and {MAX_USER_PRIORITY}")
    if classes[name].get("globalDefault"):
        fail(f"PriorityClass {name} must not be the cluster's globalDefault")


def check_network_policy(by_kind, pod_labels, pod_namespace, container_ports):
    """One NetworkPolicy selects the pod and isolates both directions; ingress only on the
    container's ports; egress keeps DNS (UDP and TCP 53) to kube-dns and TCP 443."""
    policies = [
        p
        for p in by_kind.get("NetworkPolicy", [])
        if p["metadata"].get("namespace") == pod_namespace
        and labels_match(p["spec"].get("podSelector", {}).get("matchLabels"), pod_labels)
    ]
    if len(policies) != 1:
        fail(f"expected one NetworkPolicy selecting the nodemedic pod, found {len(policies)}")
    spec = policies[0]["spec"]
    if set(spec.get("policyTypes", [])) != {"Ingress", "Egress"}:
        fail("the NetworkPolicy must isolate Ingress and Egress")
    for rule in spec.get("ingress", []):
        if not rule.get("ports"):
            fail("a NetworkPolicy ingress rule without ports opens every port")
        for port in rule["ports"]:
            if port.get("port") not in container_ports:
                fail(f"NetworkPolicy ingress port {port.get('port')!r} is no container port")
    egress = spec.get("egress", [])

    def allows(port, protocol, to_dns=False):
        for rule in egress:
            ports = rule.get("ports")
            if ports and not any(
                p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
            ):
                continue
            peers = rule.get("to")
            if not peers:
                return True
            if to_dns and any(
                peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "kube-system"
                for peer in peers
            ):
                return True
        return False

    for protocol in ("UDP", "TCP"):
        if not allows(53, protocol, to_dns=True):
            fail(f"the NetworkPolicy does not let the pod reach DNS in kube-system on {protocol} 53")
    if not allows(443, "TCP"):
        fail("the NetworkPolicy does not let the pod reach HTTPS (TCP 443): AWS APIs")


def check_rendered(rendered, prefix, defaults_path, service_monitors="0"):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    core = [d for d in docs if d["kind"] != "ServiceMonitor"]
    with open(f"{prefix}.core.yaml", "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    for doc in docs:
        if doc["kind"] in CLUSTER_SCOPED and doc["metadata"].get("namespace"):
            fail(f"{doc['kind']} {doc['metadata']['name']} is cluster-scoped but has a namespace")

    services = by_kind.get("Service", [])
    monitors = by_kind.get("ServiceMonitor", [])
    if len(monitors) != int(service_monitors):
        fail(f"{rendered}: expected {service_monitors} ServiceMonitor(s), found {len(monitors)}")
    for monitor in monitors:
        check_service_monitor(monitor, services)

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        fail(f"{rendered}: expected one Deployment, found {len(deployments)}")
    deployment = deployments[0]
    spec = deployment["spec"]
    pod = spec["template"]
    pod_labels = pod["metadata"].get("labels", {})
    if not labels_match(spec["selector"].get("matchLabels"), pod_labels):
        fail("the Deployment's selector does not select its own pods")
    container_ports = {
        p.get("name")
        for c in pod["spec"]["containers"]
        for p in c.get("ports", [])
    }
    for service in services:
        if not labels_match(service["spec"].get("selector"), pod_labels):
            fail(f"Service {service['metadata']['name']} does not select the nodemedic pod")
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort")
            if isinstance(target, str) and target not in container_ports:
                fail(f"Service {service['metadata']['name']}: targetPort {target} is no container port")
    for budget in by_kind.get("PodDisruptionBudget", []):
        if not labels_match(budget["spec"].get("selector", {}).get("matchLabels"), pod_labels):
            fail(f"PodDisruptionBudget {budget['metadata']['name']} does not select the nodemedic pod")
    for container in pod["spec"]["containers"]:
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            port = container.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in container_ports:
                fail(f"{probe} uses port {port}, which the container does not name")
    names = {kind: {d["metadata"]["name"] for d in docs_} for kind, docs_ in by_kind.items()}
    for volume in pod["spec"].get("volumes", []):
        if "configMap" in volume and volume["configMap"]["name"] not in names.get("ConfigMap", set()):
            fail(f"volume {volume['name']}: no ConfigMap {volume['configMap']['name']}")
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim and claim not in names.get("PersistentVolumeClaim", set()):
            fail(f"volume {volume['name']}: no PersistentVolumeClaim {claim}")
    account = pod["spec"].get("serviceAccountName")
    if account not in names.get("ServiceAccount", set()):
        fail(f"the pod's service account {account} is not in the output")
    check_placement(pod["spec"])
    check_priority(pod["spec"], by_kind)
    check_network_policy(
        by_kind,
        pod_labels,
        deployment["metadata"].get("namespace"),
        container_ports | {
            p.get("containerPort") for c in pod["spec"]["containers"] for p in c.get("ports", [])
        },
    )

    # The settings file the Deployment passes with --config.
    settings = [
        d["data"]["nodemedic.toml"]
        for d in by_kind.get("ConfigMap", [])
        if "nodemedic.toml" in d.get("data", {})
    ]
    if len(settings) != 1:
        fail(f"{rendered}: expected one ConfigMap with nodemedic.toml, found {len(settings)}")
    with open(f"{prefix}.toml", "w") as f:
        f.write(settings[0])
    check_replicas(spec, names, store_backend(settings[0]))
    parsed = load_toml(settings[0])
    if parsed is None:
        print("settings keys: not checked (needs Python 3.11, or tomli)")
        return
    unknown = unknown_keys(parsed, load_toml(open(defaults_path).read()))
    if unknown:
        fail(f"unknown settings in the ConfigMap: {', '.join(unknown)}")
    if parsed.get("mode", "dry-run") not in ("observe", "dry-run", "approve", "auto"):
        fail(f"unknown mode {parsed['mode']!r} in the ConfigMap")


def main(argv):
    command, args = argv[1], argv[2:]
    if command == "dockerignore":
        check_dockerignore(*args)
    elif command == "resolve-conditions":
        resolve_conditions(args[0], args[1:])
    elif command == "ecs-service":
        check_ecs_service(*args)
    elif command == "checkov-results":
        check_checkov(args[0], args[1:])
    elif command == "same-settings":
        check_same_settings(args[0], args[1], args[2:])
    elif command == "rendered":
        check_rendered(*args)
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
