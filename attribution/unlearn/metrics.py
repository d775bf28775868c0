"""Metrics of the unlearning certificate: ROUGE-L, verbatim memorisation, Min-K% / Min-K%++
membership scores, AUC, PrivLeak and perplexity.

Conventions:

* ``auc(pos, neg)`` is the usual ROC AUC: the probability that a random member (forget-set
  window, the positive class) scores above a random non-member (holdout window); ties count 1/2.
  1.0 = the forget set is perfectly detectable as training data, 0.5 = indistinguishable,
  near 0 = over-unlearned (the forget set now looks *less* likely than unseen text).
* ``privleak`` follows MUSE: MUSE's AUC treats the forget set as the negative class, i.e.
  ``AUC_muse = 1 - auc``; ``PrivLeak = (AUC_muse(unlearned) - AUC_muse(retrain)) / AUC_muse(retrain)``.
  Negative = under-unlearned (still detectable), positive = over-unlearned.

Example::

    rouge_l([1, 2, 3, 4], [1, 3, 4])["f"]          # 0.857...
    auc([0.9, 0.8], [0.1, 0.85])                    # 0.75
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from ...core.errors import InputError


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (O(len(a) * len(b)) DP)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def longest_common_span(a: Sequence, b: Sequence) -> int:
    """Length of the longest common *contiguous* run of ``a`` and ``b`` (verbatim span)."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


_WORD = re.compile(r"\w+")


def rouge_tokens(text: str) -> list[str]:
    """ROUGE's default tokenisation: lower-cased runs of word characters."""
    return _WORD.findall(text.lower())


