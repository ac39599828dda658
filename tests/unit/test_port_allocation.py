"""The port allocator's pure parts (desired/ports.py) and its used set (controller/ports.py): the
directive read with errors naming the field, ports chosen from a used set by strategy, allocations
kept and never moved, and the values injected into pods and their annotations."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import random

import pytest

from rbg_operator import kinds, naming
from rbg_operator.controller.group_plan import GroupOptions
from rbg_operator.controller.group_plan import plan as group_plan
from rbg_operator.controller.group_snapshot import observe
from rbg_operator.controller.instanceset_modes import plan
from rbg_operator.controller.instanceset_plan import InstanceSetSnapshot, desired_instance, view
from rbg_operator.controller.ports import PortAllocator
from rbg_operator.controller.roleinstance_plan import ComponentPlan, desired_pod, update_kind
from rbg_operator.controller.store import Store
from rbg_operator.desired import ports
from rbg_operator.desired.options import PortSettings

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
ON = PortSettings(enabled=True, strategy="static", start=30000, range=10)


def directive(**fields) -> str:
    return json.dumps(fields)


def component(name: str, text: str | None, size: int = 1, where: str = "component") -> dict:
    notes = {ports.DIRECTIVE: text} if text is not None else {}
    template = {"spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "main", "env": []}]}}
    if where == "template" and notes:
        template["metadata"] = {"annotations": notes}
    entry = {"name": name, "size": size, "template": template}
    if where == "component" and notes:
        entry["annotations"] = notes
    return entry


# -- the directive ------------------------------------------------------------------------------


def test_a_directive_is_read_with_its_defaults():
    read = ports.parse(
        directive(
            allocations=[
                {"name": "grpc", "env": "GRPC_PORT", "annotationKey": "example.com/grpc", "scope": "RoleScoped"},
                {"name": "metrics", "env": "METRICS_PORT"},
            ],
            references=[{"env": "LEADER_PORT", "from": "leader.grpc"}],
        )
    )
    assert read.allocations == (
        ports.Allocation("grpc", "GRPC_PORT", "example.com/grpc", "RoleScoped"),
        ports.Allocation("metrics", "METRICS_PORT", None, "PodScoped"),  # PodScoped by default
    )
    assert read.references == (ports.Reference("LEADER_PORT", "leader.grpc"),)


@pytest.mark.parametrize(
    "text, field",
    [
        ("{not json", "not JSON"),
        ("[]", "not a JSON object"),
        (directive(allocation=[]), "allocation: unknown field"),
        (directive(allocations={}), "allocations: a list is needed"),
        (directive(allocations=[{"env": "P"}]), "allocations[0].name: required"),
        (directive(allocations=[{"name": "a.b", "env": "P"}]), "allocations[0].name: 'a.b' is not a name"),
        (directive(allocations=[{"name": "a"}]), "allocations[0].env: required"),
        (directive(allocations=[{"name": "a", "env": "1X"}]), "allocations[0].env: '1X' is not"),
        (directive(allocations=[{"name": "a", "env": "P", "scope": "Pod"}]), "allocations[0].scope: 'Pod' is neither"),
        (
            directive(allocations=[{"name": "a", "env": "P", "annotationkey": "k"}]),
            "allocations[0].annotationkey: unknown",
        ),
        (directive(allocations=[{"name": "a", "env": "P", "annotationKey": "a/b/c"}]), "allocations[0].annotationKey"),
        (
            directive(allocations=[{"name": "a", "env": "P"}, {"name": "a", "env": "Q"}]),
            "allocations[1].name: 'a' is allocated twice",
        ),
        (
            directive(allocations=[{"name": "a", "env": "P"}], references=[{"env": "P", "from": "x.a"}]),
            "references[0].env: 'P' is set twice",
        ),
        (directive(references=[{"env": "P", "from": "a"}]), "references[0].from: 'a' is not"),
        (directive(references=[{"env": "P"}]), "references[0].from: required"),
    ],
)
def test_a_directive_that_cannot_be_used_names_the_field(text: str, field: str):
    with pytest.raises(ports.DirectiveError) as raised:
        ports.parse(text)
    assert str(raised.value).startswith(field), str(raised.value)


def test_the_component_wins_over_its_template_and_the_error_names_the_component():
    both = component("w", directive(allocations=[{"name": "a", "env": "A"}]))
    both["template"]["metadata"] = {"annotations": {ports.DIRECTIVE: "{broken"}}
    assert ports.component_directive(both).allocations[0].env == "A"
    with pytest.raises(ports.DirectiveError, match=rf"^component w: annotation {ports.DIRECTIVE}: not JSON"):
        ports.component_directive(component("w", "{broken", where="template"))
    assert ports.component_directive(component("w", None)) is None


# -- choosing -----------------------------------------------------------------------------------


def test_static_takes_the_lowest_free_ports():
    assert ports.choose(3, {30000, 30002}, ON) == [30001, 30003, 30004]


def test_random_never_takes_a_used_port_nor_one_twice():
    settings = PortSettings(True, "random", 30000, 20)
    used = set(range(30000, 30020, 2))
    for seed in range(50):
        chosen = ports.choose(10, used, settings, random.Random(seed))
        assert len(set(chosen)) == 10 and not set(chosen) & used and all(30000 <= p < 30020 for p in chosen)


def test_too_few_free_ports_says_how_many_and_which_range():
    with pytest.raises(ports.PortsExhausted, match=r"3 port\(s\) wanted, 2 free in 30000-30009"):
        ports.choose(3, set(range(30000, 30008)), ON)


# -- RoleScoped ---------------------------------------------------------------------------------

LEADER = directive(allocations=[{"name": "grpc", "env": "LEADER_PORT", "scope": "RoleScoped"}])
WORKER = directive(
    allocations=[{"name": "grpc", "env": "WORKER_PORT", "annotationKey": "example.com/port"}],
    references=[{"env": "LEADER_PORT", "from": "leader.grpc"}, {"env": "ROUTER_PORT", "from": "front.router.http"}],
)
ROUTER = directive(allocations=[{"name": "http", "env": "HTTP_PORT", "scope": "RoleScoped"}])


def roles() -> dict[str, list[dict]]:
    return {
        "pd": [component("leader", LEADER), component("worker", WORKER, size=2)],
        "front": [component("router", ROUTER, where="template")],
    }


def test_role_scoped_allocations_are_kept_and_only_missing_ones_are_chosen():
    carried = {"pd": json.dumps({"pd": {"leader": {"grpc": 34000}}}), "front": None}
    needs = ports.role_needs(roles(), carried)
    # Kept though it is outside today's range: a port once given never moves.
    assert needs.kept == {("pd", "leader", "grpc"): 34000}
    assert needs.missing == (("front", "router", "http"),)
    annotations, problems = ports.role_annotations(needs, {("front", "router", "http"): 30001})
    assert problems == []
    assert json.loads(annotations["pd"]) == {"pd": {"leader": {"grpc": 34000}}, "front": {"router": {"http": 30001}}}
    assert json.loads(annotations["front"]) == {"front": {"router": {"http": 30001}}}


def test_a_bad_directive_is_reported_and_the_other_roles_keep_their_ports():
    broken = {
        **roles(),
        "pd": [component("leader", directive(allocations=[{"name": "grpc", "env": "P", "scope": "X"}]))],
    }
    needs = ports.role_needs(broken, {})
    assert needs.problems == (
        f"role pd: component leader: annotation {ports.DIRECTIVE}: allocations[0].scope: 'X' is neither PodScoped "
        "nor RoleScoped",
    )
    assert needs.missing == (("front", "router", "http"),)


def test_a_reference_to_nothing_or_to_a_pod_scoped_port_is_reported():
    text = directive(references=[{"env": "A", "from": "worker.grpc"}, {"env": "B", "from": "leader.nope"}])
    needs = ports.role_needs(
        {"pd": [component("leader", LEADER), component("worker", WORKER), component("r", text)]}, {}
    )
    _, problems = ports.role_annotations(needs, {k: 30000 + i for i, k in enumerate(needs.missing)})
    assert "references[0].from: 'worker.grpc' is a PodScoped allocation" in problems[-2]
    assert "references[1].from: 'leader.nope' names no RoleScoped allocation" in problems[-1]


# -- PodScoped and the pods ---------------------------------------------------------------------


def instance_set(role_ports: str | None) -> dict:
    annotations = {ports.ROLE_PORTS: role_ports} if role_ports else {}
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleInstanceSet",
        "metadata": {
            "name": "g-pd",
            "namespace": "ns",
            "uid": "ris-uid",
            "generation": 1,
            "labels": {naming.LABEL_V2_ROLE_NAME: "pd", naming.LABEL_V2_ROLE_TYPE: "Components"},
            "annotations": annotations,
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {naming.LABEL_V2_ROLE_NAME: "pd"}},
            "roleInstanceTemplate": {"components": roles()["pd"]},
        },
    }


def stored(instance: dict) -> dict:
    """As the API server answers its creation."""
    name = instance["metadata"]["name"]
    return {**instance, "metadata": {**instance["metadata"], "uid": f"uid-{name}", "resourceVersion": "1"}}


ROLE_PORTS = json.dumps({"pd": {"leader": {"grpc": 30100}}, "front": {"router": {"http": 30101}}})


def allocated_instances(allocator: PortAllocator, body: dict, stored: tuple[dict, ...] = ()):
    snapshot = InstanceSetSnapshot(body, stored, tuple(view(i, "g-pd") for i in stored))
    planned, reservation, exhausted = allocator.for_instances(snapshot, plan(snapshot))
    return planned, reservation, exhausted


def test_each_pod_gets_its_own_port_and_every_pod_the_roles_and_the_references():
    allocator = PortAllocator(Store(), ON)
    planned, reservation, exhausted = allocated_instances(allocator, instance_set(ROLE_PORTS))
    assert exhausted is None and sorted(reservation.ports) == [30000, 30001, 30002, 30003]
    instances = [stored(w) for _, w in planned.create]
    assert [json.loads(i["metadata"]["annotations"][ports.POD_PORTS]) for i in instances] == [
        {"g-pd-0-worker-0": {"grpc": 30000}, "g-pd-0-worker-1": {"grpc": 30001}},
        {"g-pd-1-worker-0": {"grpc": 30002}, "g-pd-1-worker-1": {"grpc": 30003}},
    ]
    assert instances[0]["metadata"]["annotations"][ports.ROLE_PORTS] == ROLE_PORTS  # copied from the set
    instance = instances[1]
    leader, worker = instance["spec"]["components"]
    pod = desired_pod(instance, worker, 1)
    want = [
        {"name": "WORKER_PORT", "value": "30003"},
        {"name": "LEADER_PORT", "value": "30100"},
        {"name": "ROUTER_PORT", "value": "30101"},
    ]
    assert pod["spec"]["containers"][0]["env"] == want
    assert pod["spec"]["initContainers"][0]["env"] == want
    assert pod["metadata"]["annotations"]["example.com/port"] == "30003"
    assert desired_pod(instance, leader, 0)["spec"]["containers"][0]["env"] == [
        {"name": "LEADER_PORT", "value": "30100"}
    ]
    # The pod shares its template's parts with its siblings: nothing of the template changed.
    assert worker["template"]["spec"]["containers"][0]["env"] == []


def test_a_container_that_sets_the_variable_itself_keeps_its_value():
    instance = stored(desired_instance(instance_set(ROLE_PORTS), 0, "r1"))
    leader = instance["spec"]["components"][0]
    leader["template"]["spec"]["containers"][0]["env"] = [{"name": "LEADER_PORT", "value": "1"}]
    assert desired_pod(instance, leader, 0)["spec"]["containers"][0]["env"] == [{"name": "LEADER_PORT", "value": "1"}]


def test_stored_instances_keep_their_ports_and_used_ports_are_never_chosen_again():
    store = Store()
    allocator = PortAllocator(store, ON)
    body = instance_set(ROLE_PORTS)
    planned, reservation, _ = allocated_instances(allocator, body)
    first = {w["metadata"]["name"]: w for _, w in planned.create}
    for want in first.values():  # as the API server answers the creation
        store.upsert(
            {**want, "metadata": {**want["metadata"], "uid": want["metadata"]["name"], "resourceVersion": "1"}}
        )
    reservation.release()
    store.upsert({**body, "metadata": {**body["metadata"], "resourceVersion": "1"}})
    # A new revision rewrites both instances in place: the same ports, nothing chosen.
    changed = instance_set(ROLE_PORTS)
    changed["spec"]["roleInstanceTemplate"]["components"][0]["template"]["spec"]["containers"][0]["image"] = "v2"
    changed["spec"]["updateStrategy"] = {"maxUnavailable": 2}
    stored = tuple(store.get(*kinds.ROLE_INSTANCE, "ns", n) for n in first)
    planned, reservation, _ = allocated_instances(allocator, changed, stored)
    assert reservation.ports == [] and len(planned.update) == 2
    for want in planned.update:
        name = want["metadata"]["name"]
        assert (
            want["metadata"]["annotations"][ports.POD_PORTS] == first[name]["metadata"]["annotations"][ports.POD_PORTS]
        )
    # What the cache shows is in use (30100 and 30101 on the set, 30000-30003 on the instances).
    assert allocator.observe_used() == {30000, 30001, 30002, 30003, 30100, 30101}
    assert allocator.reserve(2).ports == [30004, 30005]


def test_a_reservation_holds_its_ports_until_released():
    allocator = PortAllocator(Store(), ON)
    held = allocator.reserve(2)
    assert allocator.reserve(1).ports == [30002]
    held.release()
    assert allocator.reserve(2).ports == [30000, 30001]


def test_concurrent_passes_never_share_a_port():
    allocator = PortAllocator(Store(), PortSettings(True, "random", 30000, 100))

    async def one_pass() -> list[int]:
        await asyncio.sleep(0)
        reservation = allocator.reserve(5)
        await asyncio.sleep(0.01)  # the write in flight
        return reservation.ports

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(one_pass() for _ in range(20)))

    chosen = [p for ports_ in asyncio.run(main()) for p in ports_]
    assert len(chosen) == len(set(chosen)) == 100


def test_an_exhausted_range_holds_back_only_the_instances_that_need_a_port():
    allocator = PortAllocator(Store(), PortSettings(True, "static", 30000, 3))
    planned, reservation, exhausted = allocated_instances(allocator, instance_set(ROLE_PORTS))
    assert planned.create == () and reservation.ports == []
    assert exhausted.startswith("4 port(s) wanted, 3 free")
    no_pod_ports = instance_set(ROLE_PORTS)
    no_pod_ports["spec"]["roleInstanceTemplate"]["components"] = [component("leader", LEADER)]
    planned, _, exhausted = allocated_instances(allocator, no_pod_ports)
    assert exhausted is None and len(planned.create) == 2


def test_with_the_allocator_off_nothing_is_allocated_nor_injected():
    planned, reservation, exhausted = allocated_instances(PortAllocator(Store(), PortSettings()), instance_set(None))
    instance = stored(planned.create[0][1])
    assert ports.POD_PORTS not in (instance["metadata"].get("annotations") or {})
    worker = instance["spec"]["components"][1]
    assert desired_pod(instance, worker, 0)["spec"]["containers"][0]["env"] == []


def test_a_change_of_the_ports_recreates_the_pod_and_an_image_change_alone_does_not():
    instance = stored(desired_instance(instance_set(ROLE_PORTS), 0, "r1"))
    worker = instance["spec"]["components"][1]
    pod = desired_pod(instance, worker, 0)
    image_only = {**worker, "template": {**worker["template"], "spec": {**worker["template"]["spec"]}}}
    image_only["template"]["spec"]["containers"] = [{"name": "main", "env": [], "image": "v2"}]
    assert update_kind(pod, desired_pod(instance, image_only, 0)) == "in-place"
    moved = {**instance, "metadata": {**instance["metadata"], "annotations": {ports.ROLE_PORTS: "{}"}}}
    assert update_kind(pod, desired_pod(moved, image_only, 0)) == "recreate"  # its env changes
    # Pods of components without the directive hash as they always did.
    plain = component("plain", None)
    assert ComponentPlan.of(instance, plain).spec_hash == ComponentPlan.of(moved, plain).spec_hash


def test_a_stored_object_the_cache_missed_keeps_its_ports():
    want = ports.with_pod_ports({"metadata": {"name": "i"}}, {("p", "a"): 30000, ("p", "b"): 30001})
    found = ports.with_pod_ports({"metadata": {"name": "i"}}, {("p", "a"): 31000})
    kept = ports.keep_carried_pod_ports(want, found)
    assert ports.read_pod_ports(kept["metadata"]["annotations"][ports.POD_PORTS]) == {"p": {"a": 31000, "b": 30001}}


def test_hand_edited_annotations_do_not_break_a_reconcile():
    assert ports.read_role_ports("{oops") == {}
    assert ports.read_role_ports(json.dumps({"pd": {"c": {"a": "30000", "b": 70000, "c": 30001}}})) == {
        "pd": {"c": {"c": 30001}}
    }
    assert ports.ports_in({ports.POD_PORTS: json.dumps({"p": {"a": True, "b": 30002}})}) == {30002}


# -- the group's pass ----------------------------------------------------------------------------


def v2_group(components: list[dict], generation: int = 1) -> dict:
    wire = [{k: v for k, v in c.items() if k != "template"} | {"template": c["template"]} for c in components]
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleBasedGroup",
        "metadata": {"name": "g", "namespace": "ns", "uid": "u-g", "generation": generation, "resourceVersion": "1"},
        "spec": {
            "roles": [
                {"name": "pd", "replicas": 1, "customComponentsPattern": {"components": wire}},
                {
                    "name": "front",
                    "replicas": 1,
                    "standalonePattern": {"template": {"spec": {"containers": [{"name": "c"}]}}},
                },
            ]
        },
    }


def group_pass(store: Store, allocator: PortAllocator):
    snapshot = observe(store, "ns", "g", GroupOptions().build)
    role_ports, reservation = allocator.for_group(snapshot, GroupOptions().build)
    decided = group_plan(dataclasses.replace(snapshot, ports=role_ports), GroupOptions(), NOW)
    return decided, reservation


def test_the_group_puts_role_scoped_ports_on_the_set_and_keeps_them_across_passes():
    store = Store()
    store.upsert(v2_group([component("leader", LEADER), component("worker", WORKER)]))
    allocator = PortAllocator(store, ON)
    decided, reservation = group_pass(store, allocator)
    sets = {s["metadata"]["name"]: s for s in decided.applied("RoleInstanceSet")}
    ris = sets["g-pd"]
    assert json.loads(ris["metadata"]["annotations"][ports.ROLE_PORTS]) == {"pd": {"leader": {"grpc": 30000}}}
    assert ports.ROLE_PORTS not in sets["g-front"]["metadata"]["annotations"]  # no directive there
    assert reservation.ports == [30000]
    # The worker's reference to another role's port names nothing: said once, the rest works.
    (note,) = [n for n in decided.notes if n.reason == "InvalidPortAllocator"]
    assert "references[1].from: 'front.router.http' names no RoleScoped allocation" in note.message
    store.upsert({**ris, "metadata": {**ris["metadata"], "uid": "u-ris", "resourceVersion": "2"}})
    reservation.release()
    # Another operator process (a restart): the used set comes from what the cache shows.
    again, reservation = group_pass(store, PortAllocator(store, ON))
    assert reservation.ports == []
    assert "g-pd" not in [s["metadata"]["name"] for s in again.applied("RoleInstanceSet")]  # nothing to write


def test_without_the_allocator_the_set_carries_no_ports():
    store = Store()
    store.upsert(v2_group([component("leader", LEADER)]))
    decided, _ = group_pass(store, PortAllocator(store, PortSettings()))
    ris = next(s for s in decided.applied("RoleInstanceSet") if s["metadata"]["name"] == "g-pd")
    assert ports.ROLE_PORTS not in ris["metadata"]["annotations"]
