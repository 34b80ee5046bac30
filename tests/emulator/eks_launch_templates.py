"""The launch template a managed nodegroup's Auto Scaling group launches from, as EKS makes it.
moto's EKS creates no Auto Scaling group; nodemedic_emulator.py creates one and asks here for its
template. EKS gives the instances an instance profile of its own holding the node role, and
launches from a template of its own that names it: without a user template, with EKS's AMI and
the cluster security group; with one, a copy of the given version with the profile added (the
user's template may not name a profile itself). A launch whose profile no longer exists fails
as EC2 fails it."""

import copy

from moto.iam.models import iam_backends
from moto.moto_api._internal import mock_random

PROFILE_FAILURE = (
    "Value ({name}) for parameter iamInstanceProfile.name is invalid. "
    "Invalid IAM Instance Profile name. Launching EC2 instance failed."
)


def _node_profile(nodegroup, account):
    """EKS's instance profile for the node role. Made without drawing from moto's random
    source: a world built with the same calls keeps the ids it had before profiles were
    emulated (tests/fixtures/README.md)."""
    iam = iam_backends[account]["global"]
    role_name = (nodegroup.node_role or "").rsplit("/", 1)[-1]
    known = any(role.name == role_name for role in iam.get_roles())
    state = mock_random.getstate()
    try:
        profile = iam.create_instance_profile(f"eks-{nodegroup.uuid}", "/", [role_name] if known else [])
    finally:
        mock_random.setstate(state)
    return profile.arn


def eks_launch_template(ec2, nodegroup, account, cluster_group):
    """Creates EKS's template for the group and returns the group's LaunchTemplate reference."""
    profile = {"Arn": _node_profile(nodegroup, account)}
    given = nodegroup.launch_template or {}
    if given.get("id"):
        source = ec2.launch_templates[given["id"]]
        version = source.get_version(given.get("version") or source.default_version_number)
        data = copy.deepcopy(version.data)
        data["IamInstanceProfile"] = profile
        description = f"copy of {source.id} version {version.number}, made by EKS"
    else:
        data = {"ImageId": "ami-12c6146b", "InstanceType": nodegroup.instance_types[0]}
        if cluster_group:
            data["SecurityGroupIds"] = [cluster_group]
        data["IamInstanceProfile"] = profile
        description = "created by EKS for the managed nodegroup"
    created = ec2.create_launch_template(f"eks-{nodegroup.uuid}", description, data, tag_spec={})
    return {"LaunchTemplateId": created.id, "Version": "1"}


def profile_failure(data, account):
    """The launch failure of a template whose instance profile is gone, or None."""
    named = (data.get("IamInstanceProfile") or {})
    name = named.get("Name") or (named.get("Arn") or "").rsplit("/", 1)[-1]
    if not name:
        return None
    if name in iam_backends[account]["global"].instance_profiles:
        return None
    return PROFILE_FAILURE.format(name=name)
