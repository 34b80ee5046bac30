"""EKS access entries, which moto 5.2 does not have: CreateAccessEntry, DescribeAccessEntry,
ListAccessEntries and DeleteAccessEntry on the REST paths EKS uses. Imported by
nodemedic_emulator.py, which routes /clusters/<name>/access-entries here under its lock."""

import json
import re
import time
from urllib.parse import unquote

from werkzeug.wrappers import Response

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api._internal import mock_random
import moto.eks.models as eks_models

# (account, region, cluster) -> {principal arn: access entry dict}
_access_entries = {}


def clear_access_entries():
    _access_entries.clear()


def access_entries_endpoint(request, region):
    """CreateAccessEntry, DescribeAccessEntry, ListAccessEntries and DeleteAccessEntry."""
    match = re.match(r"^/clusters/([^/]+)/access-entries(?:/(.+))?$", request.path)
    cluster_name, principal = match.group(1), match.group(2)
    principal = unquote(principal) if principal else None
    account = DEFAULT_ACCOUNT_ID
    backend = eks_models.eks_backends[account][region]
    if cluster_name not in backend.clusters:
        return _eks_error(404, "ResourceNotFoundException", f"No cluster found for name: {cluster_name}.")
    entries = _access_entries.setdefault((account, region, cluster_name), {})
    if request.method == "GET" and principal is None:
        return _json({"accessEntries": sorted(entries)})
    if request.method == "POST" and principal is None:
        body = json.loads(request.get_data() or b"{}")
        arn = body.get("principalArn", "")
        if arn in entries:
            return _eks_error(409, "ResourceInUseException", f"The specified access entry resource is already in use on this cluster.")
        entry_type = body.get("type", "STANDARD")
        now = time.time()
        entry = {
            "clusterName": cluster_name,
            "principalArn": arn,
            "kubernetesGroups": body.get("kubernetesGroups", []),
            "accessEntryArn": f"arn:aws:eks:{region}:{account}:access-entry/{cluster_name}/{mock_random.uuid4()}",
            "createdAt": now,
            "modifiedAt": now,
            "tags": body.get("tags", {}),
            "username": "system:node:{{EC2PrivateDNSName}}" if entry_type.startswith("EC2") else arn,
            "type": entry_type,
        }
        entries[arn] = entry
        return _json({"accessEntry": entry})
    if principal is not None and principal in entries:
        if request.method == "GET":
            return _json({"accessEntry": entries[principal]})
        if request.method == "DELETE":
            del entries[principal]
            return _json({})
    return _eks_error(404, "ResourceNotFoundException", f"The specified principalArn could not be found.")


def _json(payload, status=200):
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _eks_error(status, code, message):
    response = _json({"message": message}, status)
    response.headers["x-amzn-ErrorType"] = code
    return response


