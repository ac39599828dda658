"""Pure functions that turn a RoleBasedGroup into the child objects it should have.

No I/O happens here: the reconciler feeds in the parsed group and applies what comes out.
"""

from __future__ import annotations

from ..api.rolebasedgroup import dependency_layers
from ..api.v1alpha2 import RoleBasedGroupV2
from .discovery import headless_service, topology_configmap
from .gang import pod_groups
from .options import DEFAULT, BuildOptions
from .rollout import RolePlan
from .scaling import scaling_adapter
from .workload_kinds import role_workload


def group_children(
    group: RoleBasedGroupV2,
    gang_size: int | None = None,
    applied: dict[str, int] | None = None,
    options: BuildOptions = DEFAULT,
) -> list[dict]:
    """Objects the group needs before any role: the topology ConfigMap its pods mount and,
    with gang scheduling, the pod groups the scheduler holds the pods to (a whole-group gang of
    `gang_size` pods, default every pod of the spec). `applied`: replicas the workloads run with
    where they differ from the spec."""
    return [topology_configmap(group, applied), *pod_groups(group, gang_size, options, applied)]


def role_children(
    group: RoleBasedGroupV2,
    role_name: str,
    options: BuildOptions = DEFAULT,
    plan: RolePlan = RolePlan(),
    v2_pod_keys: bool = True,
) -> list[dict]:
    """The objects one role needs: its headless Service, its scaling adapter if enabled, and
    last its workload (`v2_pod_keys`: see meta.pods_get_v2_keys)."""
    role = group.spec.role(role_name)
    adapter = [scaling_adapter(group, role)] if role.scaling_adapter and role.scaling_adapter.enable else []
    return [headless_service(group, role), *adapter, role_workload(group, role, options, plan, v2_pod_keys)]


def creation_layers(group: RoleBasedGroupV2) -> list[list[str]]:
    """Role names in the order their workloads may be created (dependencies first)."""
    return dependency_layers(group.spec)
