import pydantic
import pytest

from rbg_operator.api.errors import describe
from rbg_operator.api.v1alpha2 import RoleBasedGroupSpecV2

T = {"spec": {"containers": [{"name": "c", "image": "i"}]}}


def problems(*roles, **spec) -> str:
    with pytest.raises(pydantic.ValidationError) as raised:
        RoleBasedGroupSpecV2.model_validate({"roles": list(roles), **spec})
    return describe(raised.value, "spec")


def test_a_valid_group_in_every_pattern_passes():
    RoleBasedGroupSpecV2.model_validate(
        {
            "roleTemplates": [{"name": "base", "template": T}],
            "roles": [
                {"name": "a", "standalonePattern": {"templateRef": {"name": "base"}}},
                {"name": "b", "leaderWorkerPattern": {"template": T, "size": 2}, "dependencies": ["a"]},
                {"name": "c", "customComponentsPattern": {"components": [{"name": "x", "size": 1, "template": T}]}},
            ],
        }
    )


def test_each_rule_names_its_field():
    assert "roles[0]: set one of standalonePattern, leaderWorkerPattern, customComponentsPattern" in problems(
        {"name": "a"}
    )
    assert "roles[0]: role 'a' sets standalonePattern and customComponentsPattern, but only one of" in problems(
        {
            "name": "a",
            "standalonePattern": {"template": T},
            "customComponentsPattern": {"components": [{"name": "x", "size": 1, "template": T}]},
        }
    )
    assert "roles[0].standalonePattern.templateRef.name: no roleTemplates entry named 'gone'" in problems(
        {"name": "a", "standalonePattern": {"templateRef": {"name": "gone"}}}
    )
    assert "roles[0].rolloutStrategy.rollingUpdate.partition: 2 must be less than replicas 2" in problems(
        {
            "name": "a",
            "replicas": 2,
            "standalonePattern": {"template": T},
            "rolloutStrategy": {"rollingUpdate": {"partition": 2}},
        }
    )
    assert "maxSurge and maxUnavailable cannot both be 0" in problems(
        {
            "name": "a",
            "standalonePattern": {"template": T},
            "rolloutStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}},
        }
    )
    assert "roles[0].customComponentsPattern.components[1].name: 'x' is used more than once" in problems(
        {
            "name": "a",
            "customComponentsPattern": {
                "components": [{"name": "x", "size": 1, "template": T}, {"name": "x", "size": 1, "template": T}]
            },
        }
    )
    assert "roles: dependency cycle a -> b -> a" in problems(
        {"name": "a", "standalonePattern": {"template": T}, "dependencies": ["b"]},
        {"name": "b", "standalonePattern": {"template": T}, "dependencies": ["a"]},
    )
    assert "unsupported workload type 'workloads.x-k8s.io/v1alpha1/InstanceSet'" in problems(
        {
            "name": "a",
            "standalonePattern": {"template": T},
            "annotations": {"rbg.workloads.x-k8s.io/role-workload-type": "workloads.x-k8s.io/v1alpha1/InstanceSet"},
        }
    )
    assert "spec.roles[0].annotations[rbg.workloads.x-k8s.io/role-instance-pattern]: 'Cloned' is not one" in problems(
        {
            "name": "a",
            "standalonePattern": {"template": T},
            "annotations": {"rbg.workloads.x-k8s.io/role-instance-pattern": "Cloned"},
        }
    )
    assert "roleTemplates[0].template.spec.containers: must have at least one container" in problems(
        {"name": "a", "standalonePattern": {"templateRef": {"name": "t"}}},
        roleTemplates=[{"name": "t", "template": {"spec": {}}}],
    )


def test_a_group_name_with_a_dot_names_the_service_it_would_break():
    from rbg_operator.api.rolebasedgroup import dot_problems

    assert dot_problems("ab") == []
    (problem,) = dot_problems("a.b")
    assert problem.startswith("metadata.name: 'a.b' contains '.'") and "s-a.b-{role}" in problem


def test_only_a_replicas_change_of_a_role_with_an_enabled_adapter_is_a_candidate_for_the_lock():
    from rbg_operator.webhook import replicas_changed_under_adapter

    def spec(replicas: int, enable: bool = True, env: str = "a") -> dict:
        role = {"name": "web", "replicas": replicas, "scalingAdapter": {"enable": enable}, "env": env}
        return {"roles": [{"name": "db"}, role]}

    assert replicas_changed_under_adapter(spec(1), spec(3)) == [(1, "web", 3)]
    assert replicas_changed_under_adapter(spec(1), spec(1, env="b")) == []  # any other edit passes
    assert replicas_changed_under_adapter(spec(1, enable=False), spec(3, enable=False)) == []
    assert replicas_changed_under_adapter({"roles": []}, spec(3)) == []  # a new role: nothing to own yet


def test_a_role_instance_set_role_whose_pods_would_outgrow_a_dns_label_names_the_pod():
    from rbg_operator.api.rolebasedgroup import instance_set_name_problems as name_problems

    def spec(role: str, components: list[str] | None = None) -> RoleBasedGroupSpecV2:
        template = {"spec": {"containers": [{"name": "main"}]}}
        pattern = (
            {
                "customComponentsPattern": {
                    "components": [{"name": c, "size": 1, "template": template} for c in components]
                }
            }
            if components
            else {"standalonePattern": {"template": template}}
        )
        return RoleBasedGroupSpecV2.model_validate({"roles": [{"name": role, **pattern}]})

    assert name_problems("g", spec("r" * 50)) == []  # g-rrr...-4999: 57 characters
    (problem,) = name_problems("g", spec("r" * 60))
    assert problem.startswith("spec.roles[0].name:") and "-4999'" in problem and "63" in problem
    (problem,) = name_problems("g", spec("web", ["component-name-long-enough-to-push-the-pod-past-63"]))
    assert "component-name-long-enough-to-push-the-pod-past-63-255" in problem
