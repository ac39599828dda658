import yaml

from rbg_operator.api.v1alpha2 import RoleBasedGroupV2
from rbg_operator.desired import group_children, role_children
from rbg_operator.desired.discovery import topology_configmap
from tests.support.groups import hub


def group(*roles):
    return hub({"metadata": {"name": "g", "namespace": "ns", "uid": "u"}, "spec": {"roles": list(roles)}})


C = {
    "spec": {
        "initContainers": [{"name": "init", "image": "i"}],
        "containers": [
            {
                "name": "c",
                "image": "i",
                "env": [{"name": "ROLE_NAME", "value": "custom"}, {"name": "X", "value": "$(RBG_ROLE_INDEX)"}],
            }
        ],
    }
}


def test_env_is_injected_into_every_container_and_user_variables_win():
    _, sts = role_children(group({"name": "r", "template": C}), "r")
    spec = sts["spec"]["template"]["spec"]
    for container in spec["initContainers"] + spec["containers"]:
        names = [e["name"] for e in container["env"]]
        assert names[:2] == ["RBG_GROUP_NAME", "RBG_ROLE_NAME"]
        assert "RBG_ROLE_INDEX" in names and names.count("ROLE_NAME") == 1
    main = spec["containers"][0]["env"]
    assert {"name": "ROLE_NAME", "value": "custom"} in main
    # ours precede the user's, so the user's $(RBG_ROLE_INDEX) expands
    names = [e["name"] for e in main]
    assert names.index("RBG_ROLE_INDEX") < names.index("X")


def test_deployment_roles_get_no_index_and_lws_roles_get_leader_variables():
    g = group(
        {"name": "d", "workload": {"apiVersion": "apps/v1", "kind": "Deployment"}, "template": C},
        {
            "name": "l",
            "workload": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
            "leaderWorkerSet": {"size": 4},
            "template": C,
        },
    )
    _, deploy = role_children(g, "d")
    assert "RBG_ROLE_INDEX" not in [e["name"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]]
    _, lws = role_children(g, "l")
    env = {e["name"]: e for e in lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["env"]}
    assert env["RBG_LWP_GROUP_SIZE"]["value"] == "4"
    assert env["RBG_LWP_LEADER_ADDRESS"]["value"] == "g-l-$(RBG_ROLE_INDEX).g-l.ns"
    assert "leaderTemplate" not in lws["spec"]["leaderWorkerTemplate"]


def test_topology_configmap_lists_roles_and_instances():
    g = group(
        {"name": "prefill", "replicas": 2, "template": C, "servicePorts": [{"name": "http", "port": 8000}]},
        {
            "name": "router",
            "dependencies": ["prefill"],
            "template": C,
            "workload": {"apiVersion": "apps/v1", "kind": "Deployment"},
        },
    )
    (configmap,) = group_children(g)
    assert configmap["metadata"]["name"] == "g"
    data = yaml.safe_load(configmap["data"]["topology.yaml"])
    assert data["roles"][0] == {
        "name": "prefill",
        "workload": "StatefulSet",
        "replicas": 2,
        "service": "s-g-prefill",
        "instances": ["g-prefill-0.s-g-prefill", "g-prefill-1.s-g-prefill"],
        "servicePorts": [{"name": "http", "port": 8000}],
    }
    assert "instances" not in data["roles"][1]


def test_pods_mount_the_topology_read_only():
    _, sts = role_children(group({"name": "r", "template": C}), "r")
    spec = sts["spec"]["template"]["spec"]
    assert {"name": "rbg-topology", "configMap": {"name": "g"}} in spec["volumes"]
    for container in spec["initContainers"] + spec["containers"]:
        assert {"name": "rbg-topology", "mountPath": "/etc/rbg", "readOnly": True} in container["volumeMounts"]


TPL = {"spec": {"containers": [{"name": "m", "image": "a"}]}}


def demo_v2(*roles: dict) -> RoleBasedGroupV2:
    """Group `demo` written in v1alpha2, read as the operator reads it."""
    return RoleBasedGroupV2.read(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "demo", "namespace": "ns", "uid": "u"},
            "spec": {"roles": list(roles)},
        }
    )


def test_the_refine_mode_config_lists_stateful_roles_with_addresses_that_name_pods():
    tpl = TPL
    group = demo_v2(
        {
            "name": "prefill",
            "replicas": 2,
            "servicePorts": [{"name": "http-api", "port": 8000}, {"port": 9000}],
            "standalonePattern": {"template": tpl},
        },
        {"name": "pd", "replicas": 1, "leaderWorkerPattern": {"size": 2, "template": tpl}},
        {
            "name": "mix",
            "replicas": 1,
            "customComponentsPattern": {"components": [{"name": "router", "size": 1, "template": tpl}]},
        },
        {
            "name": "web",
            "replicas": 1,
            "annotations": {"rbg.workloads.x-k8s.io/role-workload-type": "apps/v1/Deployment"},
            "standalonePattern": {"template": tpl},
        },
    )
    config = yaml.safe_load(topology_configmap(group)["data"]["config.yaml"])
    assert config["group"] == {"name": "demo", "size": 3, "roles": ["prefill", "pd", "mix"]}
    assert config["roles"]["prefill"] == {
        "size": 2,
        "instances": [
            {"address": "demo-prefill-0.s-demo-prefill", "ports": {"http_api": 8000, "port9000": 9000}},
            {"address": "demo-prefill-1.s-demo-prefill", "ports": {"http_api": 8000, "port9000": 9000}},
        ],
    }
    assert config["roles"]["pd"]["instances"][0]["address"] == "demo-pd-0-0.s-demo-pd"
    assert config["roles"]["mix"]["instances"][0]["address"] == "demo-mix-0-router-0.s-demo-mix"


def test_a_custom_components_instance_is_addressed_under_its_first_components_own_service():
    """The first component's pods take its serviceName as their subdomain, so their DNS names live
    under that Service (`{pod}.{serviceName}`), not the role's."""
    tpl = TPL

    def mix(*components) -> dict:
        group = demo_v2({"name": "mix", "replicas": 2, "customComponentsPattern": {"components": list(components)}})
        data = topology_configmap(group)["data"]
        assert yaml.safe_load(data["topology.yaml"])["roles"][0]["instances"] == [
            i["address"] for i in yaml.safe_load(data["config.yaml"])["roles"]["mix"]["instances"]
        ]
        return yaml.safe_load(data["config.yaml"])["roles"]["mix"]["instances"]

    own = mix(
        {"name": "router", "size": 1, "serviceName": "router-svc", "template": tpl},
        {"name": "engine", "size": 2, "template": tpl},
    )
    assert [i["address"] for i in own] == ["demo-mix-0-router-0.router-svc", "demo-mix-1-router-0.router-svc"]
    # Only the first component answers for the instance; without a serviceName, the role's Service.
    role_service = mix(
        {"name": "router", "size": 1, "template": tpl},
        {"name": "engine", "size": 2, "serviceName": "engine-svc", "template": tpl},
    )
    assert role_service[0]["address"] == "demo-mix-0-router-0.s-demo-mix"
