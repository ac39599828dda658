"""Names, labels and identifiers that users' manifests depend on (see the API reference)."""

import hashlib

# One server-side-apply field manager per logical writer: an apply states everything its manager
# wants, so two writers sharing a manager would remove each other's fields.
FIELD_MANAGER = "rbg-operator"  # the group reconcile: children, the group's status, revisions
FIELD_MANAGER_GROUP_SET = "rbg-operator-groupset"  # a set's member groups and the set's status
FIELD_MANAGER_SCALING_ADAPTER = "rbg-operator-scalingadapter"  # role replicas from an adapter, its status
FIELD_MANAGER_RESTARTS = "rbg-operator-restarts"  # the restart-state annotation on a group
FIELD_MANAGER_KUBECTL_PLUGIN = "kubectl-rbg"  # `kubectl rbg rollout undo`
FIELD_MANAGER_STORAGE_MIGRATION = "rbg-storage-migration"  # `rbg-operator migrate-storage`: no-op rewrites
FIELD_MANAGER_WARMUP = "rbg-operator-warmup"  # a warmup's pods and its status

LABEL_GROUP_NAME = "rolebasedgroup.workloads.x-k8s.io/name"
LABEL_ROLE = "rolebasedgroup.workloads.x-k8s.io/role"
# The v1alpha2 keys of the same facts. Children carry both families: the v1alpha1 keys stay the
# operator's own (selectors, which are immutable on existing workloads, and its watches); the
# v1alpha2 keys are there for users who select the way the v1alpha2 docs show. Pods get them
# when they are replaced anyway (see desired/meta.py), so an upgrade restarts nothing.
LABEL_V2_GROUP_NAME = "rbg.workloads.x-k8s.io/group-name"
LABEL_V2_ROLE_NAME = "rbg.workloads.x-k8s.io/role-name"
LABEL_V2_GROUP_UID = "rbg.workloads.x-k8s.io/group-uid"  # SHA-1 of "{namespace}/{group}"
LABEL_V2_REVISION_PREFIX = "rbg.workloads.x-k8s.io/role-revision-"
LABEL_V2_SET_NAME = "rbg.workloads.x-k8s.io/groupset-name"
LABEL_V2_SET_INDEX = "rbg.workloads.x-k8s.io/groupset-index"
V2_POD_LABELS = (LABEL_V2_GROUP_NAME, LABEL_V2_ROLE_NAME, LABEL_V2_GROUP_UID)
# Restart policy bookkeeping on the group: incident history (written by the operator), and
# the annotation a user sets to a new value to re-arm an exhausted restart budget.
ANNOTATION_RESTART_STATE = "rolebasedgroup.workloads.x-k8s.io/restart-state"
ANNOTATION_RESTART_RESET = "rolebasedgroup.workloads.x-k8s.io/restart-budget-reset"
# Seconds without progress after which a group is Stalled (overrides --progress-deadline-seconds).
ANNOTATION_PROGRESS_DEADLINE = "rolebasedgroup.workloads.x-k8s.io/progress-deadline-seconds"
# On a workload whose replicas another writer changed: the role's replicas when the operator
# yielded to that value. A role whose replicas differ from it has changed since: the operator
# takes the replicas back (see controller/ownership.py).
ANNOTATION_YIELDED_REPLICAS = "rolebasedgroup.workloads.x-k8s.io/yielded-replicas"
# Annotations with which conversion keeps what one API version cannot say (api/conversion.py).
CONVERSION_PREFIX = "conversion.workloads.x-k8s.io/"
# Digest of the configuration the operator last applied to a child (see controller/reconciler.py).
ANNOTATION_APPLIED = "rolebasedgroup.workloads.x-k8s.io/applied-config"


# A label value, and the name part of a label key, may hold at most 63 characters.
LABEL_VALUE_MAX = 63


def shortened(text: str, limit: int = LABEL_VALUE_MAX, digest_of: str | None = None) -> str:
    """`text` when it fits in `limit` characters; else its start and 8 hex digits of the SHA-256
    of `digest_of` (default `text`), which keep two long texts with a common start apart. A text
    that starts and ends with a letter or digit (a node name, a role name) stays a valid label
    value: the cut start loses any trailing '-', '_' or '.'."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256((text if digest_of is None else digest_of).encode()).hexdigest()[:8]
    head = text[: limit - len(digest) - 1].rstrip("-._")
    return f"{head}-{digest}" if head else digest


def workload_name(group: str, role: str) -> str:
    return f"{group}-{role}"


def service_name(group: str, role: str) -> str:
    return f"s-{group}-{role}"


def role_selector(group: str, role: str) -> dict[str, str]:
    return {LABEL_GROUP_NAME: group, LABEL_ROLE: role}


def group_uid(namespace: str, group: str) -> str:
    return hashlib.sha1(f"{namespace}/{group}".encode()).hexdigest()


def group_labels(namespace: str, group: str) -> dict[str, str]:
    """What marks an object as the group's, in both key families."""
    return {LABEL_GROUP_NAME: group, LABEL_V2_GROUP_NAME: group, LABEL_V2_GROUP_UID: group_uid(namespace, group)}


