from rbg_operator.api.rolebasedgroup import Role
from rbg_operator.api.v1alpha2 import RoleBasedGroupV2
from rbg_operator.desired.gang import applied_gang_size, gang_size, min_member, pod_groups
from rbg_operator.desired.rollout import RolePlan, RoleRollout, coordinated_allowance, resolve
from rbg_operator.desired.workload_kinds import WORKLOAD_KINDS
from tests.support.groups import hub


def update_strategy(role, kind: str, plan: RolePlan) -> dict:
    return WORKLOAD_KINDS[kind].rollout(role, plan)


def test_percentages_resolve_like_kubernetes():
    assert resolve("25%", 4) == 1 and resolve("30%", 4) == 1 and resolve("30%", 4, round_up=True) == 2
    assert resolve(3, 10) == 3 and resolve(None, 5, default=1) == 1


def simulate(replicas: dict[str, int], skew: str, order: list[str]) -> float:
    """Drive the allowance to completion, pods becoming ready in `order`; return the worst skew seen."""
    ready = {r: 0 for r in replicas}
    allowed = {r: 0 for r in replicas}
    worst = 0.0
    for _ in range(100):
        roles = [RoleRollout(r, n, ready[r], allowed[r]) for r, n in replicas.items()]
        allowed = coordinated_allowance(roles, skew, None)
        progressed = False
        for r in order:  # one pod of the first role with room becomes ready
            if ready[r] < allowed[r]:
                ready[r] += 1
                progressed = True
                break
        fractions = [ready[r] / n for r, n in replicas.items()]
        worst = max(worst, max(fractions) - min(fractions))
        if all(ready[r] == n for r, n in replicas.items()):
            return worst
        assert progressed, f"deadlock at {ready}"
    raise AssertionError("did not finish")


def test_skew_bound_holds_and_rollout_finishes():
    assert simulate({"prefill": 4, "decode": 4}, "25%", ["prefill", "decode"]) <= 0.25
    assert simulate({"prefill": 8, "decode": 2}, "50%", ["decode", "prefill"]) <= 0.5


def test_small_roles_do_not_deadlock():
    simulate({"prefill": 1, "decode": 1}, "0%", ["prefill", "decode"])
    simulate({"prefill": 2, "decode": 1}, "10%", ["decode", "prefill"])


def test_partition_floor_is_honoured():
    roles = [RoleRollout("a", 4, 3, 3), RoleRollout("b", 4, 3, 3)]
    assert coordinated_allowance(roles, "100%", "25%") == {"a": 3, "b": 3}


def role(**rolling) -> Role:
    return hub(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g", "namespace": "ns", "uid": "u"},
            "spec": {
                "roles": [
                    {
                        "name": "r",
                        "replicas": 4,
                        "rolloutStrategy": {"rollingUpdate": rolling},
                        "template": {"spec": {"containers": [{"name": "m", "image": "i"}]}},
                    }
                ]
            },
        }
    ).spec.roles[0]


def test_no_unavailable_pod_is_honoured_where_the_workload_can_surge():
    deployment = update_strategy(role(maxUnavailable=0, maxSurge=1), "Deployment", RolePlan())
    assert deployment["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    lws = update_strategy(role(maxUnavailable=0, maxSurge="25%"), "LeaderWorkerSet", RolePlan())
    assert lws["rolloutStrategy"]["rollingUpdateConfiguration"]["maxUnavailable"] == 0
    # Both zero would be refused by the API server: one at a time instead.
    assert (
        update_strategy(role(maxUnavailable=0, maxSurge=0), "Deployment", RolePlan())["strategy"]["rollingUpdate"][
            "maxUnavailable"
        ]
        == 1
    )
    # A StatefulSet needs at least one.
    assert (
        update_strategy(role(maxUnavailable=0), "StatefulSet", RolePlan())["updateStrategy"]["rollingUpdate"][
            "maxUnavailable"
        ]
        == 1
    )


def test_percentages_a_workload_resolves_itself_pass_through():
    deployment = update_strategy(role(maxUnavailable="25%", maxSurge="50%"), "Deployment", RolePlan())
    assert deployment["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%", "maxSurge": "50%"}


def test_gang_size_follows_the_replicas_applied():
    group = hub(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g", "namespace": "ns", "uid": "u"},
            "spec": {
                "podGroupPolicy": {"kubeScheduling": {}},
                "roles": [
                    {"name": "a", "replicas": 4, "template": {"spec": {"containers": [{"name": "m", "image": "i"}]}}},
                    {"name": "b", "replicas": 2, "template": {"spec": {"containers": [{"name": "m", "image": "i"}]}}},
                ],
            },
        }
    )
    assert pod_groups(group)[0]["spec"]["minMember"] == min_member(group) == 6
    assert min_member(group, {"a": 1}) == 3
    assert pod_groups(group, 3)[0]["spec"]["minMember"] == 3
    assert applied_gang_size(pod_groups(group, 3)[0]) == 3


def test_a_gang_grows_only_as_far_as_its_pods_exist():
    assert gang_size(8, None, 0) == 8  # a new gang: every pod, before any exists
    assert gang_size(4, 8, 8) == 4  # shrinking: at once
    assert gang_size(8, 4, 5) == 5  # growing: as far as the new pods exist
    assert gang_size(8, 4, 2) == 4  # pods lost (a recreation): never below what was applied
    assert gang_size(8, 4, 9) == 8


def revision_of(role_fields: dict, **spec) -> str:
    from rbg_operator.desired.workload_kinds import role_revision

    group = hub(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g", "namespace": "ns", "uid": "u"},
            "spec": {
                "roles": [
                    {
                        "name": "web",
                        "replicas": 2,
                        "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}},
                        **role_fields,
                    }
                ],
                **spec,
            },
        }
    )
    return role_revision(group, group.spec.roles[0])


def test_revision_follows_everything_that_restarts_pods_and_nothing_else():
    base = revision_of({})
    assert revision_of({"replicas": 5}) == base  # scaling restarts nothing
    # Each of these lands in the pod template, so each restarts the pods: each is a new revision.
    assert revision_of({"labels": {"team": "a"}}) != base
    assert revision_of({"annotations": {"note": "x"}}) != base
    assert revision_of({}, podGroupPolicy={"kubeScheduling": {}}) != base
    assert revision_of({"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}) != base


def test_gang_size_counts_every_pod_of_a_custom_components_role():
    container = {"spec": {"containers": [{"name": "m", "image": "i"}]}}
    v2 = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleBasedGroup",
        "metadata": {
            "name": "g",
            "namespace": "ns",
            "uid": "u",
            "annotations": {"rbg.workloads.x-k8s.io/group-gang-scheduling": "true"},
        },
        "spec": {
            "roles": [
                {
                    "name": "cc",
                    "replicas": 2,
                    "customComponentsPattern": {
                        "components": [
                            {"name": "x", "size": 3, "template": container},
                            {"name": "y", "size": 1, "template": container},
                        ]
                    },
                },
                {"name": "web", "replicas": 1, "standalonePattern": {"template": container}},
            ]
        },
    }
    group = RoleBasedGroupV2.read(v2)
    assert min_member(group) == 2 * (3 + 1) + 1