def rouge_l(candidate: Sequence | str, reference: Sequence | str) -> dict[str, float]:
    """ROUGE-L precision ``p``, recall ``r`` and F1 ``f`` of ``candidate`` against ``reference``.

    Strings are tokenised with :func:`rouge_tokens`; sequences (e.g. token ids) are used as is.
    Empty inputs score 0.
    """
    c = rouge_tokens(candidate) if isinstance(candidate, str) else list(candidate)
    r = rouge_tokens(reference) if isinstance(reference, str) else list(reference)
    n = lcs_length(c, r)
    if n == 0:
        return {"p": 0.0, "r": 0.0, "f": 0.0}
    p, rec = n / len(c), n / len(r)
    return {"p": p, "r": rec, "f": 2 * p * rec / (p + rec)}


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """ROC AUC of scores ``pos`` (positive class) against ``neg``; ties count 1/2.

    Computed from ranks (Mann-Whitney U) in O(n log n).
    """
    if not len(pos) or not len(neg):
        raise InputError("auc: both classes need at least one score (forget and holdout sets must be non-empty)")
    allv = sorted([(float(v), 1) for v in pos] + [(float(v), 0) for v in neg])
    if not all(math.isfinite(v) for v, _ in allv):
        raise InputError("auc: a membership score is NaN or infinite; the model's outputs are not finite "
                         "(check its weights)")
    rank_sum, i = 0.0, 0
    while i < len(allv):
        j = i
        while j < len(allv) and allv[j][0] == allv[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2.0            # ranks i+1 .. j
        rank_sum += avg_rank * sum(1 for k in range(i, j) if allv[k][1])
        i = j
    n1, n0 = len(pos), len(neg)
    return (rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def privleak(auc_unlearned: float, auc_retrain: float) -> float | None:
    """MUSE's PrivLeak from usual AUCs (see the module doc); ``None`` when undefined (retrain AUC 1)."""
    a_u, a_r = 1.0 - auc_unlearned, 1.0 - auc_retrain
    if a_r <= 1e-12:
        return None
    return (a_u - a_r) / a_r


# ----------------------------------------------------------------------------- model-based
def _batches(windows: Sequence[Sequence[int]], pad_id: int, batch_size: int):
    import torch

    for i in range(0, len(windows), batch_size):
        rows = windows[i:i + batch_size]
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        yield ids


def token_logprobs(model, windows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 16,
                   with_stats: bool = False):
    """Per window: the log-probability of each target token (positions 1..), as float64 lists.

    With ``with_stats`` also the mean and standard deviation of the next-token log-probability
    under the model's own distribution at each position (for Min-K%++).
    """
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for ids in _batches(windows, pad_id, batch_size):
            logp = torch.log_softmax(model(ids)[:, :-1].double(), -1)
            tgt = ids[:, 1:]
            lp = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
            if with_stats:
                p = logp.exp()
                mu = (p * logp).sum(-1)
                sd = ((p * logp.pow(2)).sum(-1) - mu.pow(2)).clamp_min(1e-12).sqrt()
            for k in range(ids.shape[0]):
                n = int((tgt[k] != pad_id).sum())
                row = lp[k, :n].tolist()
                out.append((row, mu[k, :n].tolist(), sd[k, :n].tolist()) if with_stats else row)
    return out


def perplexity(model, windows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 16) -> float:
    """Token-level perplexity of ``windows`` (exp of the mean NLL over all target tokens)."""
    tot, n = 0.0, 0
    for row in token_logprobs(model, windows, pad_id, batch_size):
        tot -= sum(row)
        n += len(row)
    if n == 0:
        raise InputError("perplexity: no tokens to score; give non-empty texts")
    return math.exp(tot / n)


def _min_k(values: Sequence[float], k: float) -> float:
    m = max(1, int(math.ceil(len(values) * k)))
    return sum(sorted(values)[:m]) / m


def min_k_scores(model, windows, pad_id: int, k: float = 0.2, plus_plus: bool = False) -> list[float]:
    """Min-K% Prob (mean of the lowest ``k`` fraction of token log-probs) per window, or Min-K%++
    (the same over ``(log p - mu) / sigma``). Higher = more likely a training member."""
    if not 0 < k <= 1:
        raise InputError(f"min_k: k={k} must be in (0, 1]")
    scores = []
    for item in token_logprobs(model, windows, pad_id, with_stats=plus_plus):
        if plus_plus:
            lp, mu, sd = item
            vals = [(a - m) / s for a, m, s in zip(lp, mu, sd)]
        else:
            vals = item
        scores.append(_min_k(vals, k) if vals else 0.0)
    return scores


def greedy_continue(model, prompt_ids: Sequence[int], n_new: int, banned: Sequence[int] = ()) -> list[int]:
    """Greedy continuation of ``prompt_ids`` for ``n_new`` tokens (no early stop)."""
    import torch

    ids = list(prompt_ids)
    L = model.config.max_len
    model.eval()
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(torch.tensor([ids[-L:]]))[0, -1].double()
            for b in banned:
                logits[b] = -math.inf
            ids.append(int(torch.argmax(logits)))
    return ids[len(prompt_ids):]


def memorisation_probes(seqs: Sequence[Sequence[int]], prompt_len: int, cont_len: int,
                        max_per_doc: int = 4) -> list[tuple[list[int], list[int]]]:
    """``(prompt, true continuation)`` pairs cut from token sequences, up to ``max_per_doc`` each,
    evenly spaced over the sequence."""
    probes = []
    span = prompt_len + cont_len
    for s in seqs:
        s = list(s)
        if len(s) < span:
            continue
        n_pos = len(s) - span + 1
        k = min(max_per_doc, max(1, len(s) // span))
        starts = sorted({round(i * (n_pos - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]
        for st in starts:
            probes.append((s[st:st + prompt_len], s[st + prompt_len:st + span]))
    return probes


def verbatim_memorisation(model, probes, banned: Sequence[int] = ()) -> dict[str, float]:
    """Mean ROUGE-L F1 (on token ids) and mean longest verbatim span (tokens) of greedy
    continuations against the true continuations."""
    if not probes:
        return {"rougeL": float("nan"), "longest_span": float("nan"), "probes": 0}
    f, span = 0.0, 0.0
    for prompt, truth in probes:
        gen = greedy_continue(model, prompt, len(truth), banned)
        f += rouge_l(gen, truth)["f"]
        span += longest_common_span(gen, truth)
    return {"rougeL": f / len(probes), "longest_span": span / len(probes), "probes": len(probes)}
