"""Engine runtimes: what ClusterEngineRuntimeProfiles add to a role's pod templates."""

from rbg_operator.api.v1alpha2 import RoleBasedGroupV2
from rbg_operator.desired import role_children
from rbg_operator.desired.engineruntime import missing_profiles
from rbg_operator.desired.options import BuildOptions
from rbg_operator.desired.workload_kinds import role_revision
from tests.support.groups import hub

PROFILE = {
    "metadata": {"name": "patio"},
    "spec": {
        "initContainers": [{"name": "fetch", "image": "example.com/fetch"}],
        "containers": [
            {"name": "patio", "image": "example.com/patio:1", "args": ["--serve"]},
            {"name": "main", "image": "example.com/not-this-one"},
        ],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
    },
}


def group(**role_fields) -> RoleBasedGroupV2:
    return hub(
        {
            "metadata": {"name": "g", "namespace": "ns", "uid": "u"},
            "spec": {
                "roles": [
                    {
                        "name": "r",
                        "template": {
                            "spec": {"containers": [{"name": "main", "image": "app"}, {"name": "side", "image": "s"}]}
                        },
                        "engineRuntimes": [
                            {
                                "profileName": "patio",
                                "injectContainers": ["main"],
                                "containers": [
                                    {"name": "patio", "args": ["--port=9"], "env": [{"name": "A", "value": "1"}]},
                                    {"name": "side", "args": ["--ignored"]},
                                ],
                            }
                        ],
                        **role_fields,
                    }
                ]
            },
        }
    )


def test_a_profile_appends_what_the_pod_lacks_and_the_overrides_to_its_own_containers():
    options = BuildOptions(engine_profiles={"patio": PROFILE})
    g = group()
    before = g.model_dump()
    spec = role_children(g, "r", options)[-1]["spec"]["template"]["spec"]
    assert g.model_dump() == before
    assert [c["name"] for c in spec["containers"]] == ["main", "side", "patio"]  # the pod's own main stays
    assert spec["containers"][0]["image"] == "app"
    assert "args" not in spec["containers"][1]  # not a profile container: its override is skipped
    patio = spec["containers"][2]
    assert patio["args"] == ["--serve", "--port=9"]
    assert {"name": "A", "value": "1"} in patio["env"]
    assert [c["name"] for c in spec["initContainers"]] == ["fetch"]
    assert {"name": "shm", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
    assert PROFILE["spec"]["containers"][0]["args"] == ["--serve"]  # the cached profile is not changed


def test_a_profile_change_is_a_new_revision():
    g = group()
    changed = {
        **PROFILE,
        "spec": {**PROFILE["spec"], "containers": [{"name": "patio", "image": "example.com/patio:2"}]},
    }
    role = g.spec.role("r")
    assert role_revision(g, role, BuildOptions(engine_profiles={"patio": PROFILE})) != role_revision(
        g, role, BuildOptions(engine_profiles={"patio": changed})
    )


def test_only_the_leader_of_a_leaderworkerset_gets_the_sidecars():
    g = group(
        workload={"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"}, leaderWorkerSet={"size": 3}
    )
    lws = role_children(g, "r", BuildOptions(engine_profiles={"patio": PROFILE}))[-1]["spec"]["leaderWorkerTemplate"]
    assert [c["name"] for c in lws["leaderTemplate"]["spec"]["containers"]] == ["main", "side", "patio"]
    assert [c["name"] for c in lws["workerTemplate"]["spec"]["containers"]] == ["main", "side"]


def test_a_missing_profile_names_the_field():
    assert missing_profiles(group().spec.roles, {}) == [
        "spec.roles[0].engineRuntimes[0].profileName: ClusterEngineRuntimeProfile 'patio' not found"
    ]
    assert missing_profiles(group().spec.roles, {"patio": PROFILE}) == []
