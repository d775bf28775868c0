"""The three text sets of an unlearning run, tokenised into model-sized windows.

* **forget**: the training documents that carry the works (from a corpus scan's exposure), with a
  per-token weight: 1 on tokens inside the spans that carry a work, 0 elsewhere (all 1 when no
  spans or work texts are known);
* **retain**: a seeded sample of the other training documents, split in two disjoint halves:
  ``retain`` drives the methods' retain terms, ``retain_eval`` measures utility (retain
  perplexity), so the utility figure is not measured on the very windows a method trained on;
* **holdout**: text the model never trained on (the membership-inference negatives and the
  target level of the calibrated method).

Example::

    data = build_data(tok, 128, docs, forget_ids={"copy-ruth"}, holdout=[("h1", text)],
                      work_texts=[ruth_text])
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ...core.errors import InputError
from .reference import BigramReference

NGRAM = 4                  # token n-gram length used to locate a work inside a document
MAX_UNK_RATE = 0.5         # above this the tokenizer does not belong to this text


@dataclass
class UnlearnData:
    forget: list[list[int]]                 # windows of forget docs
    forget_weights: list[list[float]]       # per target token (len(window) - 1)
    retain: list[list[int]]
    holdout: list[list[int]]
    forget_seqs: list[list[int]]            # whole token sequences of the forget docs
    forget_ids: list[str]
    retain_ids: list[str]
    holdout_ids: list[str]
    pad_id: int = 0
    unk_rate: float = 0.0
    span_source: str = "all"                # spans | work-ngrams | all
    info: dict = field(default_factory=dict)
    background: object | None = None        # BigramReference of all retain docs (retrain-like level)
    retain_eval: list[list[int]] = field(default_factory=list)   # utility windows, disjoint from ``retain``
    retain_eval_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"forget_docs": len(self.forget_ids), "forget_windows": len(self.forget),
                "forget_tokens": sum(len(w) - 1 for w in self.forget),
                "forget_weighted_tokens": round(sum(sum(w) for w in self.forget_weights), 3),
                "retain_docs": len(self.retain_ids), "retain_windows": len(self.retain),
                "retain_eval_docs": len(self.retain_eval_ids), "retain_eval_windows": len(self.retain_eval),
                "holdout_docs": len(self.holdout_ids), "holdout_windows": len(self.holdout),
                "unk_rate": round(self.unk_rate, 4), "span_source": self.span_source}


def windows_with_starts(seq: Sequence[int], size: int) -> list[tuple[int, list[int]]]:
    """Consecutive windows of at most ``size`` tokens sharing one token, each with its start."""
    seq = list(seq)
    if len(seq) <= size:
        return [(0, seq)]
    out, start = [], 0
    while start < len(seq) - 1:
        out.append((start, seq[start:start + size]))
        start += size - 1
    return out


def _token_offsets(text: str) -> list[tuple[int, int]]:
    from ..lm import _TOKEN_RE  # the tokenizer's own regex, so offsets match its tokens

    return [(m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def span_marks(text: str, spans: Sequence[tuple[int, int]], offsets=None) -> list[float]:
    """Per token of ``text``: 1.0 if it overlaps a character span. Tokens as the word tokenizer
    splits them, or the character ``offsets`` of another tokenizer's tokens."""
    spans = sorted((int(a), int(b)) for a, b in spans)
    return [1.0 if any(a < e and s < b for a, b in spans) else 0.0
            for s, e in (offsets if offsets is not None else _token_offsets(text))]


def ngram_marks(ids: Sequence[int], grams: set, n: int = NGRAM) -> list[float]:
    """Per token: 1.0 if it lies in an ``n``-gram of ``ids`` that occurs in ``grams``."""
    marks = [0.0] * len(ids)
    for i in range(len(ids) - n + 1):
        if tuple(ids[i:i + n]) in grams:
            for j in range(i, i + n):
                marks[j] = 1.0
    return marks


def _seq(tok, text: str) -> list[int]:
    return tok.encode(text) + [tok.eos_id]


def _windows(tok, texts: Sequence[str], size: int) -> list[list[int]]:
    return [w for t in texts for _, w in windows_with_starts(_seq(tok, t), size) if len(w) >= 2]


