"""LDS against hand-computable cases, and the roll-up arithmetic of scores into shares."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tribute.attribution import holder_shares, lds, rollup, subset_masks
from tribute.attribution.lds import evaluate_lds, rankdata, spearman
from tribute.core.errors import ConfigError, InputError


def test_rankdata_and_spearman_by_hand():
    assert rankdata(np.array([10, 30, 20, 20])).tolist() == [1.0, 4.0, 2.5, 2.5]
    assert spearman(np.array([1, 2, 3]), np.array([10, 20, 30])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    # ranks (1,2,3,4) vs (2,1,4,3): d^2 = 4 -> 1 - 6*4/(4*15) = 0.6
    assert spearman(np.array([1, 2, 3, 4]), np.array([2, 1, 4, 3])) == pytest.approx(0.6)


def test_lds_hand_computable():
    # 2 queries, 3 train examples, 4 subsets
    scores = np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 1.0]])
    masks = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=bool)
    # predicted sums: q0 -> 3, 5, 6, 1 ; q1 -> 0, 1, 1, 0
    outputs = np.array([[0.3, 0.1], [0.5, 0.9], [0.6, 0.8], [0.1, 0.2]])
    res = lds(scores, masks, outputs)
    # q0: ranks equal -> 1. q1: pred ranks (1.5, 3.5, 3.5, 1.5) vs outputs ranks (1, 4, 3, 2)
    r1 = spearman(np.array([0, 1, 1, 0.0]), np.array([0.1, 0.9, 0.8, 0.2]))
    assert r1 == pytest.approx(0.8944271909999159)
    assert res.per_query.tolist() == pytest.approx([1.0, r1])
    assert res.mean == pytest.approx((1 + r1) / 2)


def test_evaluate_lds_with_a_linear_datamodel_is_one():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(3, 20))
    retrains = []

    def train_fn(idx, seed):
        retrains.append(seed)
        return idx

    def measure(idx):
        return true[:, idx].sum(1)                 # the output is exactly linear in inclusion

    res = evaluate_lds(true, train_fn, measure, n_subsets=12, seeds=2)
    assert res.mean == pytest.approx(1.0)
    assert len(retrains) == 24 and len(set(retrains)) == 24
    assert evaluate_lds(-true, train_fn, measure, n_subsets=12).mean == pytest.approx(-1.0)


def test_subset_masks_are_halves_and_seeded():
    m = subset_masks(10, 5, 0.5, seed=3)
    assert m.shape == (5, 10) and (m.sum(1) == 5).all()
    assert (m == subset_masks(10, 5, 0.5, seed=3)).all()
    with pytest.raises(ConfigError, match="fraction"):
        subset_masks(10, 5, 1.0)
    with pytest.raises(ConfigError, match="n_subsets"):
        subset_masks(10, 1)


def _exposure(rows):
    return pa.table({"work_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                     "weight": pa.array([r[2] for r in rows], pa.float64()), "holder_id": [r[3] for r in rows]})


def _by(table):
    return {(r["output_id"], r["work_id"]): r for r in table.to_pylist()}


def test_rollup_arithmetic():
    # docs d0..d3; d0 carries w1 fully, d1 half w1 half w2, d2 carries nothing, d3 w3 (negative score)
    expo = _exposure([("w1", "d0", 1.0, "h1"), ("w1", "d1", 0.5, "h1"), ("w2", "d1", 0.5, "h2"),
                      ("w3", "d3", 1.0, "h2"), ("w9", "elsewhere", 1.0, "h9")])
    scores = np.array([[4.0, 2.0, 2.0, -5.0],
                       [-1.0, -1.0, 0.0, -2.0]])
    t = rollup(scores, ["d0", "d1", "d2", "d3"], ["o1", "o2"], expo)
    rows = _by(t)
    # o1: positive total = 8; w1 earns 4 + 0.5*2 = 5; w2 earns 1; d2's 2 is unattributed; w3 clipped
    assert rows[("o1", "w1")]["share"] == pytest.approx(5 / 8)
    assert rows[("o1", "w2")]["share"] == pytest.approx(1 / 8)
    assert rows[("o1", None)]["share"] == pytest.approx(2 / 8)
    assert rows[("o1", None)]["score"] == pytest.approx(2.0)
    assert ("o1", "w3") not in rows and ("o1", "w9") not in rows
    # o2: nothing positive -> 100 % unattributed
    assert rows[("o2", None)]["share"] == 1.0 and len([k for k in rows if k[0] == "o2"]) == 1
    for o in ("o1", "o2"):
        assert sum(r["share"] for k, r in rows.items() if k[0] == o) == pytest.approx(1.0)
    h = {(r["output_id"], r["holder_id"]): r["share"] for r in holder_shares(t).to_pylist()}
    assert h[("o1", "h1")] == pytest.approx(5 / 8) and h[("o1", "h2")] == pytest.approx(1 / 8)


def test_rollup_top_k_floor_and_overweight_docs():
    expo = _exposure([("a", "d0", 1.0, "h"), ("b", "d0", 1.0, "h"), ("c", "d1", 1.0, "g")])
    scores = np.array([[2.0, 1.0]])
    rows = _by(rollup(scores, ["d0", "d1"], ["o"], expo))
    # d0's weights sum to 2 -> scaled to 1/2 each: a = b = 1/3, c = 1/3
    assert rows[("o", "a")]["share"] == pytest.approx(1 / 3) and rows[("o", None)]["share"] == pytest.approx(0)
    top = _by(rollup(scores, ["d0", "d1"], ["o"], expo, top_k=1))
    assert len(top) == 2 and top[("o", None)]["share"] == pytest.approx(2 / 3)
    fl = _by(rollup(np.array([[9.0, 1.0]]), ["d0", "d1"], ["o"], expo, floor=0.2))
    assert ("o", "c") not in fl and fl[("o", None)]["share"] == pytest.approx(0.1)


def test_rollup_bad_input():
    expo = _exposure([("a", "d0", 1.5, "h")])
    with pytest.raises(InputError, match="weight"):
        rollup(np.ones((1, 1)), ["d0"], ["o"], expo)
    with pytest.raises(InputError, match="expected"):
        rollup(np.ones((2, 1)), ["d0"], ["o"], _exposure([("a", "d0", 1.0, "h")]))
    with pytest.raises(InputError, match="NaN"):
        rollup(np.array([[np.nan]]), ["d0"], ["o"], _exposure([("a", "d0", 1.0, "h")]))
    with pytest.raises(InputError, match="missing columns"):
        rollup(np.ones((1, 1)), ["d0"], ["o"], pa.table({"work_id": ["a"]}))


@pytest.mark.slow
def test_quality_floor_lds_on_a_small_classifier():
    """Retrain a seeded MLP on random halves: influence (EK-FAC) and graddot predict the outcome."""
    torch = pytest.importorskip("torch")
    from tribute.attribution import ClassificationTask, attribute, measure_queries

    rng = np.random.default_rng(1)
    n, nq = 80, 10
    y = rng.integers(0, 2, n + nq)
    t = rng.uniform(0, np.pi, n + nq)
    X = np.stack([np.cos(t) + y, np.sin(t) * (1 - 2 * y) + 0.4 * y], 1) + rng.normal(0, 0.3, (n + nq, 2))
    data = [(torch.tensor(X[i], dtype=torch.float32), int(y[i])) for i in range(n + nq)]
    train, queries = data[:n], data[n:]

    def fit(idx, seed):
        torch.manual_seed(seed)
        m = torch.nn.Sequential(torch.nn.Linear(2, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2))
        xs = torch.stack([train[i][0] for i in idx])
        ys = torch.tensor([train[i][1] for i in idx])
        opt = torch.optim.Adam(m.parameters(), lr=2e-2, weight_decay=1e-3)
        for _ in range(120):
            loss = torch.nn.functional.cross_entropy(m(xs), ys)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return m

    model = fit(np.arange(n), 0)  # noqa: the model attributed; retrains below use other seeds
    task = ClassificationTask()
    measure = measure_queries(task, queries)
    masks = subset_masks(n, 16, 0.5, seed=0)
    from tribute.attribution.lds import retrain_outputs

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models: one thread is fastest on a shared machine
    try:
        outputs = retrain_outputs(fit, measure, masks, seeds=1, seed=0)
    finally:
        torch.set_num_threads(threads)
    got = {"graddot": lds(attribute(model, None, task, train, queries, "graddot").scores, masks, outputs).mean,
           "influence": lds(attribute(model, None, task, train, queries, "influence", damping=0.01).scores,
                            masks, outputs).mean}
    print("LDS", got)
    assert got["graddot"] > 0.15 and got["influence"] > 0.25, got
