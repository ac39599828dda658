from rbg_operator import naming
from rbg_operator.controller.ownership import overridden_conditions, replicas_ownership
from tests.support.groups import hub

OURS = {"rbg-operator"}


def workload(replicas: int, *managers: str, yielded_at: int | None = None) -> dict:
    annotations = {naming.ANNOTATION_YIELDED_REPLICAS: str(yielded_at)} if yielded_at is not None else {}
    return {
        "metadata": {
            "annotations": annotations,
            "managedFields": [{"manager": m, "fieldsV1": {"f:spec": {"f:replicas": {}}}} for m in managers],
        },
        "spec": {"replicas": replicas},
    }


def test_the_role_sets_replicas_it_owns_or_shares():
    assert replicas_ownership(None, 3, OURS).apply
    assert replicas_ownership(workload(3, "rbg-operator"), 5, OURS).apply
    # Both applied the same value once: a later role change is ours to make.
    assert replicas_ownership(workload(3, "rbg-operator", "kubectl"), 5, OURS).apply


def test_another_writers_value_stands_only_while_it_differs_and_the_role_is_unchanged():
    held = replicas_ownership(workload(5, "kubectl"), 3, OURS)
    assert not held.apply and held.overridden_by == "kubectl" and held.running == 5
    assert not replicas_ownership(workload(5, "kubectl", yielded_at=3), 3, OURS).apply
    # The role changed since the operator yielded: it takes the replicas back.
    assert replicas_ownership(workload(5, "kubectl", yielded_at=3), 4, OURS).apply
    # The other writer came round to the role's value: nothing is overridden any more.
    assert replicas_ownership(workload(3, "kubectl", yielded_at=3), 3, OURS).apply


def test_the_condition_names_the_role_and_the_writer_and_clears():
    group = hub(
        {
            "metadata": {"name": "g", "namespace": "ns", "uid": "u"},
            "spec": {
                "roles": [
                    {"name": "web", "replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
                ]
            },
        }
    )
    held = {"web": replicas_ownership(workload(5, "kubectl"), 3, OURS)}
    [condition] = overridden_conditions(group, held, None)
    assert condition["status"] == "True" and "role web: 5 replicas set by kubectl" in condition["message"]
    applied = {"web": replicas_ownership(workload(3, "rbg-operator"), 3, OURS)}
    assert overridden_conditions(group, applied, None) == []
    assert overridden_conditions(group, applied, [condition])[0]["status"] == "False"