def build_data(tok, max_len: int, docs: Sequence[tuple[str, str]], forget_ids, holdout: Sequence[tuple[str, str]], *,
               retain_size: int = 64, seed: int = 0, spans: Mapping[str, Sequence[tuple[int, int]]] | None = None,
               work_texts: Sequence[str] = ()) -> UnlearnData:
    """Tokenise and window the forget, retain and holdout sets (see the module doc).

    ``docs``: the training documents ``(id, text)``; ``forget_ids``: the ids among them that carry
    the works; ``spans``: optional character spans per forget doc; ``work_texts``: the works'
    texts, used to locate them by token n-grams in docs without spans.
    """
    forget_ids = sorted(set(forget_ids))
    if not forget_ids:
        raise InputError("forget set: the works have no exposure in the training data (nothing to forget); "
                         "scan the corpus with `tribute scan corpus` or pick other works")
    by_id = dict(docs)
    missing = [d for d in forget_ids if d not in by_id]
    if missing:
        raise InputError(f"forget set: {len(missing)} doc(s) not in the training data (e.g. {missing[0]!r}); "
                         "give the training corpus the exposure was computed on")
    pool = sorted(d for d in by_id if d not in set(forget_ids))
    if len(forget_ids) > len(pool):
        raise InputError(f"forget set: {len(forget_ids)} docs is larger than the retain set ({len(pool)} docs); "
                         "unlearning most of the training data is retraining: retrain without them instead")
    if not holdout:
        raise InputError("holdout: no text the model never trained on; give some with --holdout")
    drawn = random.Random(seed).sample(pool, min(2 * retain_size, len(pool)))
    half = max(1, len(drawn) // 2) if len(drawn) > 1 else len(drawn)
    retain_ids, eval_ids = sorted(drawn[:half]), sorted(drawn[half:])
    grams = {tuple(s[i:i + NGRAM]) for t in work_texts for s in [tok.encode(t, bos=False)]
             for i in range(len(s) - NGRAM + 1)}
    forget, weights, seqs, sources = [], [], [], set()
    for d in forget_ids:
        seq = _seq(tok, by_id[d])
        if spans and spans.get(d):
            offsets = tok.offsets(by_id[d]) if hasattr(tok, "offsets") else None
            marks = [0.0] + span_marks(by_id[d], spans[d], offsets) + [0.0]       # bos, tokens, eos
            sources.add("spans")
        elif grams:
            marks = ngram_marks(seq, grams)
            sources.add("work-ngrams")
        else:
            marks = [1.0] * len(seq)
            sources.add("all")
        if len(marks) != len(seq):
            raise InputError(f"forget doc {d!r}: tokens and spans disagree; check the spans are character offsets")
        if sum(marks) == 0:                        # work not located: weigh the whole doc
            marks = [1.0] * len(seq)
        seqs.append(seq)
        for start, w in windows_with_starts(seq, max_len):
            if len(w) >= 2:
                forget.append(w)
                weights.append(marks[start + 1:start + len(w)])
    retain = _windows(tok, [by_id[d] for d in retain_ids], max_len)
    retain_eval = _windows(tok, [by_id[d] for d in eval_ids], max_len)
    background = BigramReference.fit((_seq(tok, by_id[d]) for d in pool), vocab_size=len(tok))
    hold = _windows(tok, [t for _, t in holdout], max_len)
    all_tokens = [t for s in seqs for t in s] + [t for w in retain + retain_eval + hold for t in w]
    unk = sum(1 for t in all_tokens if t == tok.unk_id) / max(1, len(all_tokens))
    if unk > MAX_UNK_RATE:
        raise InputError(f"tokenizer mismatch: {unk:.0%} of the text's tokens are unknown to the model's tokenizer; "
                         "give the training data of this model")
    return UnlearnData(forget, weights, retain, hold, seqs, forget_ids, retain_ids, [h for h, _ in holdout],
                       pad_id=tok.pad_id, unk_rate=unk, span_source="+".join(sorted(sources)),
                       background=background, retain_eval=retain_eval, retain_eval_ids=eval_ids)
