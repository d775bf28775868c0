"""The works' attribution share, measured on the same queries before and after unlearning.

Queries: the memorisation probes of the forget set (a prompt cut from a document that carries
the works, and its true continuation), i.e. "the model producing the work's text". Training
examples: up to 48 forget windows and 48 retain windows (evenly picked: equal numbers, so a share
of 0.5 means the forget and retain windows pull equally). Scores: a plain gradient dot product
(``graddot``, :func:`tribute.attribution.attribute`; cheap, one gradient per example) by default.
The share of one query follows the rollup rule of :mod:`tribute.attribution.rollup`: negative
scores are clipped to 0 and the share is the forget windows' positive score over all windows'
positive score (per window, not per document). The reported share is the mean over queries.

It says how much of the model's pull towards the work's text comes from the documents that carry
the work *relative to the rest of the sampled training data*; it is measured, not assumed to drop.

Example::

    share = attribution_share(model, data, EvalConfig())      # {"share": 0.41, "queries": 16, ...}
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np

from .metrics import memorisation_probes

SHARE_METHOD = "graddot"
MAX_QUERIES = 16
MAX_WINDOWS = 48          # forget windows and retain windows each (evenly picked, so the cost stays small)


def _even(items: Sequence, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[int(i * len(items) / n)] for i in range(n)]


def share_queries(data, prompt_len: int, cont_len: int, max_queries: int = MAX_QUERIES) -> list[tuple[list[int], int]]:
    """``(prompt + continuation, len(prompt))`` queries from the forget documents (evenly picked)."""
    probes = memorisation_probes(data.forget_seqs, prompt_len, cont_len, max_per_doc=4)
    if len(probes) > max_queries:
        step = len(probes) / max_queries
        probes = [probes[int(i * step)] for i in range(max_queries)]
    return [(list(p) + list(c), len(p)) for p, c in probes]


def share_from_scores(scores: np.ndarray, is_forget: Sequence[bool]) -> tuple[float, list[float]]:
    """``(mean share, per-query shares)``: positive score of the forget columns over all positive
    score (a query with no positive score has share 0)."""
    pos = np.clip(np.asarray(scores, dtype=np.float64), 0.0, None)
    mask = np.asarray(is_forget, dtype=bool)
    total = pos.sum(1)
    per = np.where(total > 0, pos[:, mask].sum(1) / np.where(total > 0, total, 1.0), 0.0)
    return float(per.mean()), [float(x) for x in per]


def attribution_share(model, data, eval_config, method: str = SHARE_METHOD, max_queries: int = MAX_QUERIES,
                      max_windows: int = MAX_WINDOWS) -> dict:
    """The forget set's attribution share for the forget-set queries under ``model`` (see the module doc)."""
    from ..api import attribute
    from ..task import CausalLMTask

    max_len = _context(model)
    queries = share_queries(data, min(eval_config.prompt_len, max_len // 2), min(eval_config.cont_len, max_len // 2),
                            max_queries)
    if not queries:
        return {"share": None, "method": method, "queries": 0,
                "note": "forget documents too short for a prompt + continuation"}
    forget, retain = _even(data.forget, max_windows), _even(data.retain, max_windows)
    model = copy.deepcopy(model)              # gradients of every parameter (frozen ones too), input untouched
    for p in model.parameters():
        p.requires_grad_(True)
    train = [(list(w), 0) for w in forget] + [(list(w), 0) for w in retain]
    res = attribute(model, None, CausalLMTask(max_len=max_len, pad_id=data.pad_id), train, queries, method=method)
    share, per = share_from_scores(res.scores, [True] * len(forget) + [False] * len(retain))
    return {"share": share, "method": method, "queries": len(queries), "forget_windows": len(forget),
            "retain_windows": len(retain), "per_query": [round(x, 6) for x in per]}


def _context(model) -> int:
    cfg = getattr(model, "config", None)
    for name in ("max_len", "n_positions", "max_position_embeddings"):
        if getattr(cfg, name, None):
            return int(getattr(cfg, name))
    return 1024
