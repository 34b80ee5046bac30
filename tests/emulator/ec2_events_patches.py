"""Patches of moto's EC2 route tables and EventBridge delivery, applied on import by
nodemedic_emulator.py:

* a route whose NAT gateway is deleted or failed, or whose internet gateway is detached from the
  route table's VPC, is a blackhole, as in EC2;
* CreateRoute, ReplaceRoute and DeleteRoute sent with DryRun=true answer DryRunOperation and
  change nothing (moto performs them);
* ModifyVpcEndpoint turns private DNS on or off (moto ignores PrivateDnsEnabled);
* the envelope EventBridge delivers to SQS carries the `account` field.
"""

import moto.events.utils as events_utils

# --------------------------------------------------------------------------- routes

import moto.ec2.models.route_tables as route_models


def _route_state(route):
    nat = getattr(route, "nat_gateway", None)
    if nat is not None and getattr(nat, "state", "available") in ("deleted", "deleting", "failed"):
        return "blackhole"
    gateway = getattr(route, "gateway", None)
    if gateway is not None and getattr(gateway, "id", "").startswith("igw-"):
        attached = getattr(gateway, "vpc", None)
        if attached is None or attached.id != route.route_table.vpc_id:
            return "blackhole"
    return "active"


route_models.Route.state = property(_route_state)


def _honouring_dry_run(handler):
    def handle(self):
        self.error_on_dryrun()
        return handler(self)

    return handle


import moto.ec2.responses.route_tables as route_responses

for _name in ("create_route", "replace_route", "delete_route"):
    setattr(route_responses.RouteTables, _name,
            _honouring_dry_run(getattr(route_responses.RouteTables, _name)))

import moto.ec2.responses.vpcs as vpc_responses

_original_modify_vpc_endpoint = vpc_responses.VPCs.modify_vpc_endpoint


def _modify_vpc_endpoint(self):
    """ModifyVpcEndpoint as EC2 has it: moto ignores PrivateDnsEnabled and DryRun."""
    self.error_on_dryrun()
    result = _original_modify_vpc_endpoint(self)
    private_dns = self._get_param("PrivateDnsEnabled")
    if private_dns is not None:
        endpoint = self.ec2_backend.describe_vpc_endpoints(
            vpc_end_point_ids=[self._get_param("VpcEndpointId")])[0]
        endpoint.private_dns_enabled = str(private_dns).lower() == "true"
    return result


vpc_responses.VPCs.modify_vpc_endpoint = _modify_vpc_endpoint

# --------------------------------------------------------------------------- EventBridge

events_utils.EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = (
    '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
    '"account": "<account>", "time": <time>, "region": "<region>", "resources": <resources>, '
    '"detail": <detail>}'
)

