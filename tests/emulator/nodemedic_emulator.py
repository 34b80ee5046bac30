#!/usr/bin/env python3
"""moto_server with the EKS and Auto Scaling behaviour nodemedic needs, and nothing else.

moto 5.2 cannot express several states an EKS managed nodegroup goes through (see
shared/reference/rust-stack.md). This launcher imports moto's own server application and
patches its backends so that tests and the demo can build worlds with the same API calls a
user would make:

* CreateNodegroup creates the nodegroup's Auto Scaling group (named `eks-<nodegroup>-<uuid>`,
  tagged `eks:cluster-name` / `eks:nodegroup-name`, using the nodegroup's launch template and
  subnets), so instances really launch into the nodegroup's subnet.
* Each nodegroup gets its own scaling config and health (moto shares one default dict), and
  EKS's defaults: the cluster's Kubernetes version, amiType AL2023 (CUSTOM with a launch-template
  AMI).
* UpdateNodegroupConfig validates min <= desired <= max like EKS, refuses a second update while
  one is in progress (ResourceInUseException), reports UPDATING for a short while, propagates the
  scaling change to the Auto Scaling group, and is visible through ListUpdates / DescribeUpdate.
* Launches are gated on the launch template's KMS keys: a customer managed key that is not
  Enabled, or whose policy does not let AWSServiceRoleForAutoScaling use it, makes the launch
  fail the way AWS does (instance terminated, a Cancelled scaling activity with
  Client.InvalidKMSKey.InvalidState, nodegroup DEGRADED with AsgInstanceLaunchFailures).
  A later successful scale-out clears that health issue, as EKS does.
* DescribeScalingActivities returns the activities recorded above.
* Clusters look like EKS's: resourcesVpcConfig carries vpcId, a cluster security group EKS
  creates (all traffic from itself), and the endpoint defaults; UpdateClusterConfig merges its
  changes; accessConfig.authenticationMode is kept; access entries (Create/Describe/List/Delete)
  exist. Managed nodegroup instances without launch-template security groups get the cluster
  security group, as EKS gives them.
* Blackholed routes, DryRun on route calls and the EventBridge `account` field: see
  ec2_events_patches.py, written beside this file and imported by it.

Test-only endpoints (never part of AWS) under /_emulator/:
  GET  /_emulator/ping
  POST /_emulator/nodegroup-health  {"region","cluster","nodegroup","status","issues":[...]}
  POST /_emulator/cluster-status    {"region","cluster","status"}  CREATING, UPDATING, FAILED ...
  POST /_emulator/instance-pending  {"region","instance","minutes_ago"}  held pending, launched then
  POST /_emulator/scaling-activities {"region","asg","activities":[...]}
  POST /_emulator/launch-failure     {"region","asg","message"}  later launches of the group fail
                                     with that message; an empty message clears it
  POST /_emulator/policy-findings    {"findings":[{"findingType","issueCode","findingDetails"}]}
                                     what IAM Access Analyzer's ValidatePolicy answers from now on
                                     (access_analyzer.py)
  POST /_emulator/deny               {"actions":["ec2:CreateRoute", "kms:ListResourceTags", ...]}
                                     those calls (dry run or not) are refused as for a role
                                     without them (EC2 Query and JSON protocols)

Run: python3 nodemedic_emulator.py --port 5000 [--host 127.0.0.1] [--update-seconds 1.0]
"""

import argparse
import json
import re
import os
import sys
import threading
import time
from datetime import datetime, timezone

from werkzeug.serving import run_simple
from werkzeug.wrappers import Request, Response

from moto.core import DEFAULT_ACCOUNT_ID
# moto's own random source: `POST /moto-api/seed?a=N` makes every id, ours too, repeatable.
from moto.moto_api._internal import mock_random
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

import moto.eks.models as eks_models
import moto.eks.responses as eks_responses
import moto.eks.urls as eks_urls
import moto.autoscaling.models as asg_models
import moto.autoscaling.responses as asg_responses
from kms_gate import policy_grants_autoscaling
from eks_access_entries import access_entries_endpoint, clear_access_entries
from access_analyzer import (
    clear_policy_findings, is_validate_policy, set_policy_findings, validate_policy_endpoint,
)
from eks_launch_templates import eks_launch_template, profile_failure
import eks_updates
import cluster_api
from eks_updates import _updates, _public_update
from moto.eks.exceptions import InvalidParameterException, ResourceInUseException, ResourceNotFoundException

