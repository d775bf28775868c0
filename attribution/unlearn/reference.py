"""A retrain-like membership level without retraining: a smoothed bigram model of the retain data.

A model retrained without the forget set has never seen the forget text *nor* the holdout text, yet
its membership AUC (forget vs holdout) is rarely 0.5: the two texts differ in how predictable
they are (rare names, words the tokenizer maps to ``<unk>``, style). The benchmark's retrained
reference sat at AUC 0.27 at full size and 0.58 at the quick size, so "as low as possible" or
"0.5" are both wrong targets. A bigram model counted on the retain documents has also seen
neither text, costs one pass of counting, and reproduces that difference: the same Min-K%
membership score computed under it gives an estimate of the retrained model's AUC.

Chosen on a tuning split (forgetting Cedar Literary Agency's or Ashgrove Editions' works, three
corpus seeds, quick and full sizes; never the benchmark's Northwind Press split): counts over all
retain documents (not a sample; a 48-doc sample missed one retrain by 0.43 AUC), interpolation
``lam`` and add-``k`` smoothing below (a grid of lam 0-0.9, k 0.1/1, Min-K 20/50/100 %: mean
|PrivLeak| of the estimate against the retrained models 0.105-0.14, 8 of 12 within 10 %).

Example::

    bg = BigramReference.fit(retain_token_seqs, vocab_size=len(tok))
    bg.membership_auc(data.forget, data.holdout, k=0.2)     # e.g. 0.16: forget text looks *less* familiar
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .metrics import _min_k, auc

LAMBDA = 0.3            # weight of the bigram estimate against the unigram one
ADD_K = 0.1             # add-k smoothing of the unigram estimate


@dataclass
class BigramReference:
    vocab_size: int
    unigrams: Counter = field(default_factory=Counter)
    bigrams: Counter = field(default_factory=Counter)
    contexts: Counter = field(default_factory=Counter)
    lam: float = LAMBDA
    add_k: float = ADD_K

    @classmethod
    def fit(cls, seqs: Iterable[Sequence[int]], vocab_size: int, **kw) -> "BigramReference":
        ref = cls(vocab_size, **kw)
        for s in seqs:
            s = list(s)
            ref.unigrams.update(s)
            ref.bigrams.update(zip(s, s[1:]))
            ref.contexts.update(s[:-1])
        return ref

    @property
    def tokens(self) -> int:
        return sum(self.unigrams.values())

    def logprobs(self, window: Sequence[int]) -> list[float]:
        """Log-probability of each target token of ``window`` (positions 1..)."""
        n, v = self.tokens, self.vocab_size
        out = []
        for a, t in zip(window, window[1:]):
            pu = (self.unigrams[t] + self.add_k) / (n + self.add_k * v)
            c = self.contexts[a]
            out.append(math.log(self.lam * self.bigrams[(a, t)] / c + (1 - self.lam) * pu) if c else math.log(pu))
        return out

    def min_k_scores(self, windows: Sequence[Sequence[int]], k: float) -> list[float]:
        return [_min_k(lp, k) if lp else 0.0 for lp in map(self.logprobs, windows)]

    def membership_auc(self, forget: Sequence[Sequence[int]], holdout: Sequence[Sequence[int]], k: float) -> float:
        """Min-K% AUC forget vs holdout under this model: the retrain-like membership level."""
        return auc(self.min_k_scores(forget, k), self.min_k_scores(holdout, k))

    def forget_ranks(self, forget, holdout, k: float) -> list[float]:
        """Per forget window: the fraction of holdout windows it outscores under this model
        (ties 1/2). Their mean is :meth:`membership_auc`."""
        h = sorted(self.min_k_scores(holdout, k))
        return [(bisect.bisect_left(h, s) + bisect.bisect_right(h, s)) / (2 * len(h))
                for s in self.min_k_scores(forget, k)]


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile ``q`` in [0, 1] of ``values``."""
    v = sorted(values)
    pos = min(max(q, 0.0), 1.0) * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)
