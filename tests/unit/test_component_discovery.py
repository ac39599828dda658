"""The component-discovery directive: a malformed value never fails a reconcile pass (what can be
read is used, the rest skipped), and admission refuses it naming the annotation and the part."""

from __future__ import annotations

import json

import pydantic
import pytest

from rbg_operator.api.component_discovery import ANNOTATION, parse
from rbg_operator.api.errors import describe
from rbg_operator.api.rolebasedgroup import RoleBasedGroupSpec
from rbg_operator.api.v1alpha2 import RoleBasedGroupSpecV2
from rbg_operator.desired.component_discovery import discovery_env

pytestmark = pytest.mark.unit

T = {"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8000}]}]}}
GOOD = {"env": "PEER", "component": "engine", "index": 1}

MALFORMED = [
    "{",
    "[]",
    '"text"',
    "null",
    json.dumps({"addressRefs": "engine"}),
    json.dumps({"addressRefs": {"env": "A", "component": "engine"}}),
    json.dumps({"addressRefs": 7}),
    json.dumps({"addressRefs": ["engine", 3, None, [1]]}),
    json.dumps({"addressRefs": [{"env": "A", "component": ["engine"]}]}),
    json.dumps({"addressRefs": [{"env": "A", "component": {"x": 1}}]}),
    json.dumps({"addressRefs": [{"env": "A", "component": "engine", "index": "one"}]}),
    json.dumps({"addressRefs": [{"env": "A", "component": "engine", "index": "9" * 5000}]}),
    json.dumps({"addressRefs": [{"env": "A", "component": "engine", "index": -1}]}),
    json.dumps({"addressRefs": [{"env": "A", "component": "engine", "index": 1.5}]}),
    json.dumps({"addressRefs": [{"env": "A", "component": "engine", "index": [0]}]}),
    json.dumps({"addressRefs": [{"env": 5, "component": "engine"}]}),
    json.dumps({"portRefs": [{"env": "P", "component": "engine", "portName": {"a": 1}}]}),
    json.dumps({"portRefs": [{"env": "P", "component": "engine", "portName": "http", "index": True}]}),
    json.dumps({"portRefs": "x"}),
]


def components(directive: str) -> list[dict]:
    return [
        {"name": "router", "size": 1, "serviceName": "s-g-r", "annotations": {ANNOTATION: directive}, "template": T},
        {"name": "engine", "size": 2, "serviceName": "s-g-r", "template": T},
    ]


def env_of(directive: str) -> list[dict]:
    found = components(directive)
    return discovery_env("ns", found, found[0], lambda component, index: f"i-{component}-{index}")


@pytest.mark.parametrize("directive", MALFORMED)
def test_a_malformed_directive_adds_nothing_and_never_raises(directive):
    assert env_of(directive) == []
    assert parse(directive)[2], "the problem is reported"


def test_the_readable_references_of_a_partly_malformed_directive_are_still_used():
    directive = json.dumps(
        {
            "addressRefs": ["engine", {"env": "A", "component": "engine", "index": "x"}, GOOD],
            "portRefs": [{"env": "P", "component": "engine", "portName": "http", "index": "1"}, 3],
        }
    )
    assert env_of(directive) == [
        {"name": "PEER", "value": "i-engine-1.s-g-r.ns.svc.cluster.local"},
        {"name": "P", "value": "8000"},
    ]


def v2_problems(directive: str) -> str:
    role = {
        "name": "mix",
        "customComponentsPattern": {
            "components": [
                {"name": "router", "size": 1, "template": T, "annotations": {ANNOTATION: directive}},
                {"name": "engine", "size": 2, "template": T},
            ]
        },
    }
    with pytest.raises(pydantic.ValidationError) as raised:
        RoleBasedGroupSpecV2.model_validate({"roles": [role]})
    return describe(raised.value, "spec")


def test_admission_refuses_a_malformed_directive_naming_the_annotation_and_the_part():
    at = f"spec.roles[0].customComponentsPattern.components[0].annotations[{ANNOTATION}]"
    assert f"{at}: addressRefs[0].index: 'one' is not a whole number of at least 0" in v2_problems(
        json.dumps({"addressRefs": [{"env": "A", "component": "engine", "index": "one"}]})
    )
    assert f"{at}: addressRefs: must be a list of objects" in v2_problems(json.dumps({"addressRefs": "engine"}))
    assert f"{at}: not JSON" in v2_problems("{")
    assert f"{at}: portRefs[0]: portName must be a non-empty string" in v2_problems(
        json.dumps({"portRefs": [{"env": "P", "component": "engine"}]})
    )
    for directive in MALFORMED:
        assert at in v2_problems(directive), directive


def test_admission_finds_the_directive_on_a_template_too_in_either_version():
    bad = {"metadata": {"annotations": {ANNOTATION: '{"addressRefs": 1}'}}, **T}
    with pytest.raises(pydantic.ValidationError) as raised:
        RoleBasedGroupSpecV2.model_validate({"roles": [{"name": "a", "standalonePattern": {"template": bad}}]})
    assert f"spec.roles[0].standalonePattern.template.metadata.annotations[{ANNOTATION}]: addressRefs" in describe(
        raised.value, "spec"
    )
    v1_role = {"name": "a", "workload": {"apiVersion": "apps/v1", "kind": "StatefulSet"}, "template": bad}
    with pytest.raises(pydantic.ValidationError) as raised:
        RoleBasedGroupSpec.model_validate({"roles": [v1_role]})
    assert f"spec.roles[0].template.metadata.annotations[{ANNOTATION}]: addressRefs" in describe(raised.value, "spec")


def test_a_well_formed_directive_is_accepted():
    RoleBasedGroupSpecV2.model_validate(
        {
            "roles": [
                {
                    "name": "mix",
                    "customComponentsPattern": {
                        "components": [
                            {
                                "name": "router",
                                "size": 1,
                                "template": T,
                                "annotations": {
                                    ANNOTATION: json.dumps(
                                        {"addressRefs": [GOOD], "portRefs": [{**GOOD, "portName": "http"}]}
                                    )
                                },
                            },
                            {"name": "engine", "size": 2, "template": T},
                        ]
                    },
                }
            ]
        }
    )
