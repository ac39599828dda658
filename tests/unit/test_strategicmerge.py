import json

from localcluster.components import kubernetes_openapi
from rbg_operator.desired.strategicmerge import MERGE_KEYS, merge


def test_containers_merge_by_name_and_scalars_override():
    base = {"spec": {"containers": [{"name": "a", "image": "x:1", "args": ["--a"]}, {"name": "b", "image": "y"}]}}
    patch = {"spec": {"containers": [{"name": "a", "image": "x:2"}, {"name": "c", "image": "z"}]}}
    assert merge(base, patch) == {
        "spec": {
            "containers": [
                {"name": "a", "image": "x:2", "args": ["--a"]},
                {"name": "b", "image": "y"},
                {"name": "c", "image": "z"},
            ]
        }
    }


def test_lists_without_merge_key_are_replaced_and_null_deletes():
    base = {"spec": {"containers": [{"name": "a", "args": ["--x", "--y"], "command": ["run"]}]}}
    patch = {"spec": {"containers": [{"name": "a", "args": ["--z"], "command": None}]}}
    assert merge(base, patch) == {"spec": {"containers": [{"name": "a", "args": ["--z"]}]}}


def test_nested_keyed_lists_env_ports_and_mounts():
    base = {
        "containers": [
            {
                "name": "a",
                "env": [{"name": "X", "value": "1"}],
                "ports": [{"containerPort": 80}],
                "volumeMounts": [{"name": "m", "mountPath": "/m"}],
            }
        ]
    }
    patch = {
        "containers": [
            {
                "name": "a",
                "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}],
                "ports": [{"containerPort": 80, "name": "http"}],
                "volumeMounts": [{"name": "n", "mountPath": "/n"}],
            }
        ]
    }
    merged = merge(base, patch)["containers"][0]
    assert merged["env"] == [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]
    assert merged["ports"] == [{"containerPort": 80, "name": "http"}]
    assert [m["mountPath"] for m in merged["volumeMounts"]] == ["/m", "/n"]


def test_patch_directives_delete_and_replace():
    base = {"volumes": [{"name": "a"}, {"name": "b"}], "nodeSelector": {"x": "1", "y": "2"}}
    patch = {"volumes": [{"name": "a", "$patch": "delete"}], "nodeSelector": {"$patch": "replace", "z": "3"}}
    assert merge(base, patch) == {"volumes": [{"name": "b"}], "nodeSelector": {"z": "3"}}


def test_inputs_are_not_modified():
    base = {"spec": {"containers": [{"name": "a", "image": "x"}]}}
    patch = {"spec": {"containers": [{"name": "a", "image": "y"}]}}
    merge(base, patch)
    assert base["spec"]["containers"][0]["image"] == "x" and patch["spec"]["containers"][0]["image"] == "y"


def test_merge_keys_are_the_ones_kubernetes_declares():
    """Every list field of the pod spec that Kubernetes patches by key is in MERGE_KEYS, with that key."""
    schemas = json.loads(kubernetes_openapi().read_text())["components"]["schemas"]
    declared = {}
    for name in ("io.k8s.api.core.v1.PodSpec", "io.k8s.api.core.v1.Container", "io.k8s.api.core.v1.EphemeralContainer"):
        for field, prop in schemas[name]["properties"].items():
            if (
                prop.get("x-kubernetes-patch-strategy", "").startswith("merge")
                and "x-kubernetes-patch-merge-key" in prop
            ):
                declared[field] = prop["x-kubernetes-patch-merge-key"]
    assert declared, "the OpenAPI document carries patch metadata"
    assert MERGE_KEYS == declared
