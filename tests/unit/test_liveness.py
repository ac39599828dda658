import time
import urllib.error
import urllib.request

from rbg_operator.liveness import Liveness
from tests.support.operator import free_port


class Watch:
    def __init__(self, behind_since):
        self.behind_since = behind_since

    def __repr__(self) -> str:
        return "reflector of RoleBasedGroup"


def test_healthy_while_the_loop_ticks_and_every_watch_has_a_recent_list():
    liveness = Liveness(
        stall_seconds=20, behind_seconds=300, last_tick=1000, started=True, reflectors=[Watch(None), Watch(900)]
    )
    assert liveness.problems(1010) == []


def test_a_stalled_loop_or_a_watch_long_without_a_list_is_named():
    liveness = Liveness(
        stall_seconds=20, behind_seconds=300, last_tick=1000, started=True, reflectors=[Watch(None), Watch(600)]
    )
    assert liveness.problems(1025) == [
        "the event loop has not run for 25s (limit 20s)",
        "reflector of RoleBasedGroup has had no complete list for 425s (limit 300s)",
    ]


def test_the_endpoint_answers_from_its_own_thread_even_when_the_loop_is_stuck():
    liveness = Liveness(stall_seconds=20, last_tick=0.0, started=True)  # "ticked" at boot: long ago
    port = free_port()
    server = liveness.serve("127.0.0.1", port)
    try:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            raise AssertionError("a stuck loop answered 200")
        except urllib.error.HTTPError as error:
            assert error.code == 503 and b"event loop has not run" in error.read()
        liveness.last_tick = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200 and answer.read() == b"ok\n"
    finally:
        server.shutdown()


def test_not_healthy_before_the_start_up_is_done():
    assert Liveness(last_tick=1000).problems(1000) == ["starting"]