UPDATE_SECONDS = 1.0
KMS_FAILURE = (
    "Instance became unhealthy while waiting for instance to be in InService state. "
    "Termination Reason: Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state"
)

_lock = eks_updates.lock
_dynamodb_lock = threading.Lock()
# (account, region, asg name) -> list of activity dicts, newest first
_activities = {}
# (account, region, asg name) -> failure message every later launch of that group gets
_forced_failures = {}
# "service:Action" names refused with UnauthorizedOperation
_denied_actions = set()


def _now():
    return datetime.now(timezone.utc)


def _backend(module_backends, account, region):
    return module_backends[account][region]


# --------------------------------------------------------------------------- clusters

_original_create_cluster = eks_models.EKSBackend.create_cluster


def _create_cluster(self, *args, **kwargs):
    from moto.ec2.models import ec2_backends

    cluster = _original_create_cluster(self, *args, **kwargs)
    config = dict(cluster.resources_vpc_config or {})
    ec2 = _backend(ec2_backends, self.account_id, self.region_name)
    subnets = config.get("subnetIds") or []
    vpc_id = ec2.get_subnet(subnets[0]).vpc_id if subnets else None
    if vpc_id:
        group = ec2.create_security_group(
            f"eks-cluster-sg-{cluster.name}-{random_suffix()}",
            "EKS created security group applied to ENI that is attached to EKS Control Plane master nodes, "
            "as well as any managed workloads.",
            vpc_id=vpc_id,
            tags={"aws:eks:cluster-name": cluster.name, f"kubernetes.io/cluster/{cluster.name}": "owned"},
        )
        ec2.authorize_security_group_ingress(group.id, "-1", None, None, [], source_groups=[{"GroupId": group.id}])
        config["vpcId"] = vpc_id
        config["clusterSecurityGroupId"] = group.id
    config.setdefault("securityGroupIds", [])
    config.setdefault("endpointPublicAccess", True)
    config.setdefault("endpointPrivateAccess", False)
    config.setdefault("publicAccessCidrs", ["0.0.0.0/0"])
    cluster.resources_vpc_config = config
    cluster.access_config = {"authenticationMode": "API_AND_CONFIG_MAP", "bootstrapClusterCreatorAdminPermissions": True}
    return cluster


def random_suffix():
    return mock_random.uuid4().hex[:10]


eks_models.EKSBackend.create_cluster = _create_cluster


_original_create_cluster_response = eks_responses.EKSResponse.create_cluster


def _create_cluster_response(self):
    result = _original_create_cluster_response(self)
    access = self._get_param("accessConfig") or {}
    if access.get("authenticationMode"):
        cluster = self.eks_backend.clusters[self._get_param("name")]
        cluster.access_config["authenticationMode"] = access["authenticationMode"]
    return result


eks_responses.EKSResponse.create_cluster = _create_cluster_response


def _region_of(environ):
    credential = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    return credential.group(1) if credential else "us-west-2"


# --------------------------------------------------------------------------- nodegroups

_original_nodegroup_init = eks_models.Nodegroup.__init__


def _nodegroup_init(self, *args, **kwargs):
    _original_nodegroup_init(self, *args, **kwargs)
    # moto shares one default dict between nodegroups: give each its own.
    self.scaling_config = dict(self.scaling_config)
    self.health = {"issues": []}
    self.resources = dict(self.resources)
    self.resources["autoScalingGroups"] = [{"name": f"eks-{self.nodegroup_name}-{self.uuid}"}]
    self.updating_until = 0.0
    self.settled_status = "ACTIVE"


eks_models.Nodegroup.__init__ = _nodegroup_init

_original_create_nodegroup = eks_models.EKSBackend.create_nodegroup


def _create_nodegroup(self, *args, **kwargs):
    nodegroup = _original_create_nodegroup(self, *args, **kwargs)
    _eks_defaults(self, nodegroup, kwargs)
    _create_nodegroup_asg(self, nodegroup)
    return nodegroup


