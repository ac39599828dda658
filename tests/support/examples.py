"""The shipped examples, made applicable in a test namespace."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def model_volume(namespace: str) -> list[dict]:
    """examples/llm-model.yaml with its PersistentVolume (cluster-scoped, bound once) renamed for
    this namespace, so every test gets its own volume for the claim `llm-model`."""
    tag = hashlib.sha256(namespace.encode()).hexdigest()[:8]
    docs = list(yaml.safe_load_all((EXAMPLES / "llm-model.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "PersistentVolume":
            doc["metadata"]["name"] = f"llm-model-{tag}"
            doc["metadata"]["labels"]["model"] = f"qwen3-32b-{tag}"
        else:
            doc["spec"]["selector"]["matchLabels"]["model"] = f"qwen3-32b-{tag}"
    return docs


def sglang_example() -> list[dict]:
    return list(yaml.safe_load_all((EXAMPLES / "sglang_pd.yaml").read_text()))
