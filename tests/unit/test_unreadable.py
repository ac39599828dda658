"""One object nested deeper than the decoder goes must not cost a whole LIST page or watch: the
page is decoded with its too-deep parts left raw (bounded_json), and only the bad item is left
out, named."""

import orjson
import pytest

from rbg_operator.kube import Unreadable, decode_list_page, decode_watch_line


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"{}" + b"}" * levels


def item(name: str, patch: bytes = b"{}") -> bytes:
    # Strings with brackets, quotes and escapes must not confuse the scan.
    return (
        b'{"metadata":{"name":"'
        + name.encode()
        + b'","namespace":"ns","uid":"u-'
        + name.encode()
        + b'","resourceVersion":"7","annotations":{"x":"}]\\"{[\\\\"}},"spec":{"templatePatch":'
        + patch
        + b"}}"
    )


def page(*items: bytes) -> bytes:
    return (
        b'{"kind":"List","metadata":{"resourceVersion":"42","continue":"c"},\n "items": [' + b" ,\n".join(items) + b"]}"
    )


def test_a_page_with_one_item_too_deep_to_decode_keeps_every_other_item():
    raw = page(item("before"), item("deep", deep(1100)), item("after"))
    with pytest.raises(ValueError):
        orjson.loads(raw)
    decoded = decode_list_page(raw)
    assert decoded["metadata"] == {"resourceVersion": "42", "continue": "c"}
    before, bad, after = decoded["items"]
    assert before["metadata"]["annotations"] == {"x": '}]"{[\\'} and after["metadata"]["name"] == "after"
    assert isinstance(bad, Unreadable)
    assert bad.metadata["name"] == "deep" and bad.metadata["uid"] == "u-deep"
    assert bad.error.startswith("spec.templatePatch.a.a.") and "deeper than" in bad.error


def test_a_page_that_decodes_is_decoded_as_it_is():
    raw = page(item("a"))
    assert decode_list_page(raw) == orjson.loads(raw)
    assert decode_list_page(b'{"metadata":{},"items":[]}') == {"metadata": {}, "items": []}


def test_a_broken_answer_still_fails_whole():
    with pytest.raises(ValueError):
        decode_list_page(page(item("a"))[:-5])


def test_a_watch_event_too_deep_to_decode_names_its_object():
    line = b'{"type":"MODIFIED","object":' + item("deep", deep(1100)) + b"}\n"
    event = decode_watch_line(line)
    assert event["type"] == "MODIFIED" and isinstance(event["object"], Unreadable)
    assert event["object"].metadata["resourceVersion"] == "7"
    assert decode_watch_line(b'{"type":"ADDED","object":' + item("x") + b"}")["object"]["metadata"]["name"] == "x"


def test_an_item_deeper_than_the_store_keeps_is_unreadable_at_any_depth():
    # 300 levels decode in orjson but cannot be cached (it encodes at most 255); 50,000 would
    # overflow any recursive decoder.
    raw = page(item("a"), item("store-deep", deep(300)), item("very-deep", deep(50_000)))
    a, store_deep, very_deep = decode_list_page(raw)["items"]
    assert a["metadata"]["name"] == "a"
    assert [bad.metadata["name"] for bad in (store_deep, very_deep) if isinstance(bad, Unreadable)] == [
        "store-deep",
        "very-deep",
    ]


def test_an_object_whose_metadata_is_too_deep_too_is_still_named():
    """The API server's managedFields follow the shape of the deep field they record."""
    raw = (
        b'{"metadata":{"name":"deep","namespace":"ns","uid":"u","managedFields":[{"fieldsV1":'
        + deep(1100)
        + b'}],"labels":{"k":"v"}},"spec":'
        + deep(1100)
        + b"}"
    )
    assert decode_list_page(page(raw))["items"][0].metadata == {
        "name": "deep",
        "namespace": "ns",
        "uid": "u",
        "labels": {"k": "v"},
    }