def _eks_defaults(eks_backend, nodegroup, requested):
    """What EKS fills in, not moto's 1.19 and AL2_x86_64: the cluster's version; amiType CUSTOM
    (and no release) when the launch template names an AMI, else AL2023 unless one was asked for."""
    from moto.ec2.models import ec2_backends

    if not requested.get("version"):
        nodegroup.version = eks_backend.clusters[nodegroup.cluster_name].version
    image = None
    if nodegroup.launch_template and nodegroup.launch_template.get("id"):
        ec2 = _backend(ec2_backends, eks_backend.account_id, eks_backend.region_name)
        template = ec2.launch_templates.get(nodegroup.launch_template["id"])
        if template is not None:
            version = template.get_version(nodegroup.launch_template.get("version") or template.default_version_number)
            image = version.data.get("ImageId")
    if image:
        nodegroup.ami_type, nodegroup.release_version = "CUSTOM", None
        return
    if not requested.get("ami_type"):
        nodegroup.ami_type = "AL2023_x86_64_STANDARD"
    if not requested.get("release_version"):
        nodegroup.release_version = f"{nodegroup.version}.0-20251101"


def _create_nodegroup_asg(eks_backend, nodegroup):
    from moto.ec2.models import ec2_backends

    account, region = eks_backend.account_id, eks_backend.region_name
    autoscaling = _backend(asg_models.autoscaling_backends, account, region)
    ec2 = _backend(ec2_backends, account, region)
    asg_name = nodegroup.resources["autoScalingGroups"][0]["name"]
    cluster = eks_backend.clusters[nodegroup.cluster_name]
    cluster_group = (cluster.resources_vpc_config or {}).get("clusterSecurityGroupId")
    template = eks_launch_template(ec2, nodegroup, account, cluster_group)
    tags = [
        {"ResourceId": asg_name, "ResourceType": "auto-scaling-group", "Key": key,
         "Value": value, "PropagateAtLaunch": True}
        for key, value in (
            ("eks:cluster-name", nodegroup.cluster_name),
            ("eks:nodegroup-name", nodegroup.nodegroup_name),
            (f"kubernetes.io/cluster/{nodegroup.cluster_name}", "owned"),
            (f"k8s.io/cluster-autoscaler/{nodegroup.cluster_name}", "owned"),
            ("k8s.io/cluster-autoscaler/enabled", "true"),
        )
    ]
    scaling = nodegroup.scaling_config
    autoscaling.create_auto_scaling_group(
        name=asg_name,
        availability_zones=[],
        desired_capacity=scaling.get("desiredSize", 0),
        max_size=scaling.get("maxSize", 1),
        min_size=scaling.get("minSize", 0),
        launch_config_name=None,
        launch_template=template,
        vpc_zone_identifier=",".join(nodegroup.subnets),
        default_cooldown=None,
        health_check_period=None,
        health_check_type=None,
        load_balancers=[],
        target_group_arns=[],
        placement_group=None,
        termination_policies=[],
        tags=tags,
    )


eks_models.EKSBackend.create_nodegroup = _create_nodegroup

_original_describe_nodegroup = eks_models.EKSBackend.describe_nodegroup


def _settle(nodegroup):
    if nodegroup.status == "UPDATING" and time.time() >= nodegroup.updating_until:
        nodegroup.status = "DEGRADED" if nodegroup.health["issues"] else nodegroup.settled_status
        if nodegroup.status == "DEGRADED" and not nodegroup.health["issues"]:
            nodegroup.status = "ACTIVE"


def _describe_nodegroup(self, cluster_name, nodegroup_name):
    with _lock:
        nodegroup = _original_describe_nodegroup(self, cluster_name, nodegroup_name)
        _settle(nodegroup)
        return nodegroup


eks_models.EKSBackend.describe_nodegroup = _describe_nodegroup


def _find_nodegroup(eks_backend, cluster_name, nodegroup_name):
    cluster = eks_backend.clusters.get(cluster_name)
    if cluster is None:
        raise ResourceNotFoundException(
            clusterName=cluster_name, nodegroupName=nodegroup_name, fargateProfileName=None,
            addonName=None, message=f"No cluster found for name: {cluster_name}.")
    nodegroup = cluster.nodegroups.get(nodegroup_name)
    if nodegroup is None:
        raise ResourceNotFoundException(
            clusterName=cluster_name, nodegroupName=nodegroup_name, fargateProfileName=None,
            addonName=None, message=f"No node group found for name: {nodegroup_name}.")
    return nodegroup


