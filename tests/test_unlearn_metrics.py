"""Unlearning metrics and method losses against hand-computed values and naive references."""

from __future__ import annotations

import math
import random

import pytest

from tribute.attribution.unlearn import auc, lcs_length, privleak, rouge_l
from tribute.attribution.unlearn.metrics import longest_common_span, memorisation_probes, min_k_scores, perplexity

TOL = 1e-9


# ----------------------------------------------------------------------------- ROUGE-L
def test_rouge_l_hand_computed_words():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 words
    r = rouge_l("The cat sat on the mat.", "the cat on the mat")
    assert r["p"] == pytest.approx(5 / 6, abs=TOL)
    assert r["r"] == pytest.approx(1.0, abs=TOL)
    assert r["f"] == pytest.approx(10 / 11, abs=TOL)


def test_rouge_l_hand_computed_ids_and_order():
    # [1,2,3,4] vs [1,3,4]: LCS 3 -> p 3/4, r 1, f 6/7
    assert rouge_l([1, 2, 3, 4], [1, 3, 4])["f"] == pytest.approx(6 / 7, abs=TOL)
    # reversed order shares only one token in sequence: LCS 1 of 3 -> f 1/3
    assert rouge_l([3, 2, 1], [1, 2, 3])["f"] == pytest.approx(1 / 3, abs=TOL)
    # "ABCBDAB" vs "BDCABA": the textbook LCS length 4
    assert lcs_length("ABCBDAB", "BDCABA") == 4


def test_rouge_l_empty_and_disjoint():
    assert rouge_l([], [1, 2]) == {"p": 0.0, "r": 0.0, "f": 0.0}
    assert rouge_l("alpha beta", "gamma delta")["f"] == 0.0


def test_longest_common_span():
    assert longest_common_span([1, 2, 3, 9, 4, 5, 6, 7], [0, 4, 5, 6, 7, 1, 2]) == 4
    assert longest_common_span([1], [2]) == 0


# ----------------------------------------------------------------------------- AUC, PrivLeak
def _naive_auc(pos, neg):
    s = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return s / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_naive_pairwise_count(seed):
    rng = random.Random(seed)
    pos = [rng.choice([0.1, 0.2, 0.3, 0.5, 0.7]) + rng.random() * (seed % 2) for _ in range(rng.randint(1, 30))]
    neg = [rng.choice([0.1, 0.2, 0.3, 0.5]) for _ in range(rng.randint(1, 30))]
    assert auc(pos, neg) == pytest.approx(_naive_auc(pos, neg), abs=TOL)


def test_auc_extremes_and_empty():
    assert auc([2, 3], [0, 1]) == 1.0
    assert auc([0, 1], [2, 3]) == 0.0
    assert auc([1, 1], [1]) == 0.5
    from tribute.core.errors import InputError

    with pytest.raises(InputError):
        auc([], [1.0])


def test_privleak_muse_sign():
    # retrain AUC 0.5; unlearned still detectable (0.9) -> negative (under-unlearned)
    assert privleak(0.9, 0.5) == pytest.approx((0.1 - 0.5) / 0.5, abs=TOL)
    assert privleak(0.9, 0.5) < 0
    assert privleak(0.2, 0.5) > 0           # over-unlearned
    assert privleak(0.5, 0.5) == 0
    assert privleak(0.7, 1.0) is None       # undefined


# ----------------------------------------------------------------------------- model-based
class _Cfg:
    max_len = 16


def table_model(table):
    """A bigram model: logits of the next token = ``table[current token]`` (a trainable parameter)."""
    import torch

    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = _Cfg()
            self.t = torch.nn.Parameter(torch.tensor(table, dtype=torch.float64))

        def forward(self, ids):
            return self.t[ids]

    return Table()


def _logsoftmax(row):
    m = max(row)
    z = math.log(sum(math.exp(x - m) for x in row)) + m
    return [x - z for x in row]


TABLE = [[0.0, 1.0, 2.0], [0.5, -1.0, 0.0], [2.0, 0.0, -2.0]]


