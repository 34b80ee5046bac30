"""EKS updates, which moto 5.2 keeps none of: ListUpdates and DescribeUpdate for clusters and
nodegroups, and the update UpdateClusterConfig starts. nodemedic_emulator.py records nodegroup
updates here and shares this module's lock.

A cluster update stays InProgress for `set_cluster_update_seconds` (0 unless a test asks for
longer: moto applies the change at once and keeps the cluster ACTIVE, so an update InProgress on
an ACTIVE cluster is the state ListUpdates adds to the cluster's status). UpdateClusterConfig
answers with the update, as EKS does (moto answers with the cluster). Update ids come from
Python's own uuid4, not moto's random source, so worlds seeded before updates were kept keep their
ids."""

import threading
import time
import uuid
from datetime import datetime, timezone

import moto.eks.models as eks_models
import moto.eks.responses as eks_responses
import moto.eks.urls as eks_urls
from moto.eks.exceptions import ResourceNotFoundException

lock = threading.RLock()
# (account, region, cluster, nodegroup or None) -> list of update dicts, oldest first
_updates = {}
_cluster_update_seconds = [0.0]


def set_cluster_update_seconds(seconds):
    _cluster_update_seconds[0] = seconds


def _public_update(update):
    view = {k: v for k, v in update.items() if not k.startswith("_")}
    if update["status"] == "InProgress" and time.time() >= update["_done_at"]:
        update["status"] = view["status"] = "Successful"
    return view


def _list_updates(self):
    cluster_name = self._get_param("name")
    nodegroup_name = self.querystring.get("nodegroupName", [None])[0]
    backend = self.eks_backend
    with lock:
        updates = _updates.get((backend.account_id, backend.region_name, cluster_name, nodegroup_name), [])
        ids = [u["id"] for u in updates]
    return eks_responses.ActionResult({"updateIds": ids})


def _describe_update(self):
    cluster_name = self._get_param("name")
    update_id = self._get_param("updateId")
    nodegroup_name = self.querystring.get("nodegroupName", [None])[0]
    backend = self.eks_backend
    with lock:
        for update in _updates.get((backend.account_id, backend.region_name, cluster_name, nodegroup_name), []):
            if update["id"] == update_id:
                return eks_responses.ActionResult({"update": _public_update(update)})
    raise ResourceNotFoundException(
        clusterName=cluster_name, nodegroupName=nodegroup_name, fargateProfileName=None,
        addonName=None, message=f"No update found for ID: {update_id}")


_original_update_cluster_config = eks_models.EKSBackend.update_cluster_config


def _update_cluster_config(self, name, resources_vpc_config=None, **kwargs):
    """Merges a partial resourcesVpcConfig as EKS does (moto replaces the whole of it)."""
    cluster = self.clusters.get(name)
    merged = None
    if cluster is not None and resources_vpc_config:
        merged = dict(cluster.resources_vpc_config or {})
        merged.update(resources_vpc_config)
    return _original_update_cluster_config(self, name, merged or resources_vpc_config, **kwargs)


def _update_cluster_config_response(self):
    vpc = self._get_param("resourcesVpcConfig") or {}
    endpoint_keys = {"endpointPublicAccess", "endpointPrivateAccess", "publicAccessCidrs"}
    if endpoint_keys & set(vpc):
        kind = "EndpointAccessUpdate"
    elif self._get_param("logging"):
        kind = "LoggingUpdate"
    else:
        kind = "VpcConfigUpdate"
    name = self._get_param("name")
    self.eks_backend.update_cluster_config(
        name=name,
        resources_vpc_config=vpc or None,
        logging=self._get_param("logging"),
        client_request_token=self._get_param("clientRequestToken"),
        kubernetes_network_config=self._get_param("kubernetesNetworkConfig"),
        remote_network_config=self._get_param("remoteNetworkConfig"),
    )
    update = {
        "id": str(uuid.uuid4()),
        "status": "InProgress",
        "type": kind,
        "params": [],
        "createdAt": datetime.now(timezone.utc),
        "errors": [],
        "_done_at": time.time() + _cluster_update_seconds[0],
    }
    backend = self.eks_backend
    with lock:
        _updates.setdefault((backend.account_id, backend.region_name, name, None), []).append(update)
        return eks_responses.ActionResult({"update": _public_update(update)})


eks_models.EKSBackend.update_cluster_config = _update_cluster_config
eks_responses.EKSResponse.update_cluster_config = _update_cluster_config_response
eks_responses.EKSResponse.list_updates = _list_updates
eks_responses.EKSResponse.describe_update = _describe_update
eks_urls.url_paths["{0}/clusters/(?P<name>[^/]+)/updates$"] = eks_urls.response.dispatch
eks_urls.url_paths["{0}/clusters/(?P<name>[^/]+)/updates/(?P<updateId>[^/]+)$"] = eks_urls.response.dispatch