def _update_nodegroup_config(self, cluster_name, nodegroup_name, labels=None, taints=None,
                             scaling_config=None, update_config=None, node_repair_config=None,
                             client_request_token=None):
    with _lock:
        nodegroup = _find_nodegroup(self, cluster_name, nodegroup_name)
        _settle(nodegroup)
        if nodegroup.status == "UPDATING":
            raise ResourceInUseException(
                clusterName=cluster_name, nodegroupName=nodegroup_name, addonName=None,
                message=f"Nodegroup {nodegroup_name} in cluster {cluster_name} currently has an update in progress")
        params = []
        if scaling_config:
            merged = dict(nodegroup.scaling_config)
            merged.update({k: int(v) for k, v in scaling_config.items()})
            if merged["minSize"] > merged["desiredSize"]:
                raise InvalidParameterException(
                    message=f"Minimum capacity {merged['minSize']} can't be greater than desired size {merged['desiredSize']}")
            if merged["desiredSize"] > merged["maxSize"]:
                raise InvalidParameterException(message="desiredSize can't be greater than maxSize")
            for key, kind in (("minSize", "MinSize"), ("maxSize", "MaxSize"), ("desiredSize", "DesiredSize")):
                if key in scaling_config:
                    params.append({"type": kind, "value": str(scaling_config[key])})
            nodegroup.scaling_config = merged
        if labels:
            params.append({"type": "LabelsToAdd", "value": json.dumps(labels)})
        if update_config:
            nodegroup.update_config = update_config
        update = {
            "id": str(mock_random.uuid4()),
            "status": "InProgress",
            "type": "ConfigUpdate",
            "params": params,
            "createdAt": _now(),
            "errors": [],
            "_done_at": time.time() + UPDATE_SECONDS,
        }
        _updates.setdefault((self.account_id, self.region_name, cluster_name, nodegroup_name), []).append(update)
        nodegroup.status = "UPDATING"
        nodegroup.updating_until = update["_done_at"]
        nodegroup.modified_at = _now()
        if scaling_config:
            _apply_scaling(self, nodegroup)
        return _public_update(update)


eks_models.EKSBackend.update_nodegroup_config = _update_nodegroup_config


def _apply_scaling(eks_backend, nodegroup):
    autoscaling = _backend(asg_models.autoscaling_backends, eks_backend.account_id, eks_backend.region_name)
    asg_name = nodegroup.resources["autoScalingGroups"][0]["name"]
    group = autoscaling.autoscaling_groups.get(asg_name)
    if group is None:
        return
    scaling = nodegroup.scaling_config
    group.min_size = scaling["minSize"]
    group.max_size = scaling["maxSize"]
    group.set_desired_capacity(scaling["desiredSize"])


# --------------------------------------------------------------------------- launches

_original_replace = asg_models.FakeAutoScalingGroup.replace_autoscaling_group_instances


def _nodegroup_of(group):
    tags = {t["key"]: t["value"] for t in group.tags} if group.tags and "key" in group.tags[0] else {
        t.get("Key"): t.get("Value") for t in (group.tags or [])}
    cluster_name, nodegroup_name = tags.get("eks:cluster-name"), tags.get("eks:nodegroup-name")
    if not cluster_name or not nodegroup_name:
        return None
    eks_backend = eks_models.eks_backends[group.account_id][group.region]
    cluster = eks_backend.clusters.get(cluster_name)
    return cluster.nodegroups.get(nodegroup_name) if cluster else None


def _launch_blocker(group):
    """Returns the failure message AWS would give for this group's launches, or None."""
    from moto.kms.models import kms_backends

    with _lock:
        forced = _forced_failures.get((group.account_id, group.region, group.name))
    if forced:
        return forced

    template = group.ec2_launch_template
    if template is None:
        return None
    version = template.get_version(group.provided_launch_template_version or template.default_version_number)
    data = version.data if version else {}
    failure = profile_failure(data, group.account_id)
    if failure:
        return failure
    mappings = data.get("BlockDeviceMapping") or data.get("BlockDeviceMappings") or []
    kms = kms_backends[group.account_id][group.region]
    for mapping in mappings:
        ebs = mapping.get("Ebs") or {}
        key_ref = ebs.get("KmsKeyId")
        if not key_ref:
            continue
        try:
            key = kms.describe_key(key_ref)
        except Exception:
            return KMS_FAILURE
        if key.key_state != "Enabled":
            return KMS_FAILURE
        if key.key_manager == "AWS":
            continue
        if not policy_grants_autoscaling(key.policy, group.account_id):
            return KMS_FAILURE
    return None