def role_labels(namespace: str, group: str, role: str) -> dict[str, str]:
    """What marks an object as the role's, in both key families."""
    return {**group_labels(namespace, group), LABEL_ROLE: role, LABEL_V2_ROLE_NAME: role}


# Discovery: the topology ConfigMap `{rbg}` is mounted read-only into every container here.
TOPOLOGY_VOLUME = "rbg-topology"
TOPOLOGY_MOUNT_PATH = "/etc/rbg"
TOPOLOGY_FILE = "topology.yaml"
DISCOVERY_CONFIG_FILE = "config.yaml"  # the same, in the shape of the v1alpha2 contract's refine mode

# Labels other controllers put on pods, which the injected environment reads.
STATEFULSET_POD_INDEX = "apps.kubernetes.io/pod-index"
LWS_GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"


def instance_address(group: str, role: str, index: int, workload_kind: str) -> str:
    """Stable DNS name of a role instance, relative to the namespace.

    StatefulSet pods live under the role's headless Service; a LeaderWorkerSet names its
    leaders `{lws}-{i}` under a headless Service of its own, named like the LeaderWorkerSet.
    """
    workload = workload_name(group, role)
    if workload_kind == "LeaderWorkerSet":
        return f"{workload}-{index}.{workload}"
    # A RoleInstanceSet's instance `{ris}-{i}`: its standalone pod has that name, and a custom
    # components or leader-worker instance is named by it (the leader pod is `{ris}-{i}-0`).
    return f"{workload}-{index}.{service_name(group, role)}"


def instance_addresses(
    group: str,
    role: str,
    replicas: int,
    workload_kind: str,
    pattern: str = "standalone",
    stateless: bool = False,
    first_component: tuple[str, str | None] = ("", None),
) -> list[str] | None:
    """The address of each of a role's instances, as the discovery files list them (the pod that
    answers for the instance), or None when its pods have no stable names (a Deployment, a
    Stateless RoleInstanceSet). `first_component` is (name, serviceName) of a customComponents
    role's first component, whose pod 0 answers for its instance."""
    if workload_kind not in ("StatefulSet", "LeaderWorkerSet", "RoleInstanceSet") or (
        workload_kind == "RoleInstanceSet" and stateless
    ):
        return None
    addresses = [instance_address(group, role, i, workload_kind) for i in range(replicas)]
    if workload_kind != "RoleInstanceSet":
        return addresses
    if pattern == "leaderWorker":  # the leader pod, `{instance}-0`
        return [address.replace(".", "-0.", 1) for address in addresses]
    if pattern == "customComponents":
        # A custom-components instance is no pod: its first component's pod 0 answers for it, under
        # the Service that component names (its pods' subdomain), else the role's.
        name, service = first_component
        workload = workload_name(group, role)
        return [f"{workload}-{i}-{name}-0.{service or service_name(group, role)}" for i in range(replicas)]
    return addresses


# Set to "kubernetes" on a group with podGroupPolicy.kubeScheduling to gang-schedule with the
# native Workload API of scheduling.k8s.io instead of the scheduler-plugins PodGroup.
ANNOTATION_GANG_SCHEDULER = "rolebasedgroup.workloads.x-k8s.io/gang-scheduler"
# With native gang scheduling: the fewest pods of each role the gang starts with, as JSON
# {"role": count or "N%" of its replicas}; roles not named need all their pods.
ANNOTATION_GANG_ROLE_MINIMUMS = (
    "rolebasedgroup.workloads.x-k8s.io/gang-role-minimums"  # checked in api/rolebasedgroup.py
)


# RoleBasedGroupSet members
LABEL_SET_NAME = "rolebasedgroupset.workloads.x-k8s.io/name"
LABEL_SET_INDEX = "rolebasedgroupset.workloads.x-k8s.io/rbg-index"
ANNOTATION_SET_TEMPLATE = "rolebasedgroupset.workloads.x-k8s.io/template-hash"


# On a pod (or its template): `Ignore` keeps the pod's failures and restarts from triggering the
# instance restart policy; `Inherit` (the default) does not.
ANNOTATION_RESTART_TRIGGER = "rbg.workloads.x-k8s.io/restart-trigger-policy"

# On a pod of a drained role: its drain through the router, as JSON (controller/drain_plan.py).
ANNOTATION_DRAIN_STATE = "rbg.workloads.x-k8s.io/drain-state"


