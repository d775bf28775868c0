"""Linear datamodeling score (LDS): does the attribution predict what retraining does?

Protocol (TRAK paper section 2; FIELD-NOTES.md): draw ``m`` random subsets of the training set,
each holding ``fraction`` of it (default 0.5); retrain on each subset (``seeds`` times, outputs
averaged) and record each query's measured output; for each query take the Spearman correlation
across subsets between the sum of the method's scores over the subset and the actual output;
LDS = the mean over queries. Scores follow tribute's sign convention (> 0 raises the output),
so a good method has a positive LDS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..core.errors import ConfigError, InputError


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as ``scipy.stats.rankdata``)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; NaN when either side is constant."""
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def subset_masks(n_train: int, n_subsets: int, fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """``[n_subsets, n_train]`` boolean masks, each with ``round(fraction * n_train)`` members."""
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction={fraction}: must be strictly between 0 and 1 (LDS uses 0.5)")
    if n_subsets < 2:
        raise ConfigError(f"n_subsets={n_subsets}: need at least 2 subsets for a correlation")
    k = int(round(fraction * n_train))
    if not 0 < k < n_train:
        raise InputError(f"train set of {n_train}: too small for subsets of fraction {fraction}")
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_subsets, n_train), dtype=bool)
    for m in range(n_subsets):
        masks[m, rng.choice(n_train, size=k, replace=False)] = True
    return masks


@dataclass
class LDSResult:
    mean: float
    sd: float                 # standard deviation over queries
    per_query: np.ndarray     # [n_queries] Spearman correlations
    n_subsets: int
    seeds: int
    fraction: float

    def as_dict(self) -> dict:
        return {"lds": self.mean, "lds_sd": self.sd, "n_queries": int(len(self.per_query)),
                "n_subsets": self.n_subsets, "seeds": self.seeds, "fraction": self.fraction}


def lds(scores: np.ndarray, masks: np.ndarray, outputs: np.ndarray, seeds: int = 1,
        fraction: float = 0.5) -> LDSResult:
    """LDS of ``scores`` ``[q, n]`` given subset ``masks`` ``[m, n]`` and actual ``outputs`` ``[m, q]``."""
    scores = np.asarray(scores, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    outputs = np.asarray(outputs, dtype=np.float64)
    q, n = scores.shape
    if masks.shape[1] != n or outputs.shape != (masks.shape[0], q):
        raise InputError(f"LDS: scores {scores.shape}, masks {masks.shape} and outputs {outputs.shape} "
                         "do not fit ([q, n], [m, n], [m, q])")
    pred = masks.astype(np.float64) @ scores.T            # [m, q]
    rho = np.array([spearman(pred[:, j], outputs[:, j]) for j in range(q)])
    ok = rho[np.isfinite(rho)]
    if len(ok) == 0:
        raise InputError("LDS: every query's prediction or output is constant across subsets; "
                         "use more subsets or queries whose output varies")
    return LDSResult(float(ok.mean()), float(ok.std()), rho, int(masks.shape[0]), seeds, fraction)


def retrain_outputs(train_fn: Callable[[np.ndarray, int], object], measure: Callable[[object], np.ndarray],
                    masks: np.ndarray, seeds: int = 1, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``[m, q]``: for each mask, mean over ``seeds`` of ``measure(train_fn(indices, seed))``."""
    out = []
    for m, mask in enumerate(masks):
        idx = np.flatnonzero(mask)
        vals = [np.asarray(measure(train_fn(idx, seed + 1000 * m + s)), dtype=np.float64) for s in range(seeds)]
        out.append(np.mean(vals, axis=0))
        if progress:
            progress(m + 1, len(masks))
    return np.stack(out)


def evaluate_lds(scores: np.ndarray, train_fn, measure, n_subsets: int = 50, seeds: int = 1,
                 fraction: float = 0.5, seed: int = 0, progress=None) -> LDSResult:
    """Retrain on random subsets and return the :class:`LDSResult` of ``scores``."""
    masks = subset_masks(np.asarray(scores).shape[1], n_subsets, fraction, seed)
    outputs = retrain_outputs(train_fn, measure, masks, seeds, seed, progress)
    return lds(scores, masks, outputs, seeds, fraction)


def measure_queries(task, queries: Sequence, batch_size: int = 64):
    """A ``measure(model)`` function: the task's measured output of each query."""

    def measure(model):
        import torch

        vals = []
        model.eval()
        with torch.no_grad():
            for s in range(0, len(queries), batch_size):
                vals.append(task.measurement(model, task.collate(list(queries[s:s + batch_size]))))
        return torch.cat(vals).double().numpy()

    return measure
