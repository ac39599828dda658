"""Free-form patches for the tests of the patch-depth limit."""


def nested_patch(depth: int) -> dict:
    """A patch nested `depth` levels deep."""
    patch: dict = {}
    node = patch
    for _ in range(depth - 1):
        node["n"] = {}
        node = node["n"]
    return patch