def restart_ignored(pod: dict) -> bool:
    """Whether restart policies are told to ignore this pod's failures and restarts."""
    return (pod["metadata"].get("annotations") or {}).get(ANNOTATION_RESTART_TRIGGER) == "Ignore"


def adapter_name(group: str, role: str) -> str:
    return f"{group}-{role}"


def set_member_name(group_set: str, index: int) -> str:
    return f"{group_set}-{index}"


# Rollouts: a per-role revision label on each workload, and what a ControllerRevision keeps.
LABEL_REVISION_PREFIX = "rolebasedgroup.workloads.x-k8s.io/role-revision-hash-"
ROLE_TEMPLATE_FIELDS = ("standalonePattern", "leaderWorkerPattern", "customComponentsPattern", "labels", "annotations")
# What ControllerRevisions recorded while groups were stored in v1alpha1 (before 0.3) hold: with
# `templateFields`, those fields of a v1alpha1 role and its labels and annotations; without, these.
LEGACY_ROLE_TEMPLATE_FIELDS = ("template", "templateRef", "templatePatch", "leaderWorkerSet")


# RoleInstanceSet roles (v1alpha2's default workload): the keys the contract puts on the
# RoleInstanceSet, its RoleInstances and their pods.
LABEL_V2_ROLE_TYPE = "rbg.workloads.x-k8s.io/role-type"  # PodTemplate, LeaderWorkerSet or Components
LABEL_V2_INSTANCE_NAME = "rbg.workloads.x-k8s.io/role-instance-name"
LABEL_V2_INSTANCE_INDEX = "rbg.workloads.x-k8s.io/role-instance-index"
LABEL_V2_COMPONENT_NAME = "rbg.workloads.x-k8s.io/component-name"
LABEL_V2_COMPONENT_ID = "rbg.workloads.x-k8s.io/component-id"
LABEL_V2_COMPONENT_INDEX = "rbg.workloads.x-k8s.io/component-index"
LABEL_V2_COMPONENT_SIZE = "rbg.workloads.x-k8s.io/component-size"
STATEFULSET_POD_NAME = "statefulset.kubernetes.io/pod-name"
LABEL_CONTROLLER_REVISION = "controller-revision-hash"
ANNOTATION_V2_ROLE_SIZE = "rbg.workloads.x-k8s.io/role-size"
ANNOTATION_V2_INSTANCE_PATTERN = "rbg.workloads.x-k8s.io/role-instance-pattern"
ANNOTATION_V2_GRACE_PERIOD = "rbg.workloads.x-k8s.io/inplace-update-grace-period-seconds"
# On a RoleInstance's pods (ours): the hash of the pod spec without its images, which tells an
# image-only change (updated in place) from any other (the pod is recreated); and since when an
# in-place update waits out its grace period. Labels, so the operator's slim pod cache has them.
# Gang scheduling of the whole group (on the group), and of each instance (a role annotation, copied
# onto its RoleInstances: an instance's pods are recreated together).
ANNOTATION_GROUP_GANG = "rbg.workloads.x-k8s.io/group-gang-scheduling"
ANNOTATION_INSTANCE_GANG = "rbg.workloads.x-k8s.io/role-instance-gang-scheduling"
# In-place scheduling (role annotations, copied onto the RoleInstances): back to the node a pod ran on.
ANNOTATION_INPLACE_SCHEDULING = "rbg.workloads.x-k8s.io/role-inplace-scheduling"  # Preferred | Required
ANNOTATION_INPLACE_GRANULARITY = "rbg.workloads.x-k8s.io/role-inplace-scheduling-granularity"  # Pod | Component
ANNOTATION_INPLACE_AVOID = "rbg.workloads.x-k8s.io/role-inplace-scheduling-avoid"  # node label keys
INPLACE_SCHEDULING_MODES = ("Preferred", "Required")
INPLACE_GRANULARITIES = ("Pod", "Component")
LABEL_POD_SPEC_HASH = "rolebasedgroup.workloads.x-k8s.io/spec-hash"
LABEL_IN_PLACE_SINCE = "rolebasedgroup.workloads.x-k8s.io/in-place-update-since"


def instance_name(instance_set: str, ordinal: int) -> str:
    return f"{instance_set}-{ordinal}"


# RoleBasedGroupWarmup pods (§4.18): whose they are and which node each warms.
LABEL_WARMUP_NAME = "workloads.x-k8s.io/warmup-name"
LABEL_WARMUP_UID = "workloads.x-k8s.io/warmup-uid"
LABEL_WARMUP_NODE = "workloads.x-k8s.io/node-name"  # warmup_node_label(node): a node name may be longer
LABEL_HOSTNAME = "kubernetes.io/hostname"


def warmup_node_label(node: str) -> str:
    """The LABEL_WARMUP_NODE value of a node's warmup pod: its name, shortened when longer than a
    label value may be (node names may have 253 characters)."""
    return shortened(node)