def _record_activity(group, status_code, description, status_message=""):
    now = _now().isoformat()
    activity = {
        "ActivityId": str(mock_random.uuid4()),
        "AutoScalingGroupName": group.name,
        "Description": description,
        "Cause": f"At {now} an instance was started in response to a difference between desired and actual capacity.",
        "StartTime": now,
        "EndTime": now,
        "StatusCode": status_code,
        "StatusMessage": status_message,
        "Progress": 100,
        "Details": "{}",
    }
    with _lock:
        _activities.setdefault((group.account_id, group.region, group.name), []).insert(0, activity)


def _replace_autoscaling_group_instances(self, count_needed, propagated_tags):
    before = {state.instance.id for state in self.instance_states}
    _original_replace(self, count_needed, propagated_tags)
    launched = [s for s in self.instance_states if s.instance.id not in before]
    nodegroup = _nodegroup_of(self)
    blocker = _launch_blocker(self) if nodegroup is not None else None
    if blocker is None:
        for state in launched:
            _record_activity(self, "Successful", f"Launching a new EC2 instance: {state.instance.id}")
        if nodegroup is not None and launched:
            with _lock:
                nodegroup.health["issues"] = [
                    i for i in nodegroup.health["issues"] if i.get("code") != "AsgInstanceLaunchFailures"]
                if nodegroup.status == "DEGRADED" and not nodegroup.health["issues"]:
                    nodegroup.status = "ACTIVE"
        return
    ids = [state.instance.id for state in launched]
    if ids:
        self.autoscaling_backend.ec2_backend.terminate_instances(ids)
    self.instance_states = [s for s in self.instance_states if s.instance.id not in ids]
    for instance_id in ids:
        _record_activity(
            self, "Cancelled",
            f"Launching a new EC2 instance: {instance_id}.  Status Reason: {blocker}", blocker)
    with _lock:
        nodegroup.health["issues"] = [
            i for i in nodegroup.health["issues"] if i.get("code") != "AsgInstanceLaunchFailures"
        ] + [{"code": "AsgInstanceLaunchFailures", "message": blocker, "resourceIds": [self.name]}]
        nodegroup.settled_status = "DEGRADED"
        if nodegroup.status != "UPDATING":
            nodegroup.status = "DEGRADED"


asg_models.FakeAutoScalingGroup.replace_autoscaling_group_instances = _replace_autoscaling_group_instances


def _describe_scaling_activities(self):
    group_name = self._get_param("AutoScalingGroupName")
    backend = self.autoscaling_backend
    with _lock:
        activities = list(_activities.get((backend.account_id, backend.region_name, group_name), []))
    return asg_responses.ActionResult({"Activities": activities})


asg_responses.AutoScalingResponse.describe_scaling_activities = _describe_scaling_activities

# Route states, DryRun on route calls and the EventBridge envelope: ec2_events_patches.py.
import ec2_events_patches  # noqa: E402,F401  (patches moto on import)

# --------------------------------------------------------------------------- test endpoints


def _emulator_endpoint(request):
    if request.path == "/_emulator/ping":
        return Response("ok")
    body = json.loads(request.get_data() or b"{}")
    account = body.get("account", DEFAULT_ACCOUNT_ID)
    region = body.get("region", "us-west-2")
    if request.path == "/_emulator/nodegroup-health":
        eks_backend = eks_models.eks_backends[account][region]
        with _lock:
            nodegroup = _find_nodegroup(eks_backend, body["cluster"], body["nodegroup"])
            nodegroup.health["issues"] = body.get("issues", [])
            nodegroup.status = body.get("status", "DEGRADED" if nodegroup.health["issues"] else "ACTIVE")
            nodegroup.settled_status = nodegroup.status
        return Response("ok")
    if request.path == "/_emulator/cluster-status":
        with _lock:
            eks_models.eks_backends[account][region].clusters[body["cluster"]].status = body["status"]
        return Response("ok")
    if request.path == "/_emulator/cluster-endpoint":
        with _lock:
            cluster_api.set_cluster_endpoint(eks_models.eks_backends, account, region, body)
        return Response("ok")
    if request.path == "/_emulator/instance-launched":
        from moto.ec2.models import ec2_backends

        with _lock:
            cluster_api.set_launched(ec2_backends, account, region, body)
        return Response("ok")
    if request.path == "/_emulator/console-output":
        with _lock:
            cluster_api.set_console_output(account, region, body)
        return Response("ok")
    if request.path == "/_emulator/cluster-update-seconds":
        eks_updates.set_cluster_update_seconds(float(body.get("seconds", 0)))
        return Response("ok")
    if request.path == "/_emulator/instance-pending":
        from datetime import timedelta
        from moto.ec2.models import ec2_backends
        from moto.ec2.models.instances import InstanceState

        with _lock:
            instance = ec2_backends[account][region].get_instance(body["instance"])
            instance._state = InstanceState("pending", 0)
            instance.launch_time = instance.launch_time - timedelta(minutes=body.get("minutes_ago", 0))
        return Response("ok")
    if request.path == "/_emulator/scaling-activities":
        with _lock:
            _activities[(account, region, body["asg"])] = body.get("activities", [])
        return Response("ok")
    if request.path == "/_emulator/launch-failure":
        with _lock:
            if body.get("message"):
                _forced_failures[(account, region, body["asg"])] = body["message"]
            else:
                _forced_failures.pop((account, region, body["asg"]), None)
        return Response("ok")
    if request.path == "/_emulator/policy-findings":
        with _lock:
            set_policy_findings(body.get("findings", []))
        return Response("ok")
    if request.path == "/_emulator/deny":
        with _lock:
            _denied_actions.clear()
            _denied_actions.update(body.get("actions", []))
        return Response("ok")
    return Response("unknown emulator endpoint", status=404)


