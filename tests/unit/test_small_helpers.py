"""The helpers many modules share: condition checks, API-server timestamps, JSON digests."""

import datetime

import pytest

from rbg_operator import hashing, timestamps
from rbg_operator.controller import conditions

pytestmark = pytest.mark.unit


def test_a_condition_counts_only_when_its_status_is_the_string_true():
    listed = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]
    assert conditions.is_true(listed, "PodScheduled") and not conditions.is_true(listed, "Ready")
    assert not conditions.is_true(None, "Ready") and not conditions.is_true([], "Ready")
    assert conditions.is_ready({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert not conditions.is_ready({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
    assert not conditions.is_ready({"metadata": {}}) and not conditions.is_ready({"status": None})


def test_timestamps_read_back_what_they_write_and_what_the_api_server_writes():
    moment = datetime.datetime(2026, 12, 5, 7, 30, 1, 250000, tzinfo=datetime.UTC)
    assert timestamps.stamp(moment) == "2026-12-05T07:30:01Z"
    assert timestamps.parse(timestamps.stamp(moment)) == moment.replace(microsecond=0)
    assert timestamps.micro_stamp(moment) == "2026-12-05T07:30:01.250000Z"
    assert timestamps.parse(timestamps.micro_stamp(moment)) == moment
    assert timestamps.parse("2026-12-05T08:30:01+01:00") == moment.replace(microsecond=0)
    assert timestamps.parse(timestamps.now()).tzinfo is not None


def test_json_digests_ignore_key_order_and_keep_the_text_labels_were_made_with():
    assert hashing.json_digest({"a": 1, "b": [1, 2]}) == hashing.json_digest({"b": [1, 2], "a": 1})
    assert hashing.json_digest({"a": 1}) != hashing.json_digest({"a": 2})
    # Pinned: a different text would change every revision label and applied-config annotation.
    assert hashing.json_digest({"b": 1, "a": [1, 2]}) == "3813f9409e"
    assert hashing.json_digest({"b": 1, "a": [1, 2]}, 16, compact=True) == "94a786c3662bc7be"
