"""The attribution benchmark's projection part runs (its --quick core) and its figures are sane."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trak")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_attribution.py"


@pytest.mark.slow
def test_bench_projection_quick():
    spec = importlib.util.spec_from_file_location("bench_attribution", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows: list[dict] = []
    mod.part_projection(argparse.Namespace(quick=True), rows)
    by = {r["projector"]: r for r in rows}
    assert set(by) == {"traker BasicProjector", "tribute countsketch"}
    # same inner-product quality (no timing assertion: the speed is reported, not tested)
    assert by["tribute countsketch"]["inner_product_error"] < 1.5 * by["traker BasicProjector"]["inner_product_error"]
