import pydantic
import pytest

from rbg_operator.api.rolebasedgroup import RoleBasedGroupSpec, dependency_layers


def spec(*roles, **extra):
    return {"roles": list(roles), **extra}


def role(name, **fields):
    return {"name": name, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}, **fields}


def test_defaults_match_the_reference():
    parsed = RoleBasedGroupSpec.model_validate(spec(role("a")))
    only = parsed.roles[0]
    assert (only.replicas, only.workload.api_version, only.workload.kind) == (1, "apps/v1", "StatefulSet")
    assert only.min_ready_seconds == 0


def test_layers_follow_dependencies_in_spec_order():
    parsed = RoleBasedGroupSpec.model_validate(
        spec(role("router", dependencies=["prefill", "decode"]), role("prefill"), role("decode"))
    )
    assert dependency_layers(parsed) == [["prefill", "decode"], ["router"]]


@pytest.mark.parametrize(
    "bad, message",
    [
        (spec(role("a"), role("a")), "roles: role name 'a' is used more than once"),
        (spec(role("a", dependencies=["b"])), "roles[0].dependencies: unknown role 'b'"),
        (spec(role("a", dependencies=["a"])), "roles[0].dependencies: role 'a' depends on itself"),
        (spec(role("a", dependencies=["b"]), role("b", dependencies=["a"])), "dependency cycle a -> b -> a"),
        (spec({"name": "a"}), "roles[0]: set exactly one of template and templateRef"),
        (spec({"name": "a", "templateRef": {"name": "t"}}), "roles[0].templateRef.name: no roleTemplates entry"),
    ],
)
def test_invalid_specs_name_the_field(bad, message):
    with pytest.raises(pydantic.ValidationError) as error:
        RoleBasedGroupSpec.model_validate(bad)
    assert message in str(error.value)


def test_unknown_fields_are_rejected():
    with pytest.raises(pydantic.ValidationError, match="replica"):
        RoleBasedGroupSpec.model_validate(spec(role("a", replica=2)))
