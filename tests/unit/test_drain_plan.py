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
