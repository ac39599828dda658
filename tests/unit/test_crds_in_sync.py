"""crds/ must be exactly what the generator makes from the models (run `make crds`)."""

import json
from pathlib import Path

import pytest

from localcluster.components import kubernetes_openapi
from rbg_operator.api import crdgen

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("directory", [REPO / "crds", REPO / "charts" / "ack-rbgs" / "crds"])
def test_crds_match_the_models(directory: Path):
    generated = crdgen.render([json.loads(kubernetes_openapi().read_text())])
    on_disk = {p.name: p.read_text() for p in directory.glob("*.yaml")}
    assert set(on_disk) == set(generated), "run `make crds`"
    for name, text in generated.items():
        assert on_disk[name] == text, f"{name} is stale: run `make crds`"
