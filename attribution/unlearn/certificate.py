"""The unlearning certificate: how well a run removed the works, what it cost, and which targets
it met, measured on the model before and after (and on a retrained reference when one exists).

Targets (the issue's, relative to a model retrained without the forget set):

* verbatim memorisation (ROUGE-L F1 of greedy continuations) <= retrain + 0.03
* |PrivLeak| <= 10 % (MUSE sign: negative = under-unlearned, positive = over-unlearned)
* retain perplexity <= 1.10 x the input model's
* holdout perplexity <= 1.10 x retrain
* cost <= 10 % of retraining
* relearned memorisation (after a few fine-tuning steps on half the forget text) <= retrain + 0.05

Without a retrained reference the retrain levels are replaced by *proxies* and the certificate
says so: the input model's memorisation of held-out text (what unseen text scores), the
membership AUC of a bigram model of the retain data (:mod:`.reference`; 0.5 when not given), and
the input model's holdout perplexity.

The certificate also records the works' attribution share before and after (:mod:`.share`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Sequence

from .metrics import auc, memorisation_probes, min_k_scores, perplexity, privleak, verbatim_memorisation


@dataclass
class EvalConfig:
    prompt_len: int = 16
    cont_len: int = 16
    probes_per_doc: int = 4
    min_k: float = 0.2
    relearn_steps: int = 10
    relearn_lr: float = 1e-3
    relearn_batch: int = 8
    seed: int = 0


@dataclass
class Targets:
    verbatim_margin: float = 0.03
    privleak_abs: float = 0.10
    retain_ppl_ratio: float = 1.10
    holdout_ppl_ratio: float = 1.10
    cost_ratio: float = 0.10
    relearn_margin: float = 0.05


def _halves(seqs: Sequence[Sequence[int]]):
    first, second = [], []
    for s in seqs:
        h = len(s) // 2
        first.append(list(s[:h + 1]))
        second.append(list(s[h:]))
    return first, second


def relearn(model, seqs: Sequence[Sequence[int]], pad_id: int, cfg: EvalConfig):
    """A copy of ``model`` fine-tuned for ``cfg.relearn_steps`` steps on ``seqs`` (plain LM loss)."""
    import torch

    from .data import windows_with_starts
    from .methods import mean_ce, pad_batch

    m = copy.deepcopy(model)
    for p in m.parameters():
        p.requires_grad_(True)
    wins = [w for s in seqs for _, w in windows_with_starts(s, m.config.max_len) if len(w) >= 2]
    if not wins:
        return m
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(m.parameters(), lr=cfg.relearn_lr, weight_decay=0.0)
    m.train()
    for _ in range(cfg.relearn_steps):
        pick = torch.randint(0, len(wins), (cfg.relearn_batch,), generator=gen).tolist()
        loss = mean_ce(m, *pad_batch([wins[i] for i in pick], pad_id))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    m.eval()
    return m


def evaluate(model, data, cfg: EvalConfig, banned: Sequence[int] = (), with_relearn: bool = True) -> dict:
    """Memorisation, membership AUCs, perplexities and the relearning probe of one model."""
    pad = data.pad_id
    probes = memorisation_probes(data.forget_seqs, cfg.prompt_len, cfg.cont_len, cfg.probes_per_doc)
    mem = verbatim_memorisation(model, probes, banned)
    f_mk = min_k_scores(model, data.forget, pad, cfg.min_k)
    h_mk = min_k_scores(model, data.holdout, pad, cfg.min_k)
    f_pp = min_k_scores(model, data.forget, pad, cfg.min_k, plus_plus=True)
    h_pp = min_k_scores(model, data.holdout, pad, cfg.min_k, plus_plus=True)
    out = {
        "forget_rougeL": mem["rougeL"], "forget_longest_span": mem["longest_span"], "probes": mem["probes"],
        "mia_auc_mink": auc(f_mk, h_mk), "mia_auc_minkpp": auc(f_pp, h_pp),
        "retain_ppl": perplexity(model, data.retain_eval or data.retain, pad) if (data.retain_eval or data.retain) else None,
        "holdout_ppl": perplexity(model, data.holdout, pad),
        "forget_ppl": perplexity(model, data.forget, pad),
    }
    if with_relearn:
        first, second = _halves(data.forget_seqs)
        again = relearn(model, first, pad, cfg)
        rp = memorisation_probes(second, cfg.prompt_len, cfg.cont_len, cfg.probes_per_doc)
        out["relearn_rougeL"] = verbatim_memorisation(again, rp, banned)["rougeL"]
        out["relearn_probes"] = len(rp)
    return out


def holdout_memorisation(model, data, cfg: EvalConfig, banned: Sequence[int] = ()) -> float:
    """ROUGE-L of greedy continuations on held-out text: the proxy for the retrain level."""
    return verbatim_memorisation(model, memorisation_probes(data.holdout, cfg.prompt_len, cfg.cont_len, cfg.probes_per_doc),
                                 banned)["rougeL"]


def _r(x, n=4):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), n)


def judge(before: dict, after: dict, reference: dict | None, cost_ratio: float | None,
          targets: Targets, proxy: dict | None = None) -> dict:
    """Each target: its measured value, its threshold, whether it was met, and whether the
    threshold comes from a retrained reference or a proxy."""
    src = "retrain" if reference else "proxy"
    ref_mem = reference["forget_rougeL"] if reference else proxy["holdout_rougeL"]
    ref_auc = reference["mia_auc_mink"] if reference else (proxy or {}).get("mia_auc_mink", 0.5)
    ref_hold = reference["holdout_ppl"] if reference else before["holdout_ppl"]
    ref_relearn = reference.get("relearn_rougeL") if reference else proxy["holdout_rougeL"]
    pl = privleak(after["mia_auc_mink"], ref_auc)
    rows = {
        "verbatim": (after["forget_rougeL"], ref_mem + targets.verbatim_margin, "<="),
        "privleak": (None if pl is None else abs(pl), targets.privleak_abs, "<="),
        "retain_ppl": (after["retain_ppl"] / before["retain_ppl"] if after.get("retain_ppl") else None,
                       targets.retain_ppl_ratio, "<="),
        "holdout_ppl": (after["holdout_ppl"] / ref_hold, targets.holdout_ppl_ratio, "<="),
        "cost": (cost_ratio, targets.cost_ratio, "<="),
        "relearn": (after.get("relearn_rougeL"), None if ref_relearn is None else ref_relearn + targets.relearn_margin, "<="),
    }
    out = {}
    for name, (value, limit, _) in rows.items():
        met = None if value is None or limit is None else bool(value <= limit + 1e-12)
        out[name] = {"value": _r(value), "limit": _r(limit), "met": met,
                     "basis": "input model" if name in ("retain_ppl",) else ("measured" if name == "cost" else src)}
    out["privleak"]["signed"] = _r(pl)
    return out


def statement(checks: dict) -> str:
    met = [k for k, v in checks.items() if v["met"] is True]
    missed = [k for k, v in checks.items() if v["met"] is False]
    unknown = [k for k, v in checks.items() if v["met"] is None]
    parts = [f"met: {', '.join(met) or 'none'}", f"not met: {', '.join(missed) or 'none'}"]
    if unknown:
        parts.append(f"not assessed: {', '.join(unknown)}")
    basis = {v["basis"] for v in checks.values()}
    if "proxy" in basis:
        parts.append("no retrained reference: retrain levels are proxies (held-out text memorisation, the "
                     "membership AUC of a bigram model of the retain data, input holdout perplexity)")
    return "; ".join(parts)


def build_certificate(*, run: dict, before: dict, after: dict, reference: dict | None, proxy: dict | None,
                      cost_seconds: float, retrain_seconds: float | None, retrain_basis: str,
                      targets: Targets | None = None, eval_config: EvalConfig | None = None,
                      share: dict | None = None) -> dict:
    """The certificate dict (JSON-ready). ``share``: the works' attribution share ``before`` / ``after``."""
    targets = targets or Targets()
    cost_ratio = cost_seconds / retrain_seconds if retrain_seconds else None
    checks = judge(before, after, reference, cost_ratio, targets, proxy)
    return {
        "kind": "tribute-unlearning-certificate",
        "version": 1,
        "run": run,
        "conventions": {
            "memorisation": "ROUGE-L F1 on tokens of greedy continuations vs the true text "
                            f"(prompt {eval_config.prompt_len if eval_config else '?'} tokens)",
            "mia_auc": "usual ROC AUC, forget windows = positives vs holdout windows; 1 = detectable, 0.5 = not",
            "privleak": "MUSE: (AUCm_unlearned - AUCm_retrain) / AUCm_retrain with AUCm = 1 - AUC; "
                        "negative = under-unlearned, positive = over-unlearned",
        },
        "before": {k: _r(v) for k, v in before.items()},
        "after": {k: _r(v) for k, v in after.items()},
        "reference": {k: _r(v) for k, v in reference.items()} if reference else None,
        "proxy": {k: _r(v) for k, v in proxy.items()} if proxy else None,
        "cost": {"seconds": _r(cost_seconds, 3), "retrain_seconds": _r(retrain_seconds, 3),
                 "retrain_basis": retrain_basis, "ratio": _r(cost_ratio)},
        "targets": asdict(targets),
        "checks": checks,
        "targets_met": all(v["met"] is True for v in checks.values()),
        "statement": statement(checks),
        "attribution_share": ({k: (_r(v, 6) if isinstance(v, float) else v) for k, v in share.items()}
                              if share else None),
        "not_measured": (["task metrics (the tiny LM has none)"]
                         + ([] if share else ["attribution share before/after (not requested)"])),
    }


def time_call(fn, *a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0
