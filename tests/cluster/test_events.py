"""The Event recorder against the real API server: Events it accepts are posted, a storm beyond
its backlog is dropped instead of held in memory, and one noisy object cannot crowd out the others."""

from __future__ import annotations

import asyncio

from rbg_operator.events import EventRecorder, SpamFilter
from rbg_operator.kube import Kube
from tests.support.kubectl import Kubectl


def test_a_storm_beyond_the_backlog_is_dropped_and_the_rest_posted(kubeconfig: str, kubectl: Kubectl, namespace: str):
    kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "decided-on"}}, namespace)
    subject = kubectl.get("configmap", "decided-on", namespace)

    async def storm() -> int:
        kube = await Kube.connect(kubeconfig_file=kubeconfig)
        recorder = EventRecorder(kube, backlog=40, spam=SpamFilter(burst=1000))  # the backlog alone
        try:
            # emit() never yields to the loop, so the posters start only after all 100 were decided.
            for i in range(100):
                await recorder.emit(subject, "Normal", "Decided", f"decision {i}")
            await asyncio.wait_for(recorder.flush(), 60)
            return recorder.dropped
        finally:
            await recorder.close()
            await kube.close()

    dropped = asyncio.run(storm())
    posted = [e for e in kubectl.get("events", namespace=namespace) if e["reason"] == "Decided"]
    assert dropped == 60
    assert sorted(int(e["message"].split()[1]) for e in posted) == list(range(40)), (
        "the first 40 are posted, each once; the 60 beyond the backlog are not"
    )
    assert all(e["involvedObject"]["uid"] == subject["metadata"]["uid"] for e in posted)


def test_one_noisy_object_posts_its_burst_and_the_others_still_post(kubeconfig: str, kubectl: Kubectl, namespace: str):
    for name in ("noisy", "quiet"):
        kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}, namespace)
    noisy, quiet = (kubectl.get("configmap", name, namespace) for name in ("noisy", "quiet"))

    async def storm() -> int:
        kube = await Kube.connect(kubeconfig_file=kubeconfig)
        recorder = EventRecorder(kube, backlog=40)
        try:
            for i in range(100):  # a tenant's group emitting an Event per generation, in a loop
                await recorder.emit(noisy, "Warning", "Noise", f"noise {i}")
            await recorder.emit(quiet, "Normal", "Decided", "the other tenant's decision")
            await asyncio.wait_for(recorder.flush(), 60)
            return recorder.filtered
        finally:
            await recorder.close()
            await kube.close()

    filtered = asyncio.run(storm())
    events = kubectl.get("events", namespace=namespace)
    assert filtered == 75
    assert sorted(int(e["message"].split()[1]) for e in events if e["reason"] == "Noise") == list(range(25))
    assert [e["involvedObject"]["name"] for e in events if e["reason"] == "Decided"] == ["quiet"]
