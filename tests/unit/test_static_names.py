"""Every name the code uses is defined: pyflakes over all our Python.

A name lost in a refactor (an import dropped while a call stayed) passes every unit test that
does not reach that line, and then fails every reconcile on a cluster."""

from pathlib import Path

import pytest
from pyflakes.api import checkRecursive
from pyflakes.reporter import Reporter

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


def test_pyflakes_finds_nothing(tmp_path):
    warnings, errors = (tmp_path / "warnings").open("w+"), (tmp_path / "errors").open("w+")
    count = checkRecursive(
        [str(REPO / d) for d in ("rbg_operator", "localcluster", "benchmarks", "tests")], Reporter(warnings, errors)
    )
    warnings.seek(0)
    errors.seek(0)
    assert count == 0, warnings.read() + errors.read()
