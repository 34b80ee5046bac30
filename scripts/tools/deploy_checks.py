#!/usr/bin/env python3
"""Checks of the deployment files that no off-the-shelf linter makes; run by scripts/check-deploy.

  deploy_checks.py dockerignore Dockerfile .dockerignore
      Every path the Dockerfile copies from the build context, and every tracked file under
      it, survives .dockerignore.
  deploy_checks.py resolve-policy-conditions DIR TEMPLATE...
      Writes to DIR a copy of each template with the conditions of the generated IAM policy
      block (CanMutate, HasNotificationTopic) taken as true. checkov cannot evaluate policy
      statements under Fn::If and silently leaves its IAM checks out; on the copies it sees
      the whole policy of approve and auto mode.
  deploy_checks.py ecs-service TEMPLATE
      The rules of the ECS service that no linter knows: one task, the old one stopped before
      the new one starts (single SQLite writer), rollback, no public IP, read-only root
      filesystem, the image's non-root user.
  deploy_checks.py checkov-parsed RESULTS.json TEMPLATE...
      checkov parsed every template (it skips a file it cannot parse without failing), and
      lists the checks the templates skip, with their reasons.
  deploy_checks.py same-settings BASE.toml OTHER.toml KEY...
      The two settings files differ only in the lines that set KEY.
  deploy_checks.py rendered RENDERED.yaml PREFIX DEFAULTS.toml
      For the output of `kubectl kustomize`: writes PREFIX.core.yaml (every object but the
      ServiceMonitor, for kubernetes-validate) and PREFIX.toml (the settings in the ConfigMap);
      checks the ServiceMonitor and the references between the objects; checks that the
      settings use only keys of DEFAULTS.toml.
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
POLICY_CONDITIONS = {"CanMutate": True, "HasNotificationTopic": True}


def resolve(value):
    if isinstance(value, dict):
        branch = value.get("Fn::If")
        if len(value) == 1 and branch and branch[0] in POLICY_CONDITIONS:
            return resolve(branch[1] if POLICY_CONDITIONS[branch[0]] else branch[2])
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [resolve(v) for v in value]
        return [v for v in items if v != {"Ref": "AWS::NoValue"}]
    return value


def resolve_policy_conditions(out_dir, templates):
    for template in templates:
        data = yaml.load(open(template), CfnLoader)
        data["Resources"] = resolve(data["Resources"])
        target = os.path.join(out_dir, "resolved-" + os.path.basename(template))
        with open(target, "w") as f:
            yaml.safe_dump(data, f, sort_keys=False)


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


def check_checkov(results_path, templates):
    with open(results_path) as f:
        results = json.load(f)
    reports = results if isinstance(results, list) else [results]
    parsed = 0
    for report in reports:
        summary = report.get("summary", {})
        if summary.get("parsing_errors"):
            fail(f"checkov could not parse {summary['parsing_errors']} file(s)")
        parsed += summary.get("resource_count", 0)
    expected = 0
    for template in templates:
        data = yaml.load(open(template), CfnLoader)
        expected += len(data.get("Resources", {}))
        if template.startswith("infra/"):
            for name, resource in data["Resources"].items():
                for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                    reason = " ".join(str(skip.get("comment", "")).split())
                    if not reason:
                        fail(f"{template}: {name} skips {skip.get('id')} without a comment")
                    print(f"checkov skip {skip.get('id')} on {name} ({template}): {reason}")
    if parsed != expected:
        fail(f"checkov parsed {parsed} resources of {expected}: a template was not read")


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


def check_rendered(rendered, prefix, defaults_path):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    core = [d for d in docs if d["kind"] != "ServiceMonitor"]
    with open(f"{prefix}.core.yaml", "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)

    services = by_kind.get("Service", [])
    monitors = by_kind.get("ServiceMonitor", [])
    if len(monitors) != 1:
        fail(f"{rendered}: expected one ServiceMonitor, found {len(monitors)}")
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
    elif command == "resolve-policy-conditions":
        resolve_policy_conditions(args[0], args[1:])
    elif command == "ecs-service":
        check_ecs_service(*args)
    elif command == "checkov-parsed":
        check_checkov(args[0], args[1:])
    elif command == "same-settings":
        check_same_settings(args[0], args[1], args[2:])
    elif command == "rendered":
        check_rendered(*args)
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
