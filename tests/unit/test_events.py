"""The per-object Event spam filter (client-go's burst of 25, then one every 300 s)."""

from rbg_operator.events import SpamFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_object_gets_its_burst_then_one_event_per_refill_period():
    clock = Clock()
    spam = SpamFilter(burst=3, refill_seconds=300, clock=clock)
    assert [spam.allow(("g",)) for _ in range(5)] == [True, True, True, False, False]
    clock.now = 299
    assert not spam.allow(("g",))
    clock.now = 301
    assert spam.allow(("g",)) and not spam.allow(("g",))
    assert spam.allow(("other",)), "each object has its own bucket"


def test_a_quiet_object_refills_to_the_burst_and_no_further():
    clock = Clock()
    spam = SpamFilter(burst=2, refill_seconds=10, clock=clock)
    spam.allow(("g",))
    clock.now = 10_000
    assert [spam.allow(("g",)) for _ in range(3)] == [True, True, False]


def test_only_the_most_recent_objects_are_remembered():
    spam = SpamFilter(burst=1, objects=2, clock=Clock())
    for key in ("a", "b", "c"):
        assert spam.allow((key,))
    assert spam.allow(("a",)), "a was forgotten (the oldest of three), so it starts with a full bucket"
    assert not spam.allow(("c",))
