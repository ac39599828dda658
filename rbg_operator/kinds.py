"""The API group, its versions, and the (apiVersion, kind) of every kind the operator reads or writes.

The bottom layer: it imports nothing of the operator's, so every other module may import it.
"""

from __future__ import annotations

GROUP = "workloads.x-k8s.io"
V1ALPHA1 = "v1alpha1"  # served through conversion only (api/conversion.py)
V1ALPHA2 = "v1alpha2"
STORED_VERSION = V1ALPHA2  # the version the CRDs store, and the one the operator watches and writes
API_VERSION = f"{GROUP}/{STORED_VERSION}"
API_VERSION_V1ALPHA1 = f"{GROUP}/{V1ALPHA1}"

Key = tuple[str, str]  # (apiVersion, kind)

# Ours
ROLE_BASED_GROUP: Key = (API_VERSION, "RoleBasedGroup")
SCALING_ADAPTER: Key = (API_VERSION, "RoleBasedGroupScalingAdapter")
GROUP_SET: Key = (API_VERSION, "RoleBasedGroupSet")
ROLE_INSTANCE_SET: Key = (API_VERSION, "RoleInstanceSet")
ROLE_INSTANCE: Key = (API_VERSION, "RoleInstance")
COORDINATED_POLICY: Key = (API_VERSION, "CoordinatedPolicy")
ENGINE_RUNTIME_PROFILE: Key = (API_VERSION, "ClusterEngineRuntimeProfile")  # cluster-scoped
WARMUP: Key = (API_VERSION, "RoleBasedGroupWarmup")

# Kubernetes
POD: Key = ("v1", "Pod")
SERVICE: Key = ("v1", "Service")
CONFIG_MAP: Key = ("v1", "ConfigMap")
EVENT: Key = ("v1", "Event")
NAMESPACE: Key = ("v1", "Namespace")
NODE: Key = ("v1", "Node")  # cluster-scoped
SERVICE_ACCOUNT: Key = ("v1", "ServiceAccount")
STATEFUL_SET: Key = ("apps/v1", "StatefulSet")
DEPLOYMENT: Key = ("apps/v1", "Deployment")
CONTROLLER_REVISION: Key = ("apps/v1", "ControllerRevision")
LEASE: Key = ("coordination.k8s.io/v1", "Lease")
CUSTOM_RESOURCE_DEFINITION: Key = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")

# Other projects' workloads and gang schedulers
LEADER_WORKER_SET: Key = ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
COSCHEDULING_POD_GROUP: Key = ("scheduling.x-k8s.io/v1alpha1", "PodGroup")  # scheduler-plugins
VOLCANO_POD_GROUP: Key = ("scheduling.volcano.sh/v1beta1", "PodGroup")
NATIVE_WORKLOAD: Key = ("scheduling.k8s.io/v1beta1", "Workload")
NATIVE_POD_GROUP: Key = ("scheduling.k8s.io/v1beta1", "PodGroup")
NATIVE_COMPOSITE_POD_GROUP: Key = ("scheduling.k8s.io/v1alpha3", "CompositePodGroup")

# What a group's reconcile makes, besides pods' ControllerRevisions: the operator watches them by
# the group label, and keeps one whole only when one of our kinds controls it.
GROUP_CHILDREN: tuple[Key, ...] = (
    STATEFUL_SET,
    DEPLOYMENT,
    LEADER_WORKER_SET,
    SERVICE,
    CONFIG_MAP,
    COSCHEDULING_POD_GROUP,
    VOLCANO_POD_GROUP,
    NATIVE_WORKLOAD,
    NATIVE_POD_GROUP,
    NATIVE_COMPOSITE_POD_GROUP,
)


def api_version_of(version: str) -> str:
    """The apiVersion of one of our versions, e.g. `workloads.x-k8s.io/v1alpha1`."""
    return f"{GROUP}/{version}"
