"""Drain-aware removal (docs/drain.md), its pure parts: the group annotation and its admission
messages, when a pod may go, a drain's step from what the router and the pod answered, when a pod
rejoins the router, the group's Draining condition and the plan held back."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest

from rbg_operator import naming
from rbg_operator.api import conversion, drain
from rbg_operator.controller import drain_plan
from rbg_operator.controller.drain_plan import DrainState, Finish, Seen, Wait

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 5, 12, 0, 0, tzinfo=datetime.UTC)
CONFIG = drain.parse(json.dumps({"router": "router", "roles": ["prefill", "decode"], "timeoutSeconds": 30}))[0]


def pod(name="g-decode-0", role="decode", ready=True, revision="r1", state=None, ip="10.0.0.5", restarts=0, image="v1"):
    annotations = {drain_plan.STATE_ANNOTATION: state.text()} if state else {}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {naming.LABEL_ROLE: role, naming.LABEL_CONTROLLER_REVISION: revision},
            "annotations": annotations,
            "resourceVersion": "7",
        },
        "spec": {"hostname": name, "subdomain": f"s-g-{role}", "containers": [{"name": "s", "image": image}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "s", "restartCount": restarts}],
        },
    }


def test_the_annotation_defaults_and_worker_types():
    config = drain.parse(json.dumps({"router": "router", "roles": ["prefill", "decode", "plain"]}))[0]
    assert config.router_port == 8000 and config.timeout_seconds == drain.DEFAULT_TIMEOUT_SECONDS
    assert config.roles["prefill"] == drain.WorkerRole("prefill", "prefill", 8000, 8998)
    assert config.roles["decode"] == drain.WorkerRole("decode", "decode", 8000, None)
    assert config.roles["plain"].worker_type == "regular"
    explicit = {"router": "r", "routerPort": 30000, "roles": {"p": {"workerType": "prefill", "bootstrapPort": 9000}}}
    assert drain.parse(json.dumps(explicit))[0].roles["p"] == drain.WorkerRole("p", "prefill", 8000, 9000)


@pytest.mark.parametrize(
    "value, wanted",
    [
        ("{", "not JSON"),
        ("[]", "must be a JSON object"),
        ('{"roles": ["decode"]}', "router must name the router role"),
        ('{"router": "nope", "roles": ["decode"]}', "'nope', which is not a role of the group"),
        ('{"router": "router", "roles": ["missing"]}', "roles.missing: 'missing' is not a role"),
        ('{"router": "router", "roles": ["router"]}', "cannot be one of its own workers"),
        ('{"router": "router", "roles": []}', "roles must name at least one worker role"),
        ('{"router": "router", "roles": ["decode"], "timeoutSeconds": 0}', "timeoutSeconds must be whole seconds"),
        ('{"router": "router", "roles": ["decode"], "timeoutSeconds": true}', "timeoutSeconds must be whole seconds"),
        ('{"router": "router", "roles": ["decode"], "routerPort": 70000}', "routerPort must be a port number"),
        ('{"router": "router", "roles": {"decode": {"workerType": "x"}}}', "roles.decode.workerType must be one of"),
        ('{"router": "router", "roles": {"decode": {"bootstrapPort": 1}}}', "bootstrapPort is for prefill workers"),
        ('{"router": "router", "roles": ["decode"], "speed": 1}', "unknown key(s) speed"),
    ],
)
def test_admission_names_the_annotation_and_the_problem(value, wanted):
    spec = {"roles": [{"name": n} for n in ("router", "prefill", "decode")]}
    problems = conversion.kept_annotation_problems({drain.ANNOTATION: value}, spec, group_set=False)
    assert len(problems) >= 1 and all(p.startswith(f"metadata.annotations[{drain.ANNOTATION}]: ") for p in problems)
    assert any(wanted in p for p in problems), problems


def test_admission_accepts_a_good_annotation_and_no_annotation():
    spec = {"roles": [{"name": n} for n in ("router", "decode")]}
    good = {drain.ANNOTATION: '{"router": "router", "roles": ["decode"]}'}
    assert conversion.kept_annotation_problems(good, spec, group_set=False) == []
    assert conversion.kept_annotation_problems({}, spec, group_set=False) == []


def test_admission_refuses_a_worker_role_whose_own_controller_deletes_its_pods():
    sts = {"rbg.workloads.x-k8s.io/role-workload-type": "apps/v1/StatefulSet"}
    spec = {"roles": [{"name": "router", "annotations": sts}, {"name": "decode", "annotations": sts}]}
    value = {drain.ANNOTATION: '{"router": "router", "roles": ["decode"]}'}
    (problem,) = conversion.kept_annotation_problems(value, spec, group_set=False)
    assert problem.startswith(f"metadata.annotations[{drain.ANNOTATION}]: roles.decode: ")
    assert "runs as a StatefulSet" in problem and "only RoleInstanceSet roles are drained" in problem
    # The router may run as anything; a v1alpha1-shaped role names its workload itself.
    spec["roles"][1] = {
        "name": "decode",
        "workload": {"apiVersion": "workloads.x-k8s.io/v1alpha2", "kind": "RoleInstanceSet"},
    }
    assert conversion.kept_annotation_problems(value, spec, group_set=False) == []


def test_may_go_only_once_drained_for_the_revision_it_runs():
    assert not drain_plan.may_go(pod(), CONFIG)  # serving, no drain yet
    assert drain_plan.may_go(pod(), None)  # the group does not drain
    assert drain_plan.may_go(pod(role="router"), CONFIG)  # not a worker role
    assert drain_plan.may_go(pod(ready=False), CONFIG)  # serves nothing
    draining = drain_plan.start(pod(), drain_plan.BY_POD, NOW)
    assert not drain_plan.may_go(pod(state=draining), CONFIG)
    assert not drain_plan.may_go(pod(ready=False, state=draining), CONFIG)  # a drain under way is finished first
    done = dataclasses.replace(draining, phase=drain_plan.DRAINED, outcome="Drained")
    assert drain_plan.may_go(pod(state=done), CONFIG)
    # Drained for r1 but running r2 (updated in place since), serving: the next change drains again.
    assert not drain_plan.may_go(pod(state=done, revision="r2"), CONFIG)


def test_a_drain_finishes_once_out_of_every_router_and_idle():
    state = drain_plan.start(pod(), drain_plan.BY_POD, NOW - datetime.timedelta(seconds=3))
    finished = drain_plan.decide(state, Seen(2, 2, in_flight=0, url="http://x:8000"), 30, NOW)
    assert isinstance(finished, Finish) and finished.state.phase == drain_plan.DRAINED
    assert finished.state.outcome == "Drained" and finished.seconds == 3 and finished.state.url == "http://x:8000"
    # One router still lists it, or requests are in flight: wait, saying why.
    waiting = drain_plan.decide(state, Seen(2, 1, in_flight=0), 30, NOW)
    assert isinstance(waiting, Wait) and waiting.state.why == "1 router(s) still list the pod"
    waiting = drain_plan.decide(state, Seen(1, 1, in_flight=3), 30, NOW)
    assert isinstance(waiting, Wait) and waiting.state.why == "3 request(s) in flight"
    # A pod that stopped answering holds no request that can finish.
    assert isinstance(drain_plan.decide(state, Seen(1, 1, load_error="refused"), 30, NOW), Finish)


def test_a_drain_is_cut_short_at_the_timeout_from_its_persisted_start():
    state = drain_plan.start(pod(), drain_plan.BY_POD, NOW - datetime.timedelta(seconds=31))
    cut = drain_plan.decide(state, Seen(1, 1, in_flight=2), 30, NOW)
    assert isinstance(cut, Finish) and cut.state.outcome == "TimedOut" and cut.state.in_flight == 2
    down = drain_plan.decide(state, Seen(1, 0, router_errors=("http://r: refused",)), 30, NOW)
    assert isinstance(down, Finish) and down.state.outcome == "RouterUnreachable"
    early = drain_plan.decide(dataclasses.replace(state, started=drain_plan.timestamps.stamp(NOW)), Seen(0, 0), 30, NOW)
    assert isinstance(early, Wait) and early.state.why.startswith("router unreachable: no router pod")


def test_the_state_round_trips_through_the_pod_annotation():
    state = drain_plan.start(pod(restarts=4), drain_plan.BY_INSTANCE, NOW)
    assert DrainState.of(pod(state=state)) == state
    assert state.restarts == 4 and state.images == "s=v1" and state.by == "instance"
    broken = pod()
    broken["metadata"]["annotations"][drain_plan.STATE_ANNOTATION] = "{not json"
    assert DrainState.of(broken) is None


def test_rejoin_waits_for_ready_and_for_the_restart_on_the_new_image():
    assert drain_plan.needs_join(pod(), CONFIG)  # new, Ready
    assert not drain_plan.needs_join(pod(ready=False), CONFIG)
    joined = DrainState(drain_plan.JOINED, revision="r1")
    assert not drain_plan.needs_join(pod(state=joined), CONFIG)
    done = DrainState(drain_plan.DRAINED, revision="r1", restarts=0, images="s=v1", outcome="Drained")
    assert not drain_plan.needs_join(pod(state=done), CONFIG)  # still the drained revision: it is going
    # Updated in place to v2: Ready alone may still be the old container; its restart says it runs v2.
    assert not drain_plan.needs_join(pod(state=done, revision="r2", image="v2"), CONFIG)
    assert drain_plan.needs_join(pod(state=done, revision="r2", image="v2", restarts=1), CONFIG)
    # An update that changed no image restarts nothing.
    assert drain_plan.needs_join(pod(state=done, revision="r2"), CONFIG)


def test_a_drain_no_longer_wanted_is_cancelled_by_its_owner_only():
    draining = pod(state=drain_plan.start(pod(), drain_plan.BY_INSTANCE, NOW))
    assert drain_plan.cancelled(draining, CONFIG, drain_plan.BY_INSTANCE, going=[])
    assert not drain_plan.cancelled(draining, CONFIG, drain_plan.BY_INSTANCE, going=["g-decode-0"])
    assert not drain_plan.cancelled(draining, CONFIG, drain_plan.BY_POD, going=[])


@pytest.mark.parametrize(
    "url, wanted",
    [
        ("http://10.0.0.5:8000", True),
        ("http://g-decode-0.s-g-decode:8000", True),
        ("http://g-decode-0.s-g-decode.ns.svc.cluster.local:8000", True),
        ("http://g-decode-0:8000", True),
        ("http://g-decode-1.s-g-decode:8000", False),
        ("http://g-decode-0.other:8000", False),
        ("http://10.0.0.50:8000", False),
    ],
)
def test_a_router_worker_matches_its_pod_by_address_or_dns_name(url, wanted):
    assert drain_plan.matches(url, pod()) is wanted


def test_the_group_condition_names_draining_pods_and_why():
    state = dataclasses.replace(
        drain_plan.start(pod(), drain_plan.BY_POD, NOW - datetime.timedelta(seconds=12)),
        why="router unreachable: http://r: refused",
    )
    [condition] = drain_plan.draining_condition([pod(state=state), pod(name="other")], None, NOW)
    assert condition["status"] == "True" and condition["reason"] == "RouterUnreachable"
    assert condition["message"] == "role decode: draining g-decode-0 for 12s (router unreachable: http://r: refused)"
    assert drain_plan.draining_condition([pod()], None, NOW) == []
    [over] = drain_plan.draining_condition([pod()], [condition], NOW)
    assert over["status"] == "False"


def test_held_back_keeps_only_actions_on_pods_that_may_go():
    @dataclasses.dataclass(frozen=True)
    class Plan:
        actions: tuple
        look_again: tuple

    planned = Plan(("create", ("delete", "a"), ("delete", "b")), (5.0,))

    def removes(action):
        return action[1] if isinstance(action, tuple) else None

    held = drain_plan.held_back(planned, removes, frozenset({"b"}), 1.0)
    assert held.actions == ("create", ("delete", "b")) and held.look_again == (5.0, 1.0)


def router_pod(ready_at: datetime.datetime | None, name="g-router-0") -> dict:
    found = pod(name, role="router", ready=ready_at is not None)
    if ready_at is not None:
        found["status"]["conditions"][0]["lastTransitionTime"] = ready_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return found


def test_a_new_pod_joins_only_once_every_router_has_been_ready_long_enough_to_list_its_own_servers():
    early, late = NOW - datetime.timedelta(seconds=60), NOW - datetime.timedelta(seconds=5)
    since = drain_plan.routers_ready_since([router_pod(early), router_pod(late, "g-router-1"), pod()], CONFIG)
    assert since == late  # the last router to become Ready; worker pods do not count
    assert drain_plan.routers_ready_since([router_pod(early), router_pod(None, "g-router-1")], CONFIG) is None
    new = pod()
    assert drain_plan.join_wait(new, since, NOW) == drain_plan.ROUTER_SETTLE_SECONDS - 5
    assert drain_plan.join_wait(new, early, NOW) is None
    assert drain_plan.join_wait(new, None, NOW) == drain_plan.JOIN_RETRY_SECONDS
    # A drained pod back on a new revision rejoins at once: the routers have long had it.
    drained = pod(revision="r2", state=DrainState(drain_plan.DRAINED, revision="r1", images="s=v1"))
    assert drain_plan.join_wait(drained, since, NOW) is None


def test_a_set_drains_the_pods_of_its_live_instances_and_leaves_those_of_deleted_ones_alone():
    """Pods of an instance already deleted (its pods not yet) are neither drained again nor put
    back into the router as pods that stay."""
    from rbg_operator import kinds
    from rbg_operator.controller import instanceset
    from rbg_operator.controller.store import Store

    store = Store()
    labels = {naming.LABEL_GROUP_NAME: "g", naming.LABEL_ROLE: "decode"}
    directive = json.dumps({"router": "router", "roles": ["decode"]})
    store.upsert(
        {
            "apiVersion": kinds.ROLE_BASED_GROUP[0],
            "kind": kinds.ROLE_BASED_GROUP[1],
            "metadata": {"name": "g", "namespace": "ns", "uid": "g1", "annotations": {drain.ANNOTATION: directive}},
        }
    )
    set_meta = {"name": "g-decode", "namespace": "ns", "uid": "s1", "labels": labels}
    store.upsert({"apiVersion": instanceset.INSTANCE_SET[0], "kind": instanceset.INSTANCE_SET[1], "metadata": set_meta})
    owner = [{"controller": True, "uid": "s1", "kind": "RoleInstanceSet", "name": "g-decode"}]
    for name, deleting in (("g-decode-0", False), ("g-decode-1", True)):
        meta = {"name": name, "namespace": "ns", "uid": f"i-{name}", "labels": labels, "ownerReferences": owner}
        if deleting:
            meta["deletionTimestamp"] = "2026-12-05T12:00:00Z"
        store.upsert({"apiVersion": instanceset.INSTANCE[0], "kind": instanceset.INSTANCE[1], "metadata": meta})
    for name in ("g-decode-0", "g-decode-1", "g-decode-2"):  # the last one's instance is gone
        found = pod(name)
        found.update(apiVersion="v1", kind="Pod")
        found["metadata"].update(uid=f"p-{name}", labels={**labels, naming.LABEL_V2_INSTANCE_NAME: name})
        store.upsert(found)
    snapshot = instanceset.observe(store, "ns", "g-decode")
    assert snapshot.drain is not None
    assert {i: [p["metadata"]["name"] for p in found] for i, found in snapshot.pods.items()} == {
        "g-decode-0": ["g-decode-0"]
    }