def _denied_call(environ):
    """`service:Action` of this request when a test denied it, else None. The service comes from
    the SigV4 credential scope; the action from the Query body (EC2) or the X-Amz-Target header
    (JSON protocols such as KMS). Keeps the body readable for moto."""
    with _lock:
        if not _denied_actions:
            return None
    scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    if scope is None or environ.get("REQUEST_METHOD") != "POST":
        return None
    service = scope.group(1)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        action = target.rsplit(".", 1)[-1]
    else:
        import io
        from urllib.parse import parse_qs

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    name = f"{service}:{action}"
    with _lock:
        return name if action and name in _denied_actions else None


def _unauthorized(name, json_protocol):
    """The refusal AWS gives a role without the permission, in the protocol of the call."""
    if json_protocol:
        body = json.dumps({"__type": "AccessDeniedException",
                           "message": f"User is not authorized to perform: {name}"})
        return Response(body, status=400, content_type="application/x-amz-json-1.1")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        "<Code>UnauthorizedOperation</Code>"
        f"<Message>You are not authorized to perform this operation. {name}</Message>"
        "</Error></Errors><RequestID>denied</RequestID></Response>"
    )
    return Response(body, status=403, content_type="text/xml")


def _reset_emulator_state():
    with _lock:
        _activities.clear()
        _updates.clear()
        eks_updates.set_cluster_update_seconds(0)
        clear_access_entries()
        cluster_api.clear_cluster_api()
        _forced_failures.clear()
        _denied_actions.clear()
        clear_policy_findings()


class EmulatorApp:
    def __init__(self, moto_app):
        self.moto_app = moto_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if re.match(r"^/clusters/[^/]+/access-entries", path):
            with _lock:
                response = access_entries_endpoint(Request(environ), _region_of(environ))
            return response(environ, start_response)
        if path.startswith("/_emulator/"):
            try:
                response = _emulator_endpoint(Request(environ))
            except Exception as error:  # a test asked for something that does not exist
                response = Response(f"{type(error).__name__}: {error}", status=400)
            return response(environ, start_response)
        denied = _denied_call(environ)
        if denied:
            json_protocol = bool(environ.get("HTTP_X_AMZ_TARGET"))
            return _unauthorized(denied, json_protocol)(environ, start_response)
        if is_validate_policy(environ):
            with _lock:
                response = validate_policy_endpoint(Request(environ))
            return response(environ, start_response)
        if path == "/moto-api/reset":
            _reset_emulator_state()
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            # moto checks a transaction's conditions and writes its items without a lock, so two
            # racing transactions can both commit; DynamoDB judges them one at a time.
            with _dynamodb_lock:
                return list(self.moto_app(environ, start_response))
        return self.moto_app(environ, start_response)


def main(argv=None):
    global UPDATE_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--update-seconds", type=float, default=UPDATE_SECONDS)
    args = parser.parse_args(argv)
    UPDATE_SECONDS = args.update_seconds
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = EmulatorApp(DomainDispatcherApplication(create_backend_app))
    print(f"nodemedic emulator listening on http://{args.host}:{args.port}", flush=True)
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    sys.exit(main())
