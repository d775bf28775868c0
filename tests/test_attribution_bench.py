"""The attribution benchmark's projection part runs (its --quick core) and its figures are sane."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trak")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_attribution.py"


def _bench():
    """The benchmark script as a module, torch on one thread (as its main() sets)."""
    spec = importlib.util.spec_from_file_location("bench_attribution", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.torch.set_num_threads(1)
    return mod


@pytest.mark.slow
def test_bench_projection_quick():
    mod = _bench()
    rows: list[dict] = []
    mod.part_projection(argparse.Namespace(quick=True), rows)
    by = {r["projector"]: r for r in rows}
    assert set(by) == {"traker BasicProjector", "tribute countsketch"}
    # same inner-product quality (no timing assertion: the speed is reported, not tested)
    assert by["tribute countsketch"]["inner_product_error"] < 1.5 * by["traker BasicProjector"]["inner_product_error"]


@pytest.mark.slow
def test_bench_classifier_quick():
    """The classifier part at --quick size: every method and anchor reports an LDS; tribute's own
    TRAK featurisation scores exactly as the same TRAK through traker's TRAKer; CG = explicit."""
    mod = _bench()
    rows: list[dict] = []
    mod.part_classifier(argparse.Namespace(quick=True), rows)
    by = {r["method"]: r for r in rows}
    assert not [r for r in rows if "error" in r], rows
    for nk in (1, 5):
        assert by[f"tribute trak countsketch ({nk} ckpt)"]["lds"] == by[f"tribute trak via TRAKer, countsketch ({nk} ckpt)"]["lds"]
        assert f"anchor traker TRAKer ({nk} ckpt)" in by
    assert by["tribute influence cg GN"]["lds"] == pytest.approx(by["tribute influence explicit GN"]["lds"], abs=1e-3)
    assert by["tribute influence explicit GN"]["lds"] > by["tribute gradcos"]["lds"]


@pytest.mark.slow
def test_bench_trak_wide_quick():
    """The wide-MLP TRAK part at --quick size: tribute's TRAK (features in memory and on disk: the
    same scores) and traker's TRAKer report LDS and a median time over the rounds."""
    mod = _bench()
    rows: list[dict] = []
    mod.part_trak_wide(argparse.Namespace(quick=True), rows)
    by = {r["method"]: r for r in rows}
    for nk in (1, 3):
        ours = by[f"wide tribute trak countsketch ({nk} ckpt)"]
        assert ours["lds"] == by[f"wide tribute trak countsketch, features on disk ({nk} ckpt)"]["lds"]
        assert f"wide anchor traker TRAKer ({nk} ckpt)" in by
        assert ours["repeats"] == 3 and ours["seconds_min"] <= ours["seconds"]
