"""Names, labels and identifiers that users' manifests depend on (see the API reference)."""

GROUP = "workloads.x-k8s.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "rbg-operator"

LABEL_GROUP_NAME = "rolebasedgroup.workloads.x-k8s.io/name"
LABEL_ROLE = "rolebasedgroup.workloads.x-k8s.io/role"


def workload_name(group: str, role: str) -> str:
    return f"{group}-{role}"


def service_name(group: str, role: str) -> str:
    return f"s-{group}-{role}"


def role_selector(group: str, role: str) -> dict[str, str]:
    return {LABEL_GROUP_NAME: group, LABEL_ROLE: role}
