"""What the emulator lacks to show a cluster's own side (nodemedic_emulator.py imports it and
routes its test endpoints here under its lock):

* /_emulator/cluster-endpoint points a cluster's `endpoint` and `certificateAuthority.data` at
  the stand-in API server a test runs (moto makes up a hostname and 1,400 random characters),
  so nodemedic finds the stand-in through DescribeCluster, exactly as it would in AWS;
* /_emulator/console-output sets the console output EC2 GetConsoleOutput returns for an
  instance (moto returns one canned kernel log for every instance); the body gives it as base64
  so a test can send any bytes, invalid UTF-8 included;
* /_emulator/instance-launched backdates a running instance's launch time.
"""

import moto.ec2.responses.general as general_responses
from moto.core.types import Base64EncodedString
from moto.core.utils import utcnow
from moto.core.responses import ActionResult

_console_outputs = {}
_original_get_console_output = general_responses.General.get_console_output


def _get_console_output(self):
    instance_id = self._get_param("InstanceId")
    output = _console_outputs.get((self.current_account, self.region, instance_id))
    if output is None:
        return _original_get_console_output(self)
    instance = self.ec2_backend.get_instance(instance_id)
    return ActionResult({"InstanceId": instance.id, "Timestamp": utcnow(), "Output": Base64EncodedString(output)})


general_responses.General.get_console_output = _get_console_output


def set_console_output(account, region, body):
    _console_outputs[(account, region, body["instance"])] = body["output_base64"]


def set_cluster_endpoint(eks_backends, account, region, body):
    cluster = eks_backends[account][region].clusters[body["cluster"]]
    cluster.endpoint = body["endpoint"]
    cluster.certificate_authority = {"data": body["certificate_authority"]}


def set_launched(ec2_backends, account, region, body):
    """Backdates a running instance's launch: moto's instances launch when they are created."""
    from datetime import timedelta

    instance = ec2_backends[account][region].get_instance(body["instance"])
    instance.launch_time = instance.launch_time - timedelta(minutes=body["minutes_ago"])


def clear_cluster_api():
    _console_outputs.clear()