def test_perplexity_and_min_k_hand_computed():
    m = table_model(TABLE)
    seq = [0, 1, 2, 0, 2]
    lp = [_logsoftmax(TABLE[a])[b] for a, b in zip(seq, seq[1:])]
    assert perplexity(m, [seq], pad_id=99) == pytest.approx(math.exp(-sum(lp) / len(lp)), rel=1e-9)
    # k = 0.5 of 4 tokens -> the 2 lowest log-probs
    assert min_k_scores(m, [seq], 99, k=0.5)[0] == pytest.approx(sum(sorted(lp)[:2]) / 2, rel=1e-9)
    # Min-K%++: (log p - mu) / sigma per position
    vals = []
    for a, b in zip(seq, seq[1:]):
        ls = _logsoftmax(TABLE[a])
        mu = sum(math.exp(x) * x for x in ls)
        sd = math.sqrt(sum(math.exp(x) * x * x for x in ls) - mu * mu)
        vals.append((ls[b] - mu) / sd)
    assert min_k_scores(m, [seq], 99, k=0.25, plus_plus=True)[0] == pytest.approx(min(vals), rel=1e-9)


def test_memorisation_probes_cut_evenly():
    seq = list(range(40))
    probes = memorisation_probes([seq], prompt_len=5, cont_len=5, max_per_doc=3)
    assert [p[0][0] for p in probes] == [0, 15, 30]
    assert probes[-1] == (list(range(30, 35)), list(range(35, 40)))
    assert memorisation_probes([[1, 2, 3]], 5, 5) == []


# ----------------------------------------------------------------------------- method losses
def _hand_losses(fseq, rseq, beta_npo=0.1, beta_sim=2.5, gamma=0.0, a=1.0):
    """Every method's loss by hand, with model == reference (the first step)."""
    f_lp = [_logsoftmax(TABLE[x])[y] for x, y in zip(fseq, fseq[1:])]
    r_lp = [_logsoftmax(TABLE[x])[y] for x, y in zip(rseq, rseq[1:])]
    ce_f, ce_r = -sum(f_lp) / len(f_lp), -sum(r_lp) / len(r_lp)
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    return {
        "ga": -ce_f,
        "gd": -ce_f + a * ce_r,
        "kl": -ce_f + 0.0,                                   # KL(ref || model) = 0 at the start
        "npo": (2 / beta_npo) * sp(0.0) + a * ce_r,          # log pi - log pi_ref = 0
        "simnpo": (2 / beta_sim) * sp(beta_sim * sum(f_lp) / len(f_lp) + gamma) + a * ce_r,
    }


@pytest.mark.parametrize("method", ["ga", "gd", "kl", "npo", "simnpo"])
def test_method_losses_hand_computed(method):
    import copy

    from tribute.attribution.unlearn import UnlearnConfig, method_loss
    from tribute.attribution.unlearn.methods import pad_batch

    fseq, rseq = [0, 1, 2, 2, 1], [2, 0, 0, 1]
    model = table_model(TABLE)
    ref = copy.deepcopy(model)
    cfg = UnlearnConfig(method=method)
    loss = method_loss(cfg, model, ref, pad_batch([fseq], 99), pad_batch([rseq], 99))
    assert float(loss.detach()) == pytest.approx(_hand_losses(fseq, rseq)[method], rel=1e-6)


def test_npo_and_kl_away_from_reference():
    """Model != reference: NPO's log-ratio term and the retain KL by hand."""
    import torch

    from tribute.attribution.unlearn import UnlearnConfig, method_loss
    from tribute.attribution.unlearn.methods import pad_batch

    other = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    model, ref = table_model(other), table_model(TABLE)
    fseq, rseq = [0, 2, 1], [1, 0]
    lp = lambda T, s: sum(_logsoftmax(T[x])[y] for x, y in zip(s, s[1:]))  # noqa: E731
    b = 0.1
    npo = (2 / b) * math.log1p(math.exp(b * (lp(other, fseq) - lp(TABLE, fseq))))
    ce_r = -lp(other, rseq) / 1
    got = method_loss(UnlearnConfig(method="npo"), model, ref, pad_batch([fseq], 99), pad_batch([rseq], 99))
    assert float(got.detach()) == pytest.approx(npo + ce_r, rel=1e-6)
    p = [math.exp(x) for x in _logsoftmax(TABLE[1])]
    kl = sum(pi * (lr - lq) for pi, lr, lq in zip(p, _logsoftmax(TABLE[1]), _logsoftmax(other[1])))
    ce_f = -lp(other, fseq) / 2
    got = method_loss(UnlearnConfig(method="kl"), model, ref, pad_batch([fseq], 99), pad_batch([rseq], 99))
    assert float(got.detach()) == pytest.approx(-ce_f + kl, rel=1e-6)
    assert torch.isfinite(got)


def test_calibrated_loss_hand_computed():
    """calibrated = relu(tau_nll - NLL_w) + relu(MinK_w - tau_mink) + a*(KL + CE on retain)."""
    import copy

    from tribute.attribution.unlearn import UnlearnConfig, method_loss
    from tribute.attribution.unlearn.methods import pad_batch

    fseq, rseq = [0, 1, 2, 2, 1], [2, 0, 0, 1]
    w = [1.0, 1.0, 0.0, 1.0]                       # third target token outside the work's span
    model = table_model(TABLE)
    ref = copy.deepcopy(model)
    nll = [-_logsoftmax(TABLE[x])[y] for x, y in zip(fseq, fseq[1:])]
    marked = [n for n, k in zip(nll, w) if k]
    nll_w = sum(marked) / 3
    mink = -max(marked)                            # k=0.2 of 3 tokens -> 1 token, the highest NLL
    r_nll = [-_logsoftmax(TABLE[x])[y] for x, y in zip(rseq, rseq[1:])]
    tau = (nll_w + 0.5, mink - 0.25)
    want = 0.5 + 0.25 + 2.0 * (0.0 + sum(r_nll) / 3)
    cfg = UnlearnConfig(method="calibrated", retain_weight=2.0, retain_loss="both")
    got = method_loss(cfg, model, ref, pad_batch([fseq], 99, [w]), pad_batch([rseq], 99), tau)
    assert float(got.detach()) == pytest.approx(want, rel=1e-6)
    # at the target (tau below the current levels) the forget term vanishes
    cfg0 = UnlearnConfig(method="calibrated", retain_weight=0.0)
    assert float(method_loss(cfg0, model, ref, pad_batch([fseq], 99, [w]), None, (nll_w - 1, mink + 1)).detach()) == 0.0


def test_config_errors_name_the_field():
    from tribute.attribution.unlearn import UnlearnConfig
    from tribute.core.errors import ConfigError

    with pytest.raises(ConfigError, match="method"):
        UnlearnConfig(method="magic")
    with pytest.raises(ConfigError, match="lr"):
        UnlearnConfig(lr=float("nan"))


# ----------------------------------------------------------------------------- retrain-like level
def test_bigram_reference_logprobs_hand_computed():
    from tribute.attribution.unlearn.reference import BigramReference

    ref = BigramReference.fit([[1, 2, 3, 2, 3]], vocab_size=5, lam=0.5, add_k=1.0)
    # unigrams 1:1 2:2 3:2 (N = 5, add-1 over V = 5 -> /10); bigrams (1,2) (2,3)x2 (3,2); contexts 1:1 2:2 3:1
    assert ref.logprobs([2, 3, 1]) == pytest.approx([math.log(0.5 * 2 / 2 + 0.5 * 3 / 10),   # seen bigram
                                                     math.log(0.5 * 0 / 1 + 0.5 * 2 / 10)],  # unseen bigram
                                                    rel=1e-12)
    assert ref.logprobs([4, 4]) == pytest.approx([math.log(1 / 10)], rel=1e-12)             # never a context


def test_forget_ranks_average_to_the_reference_auc():
    from tribute.attribution.unlearn.reference import BigramReference, quantile

    rng = random.Random(3)
    seqs = [[rng.randrange(12) for _ in range(rng.randint(5, 30))] for _ in range(20)]
    ref = BigramReference.fit(seqs[:10], vocab_size=12)
    ranks = ref.forget_ranks(seqs[10:15], seqs[15:], 0.2)
    assert sum(ranks) / len(ranks) == pytest.approx(ref.membership_auc(seqs[10:15], seqs[15:], 0.2), abs=1e-12)
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0 and quantile([0.0, 10.0], 0.25) == 2.5
    assert quantile([1.0, 2.0], -1) == 1.0 and quantile([1.0, 2.0], 2) == 2.0


def test_share_from_scores_clips_negatives():
    from tribute.attribution.unlearn.share import share_from_scores

    scores = [[2.0, -1.0, 1.0, 1.0],     # forget: 2 (the -1 earns nothing) of 4 -> 0.5
              [-1.0, -1.0, 3.0, 0.0],    # forget 0 of 3 -> 0
              [-1.0, -1.0, -1.0, -1.0]]  # no positive score -> 0
    mean, per = share_from_scores(scores, [True, True, False, False])
    assert per == [0.5, 0.0, 0.0] and mean == pytest.approx(1 / 6)
