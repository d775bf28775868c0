"""Attribution of generated texts to training documents for a causal LM (the CLI's glue).

Training documents longer than the model's context are split into windows
(:func:`~tribute.attribution.lm.token_windows`); a document's loss is the sum of its windows'
losses, so for every method that is linear in the training gradient (graddot, tracin, influence)
the document's score is exactly the sum of its windows' scores, which is what is returned
(gradcos and trak sum per window too; documented as an approximation). Queries (prompt + output)
must fit the context: a longer one is an error, never truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..core.errors import InputError


@dataclass
class TextExamples:
    train: list            # (ids, 0) windows
    groups: np.ndarray     # window -> document index
    queries: list          # (prompt_ids + output_ids, n_prompt)


def encode_texts(encode: Callable[[str, bool], list[int]], max_len: int, docs: Sequence[str],
                 outputs: Sequence[tuple[str, str]], output_ids: Sequence[str] | None = None) -> TextExamples:
    """Windows of the training ``docs`` and (prompt, output) queries as token examples.

    ``encode(text, bos)`` returns token ids (with a leading BOS when ``bos``).
    """
    from .lm import token_windows

    if not docs:
        raise InputError("the training corpus is empty; give at least one document")
    train, groups = [], []
    for d, text in enumerate(docs):
        ids = encode(text, True)
        if len(ids) < 2:
            continue
        for w in token_windows(ids, max_len):
            train.append((w, 0))
            groups.append(d)
    queries = []
    for i, (prompt, out) in enumerate(outputs):
        p = encode(prompt or "", True)
        o = encode(out, False)
        if not o:
            raise InputError(f"output {output_ids[i] if output_ids else i}: empty text; nothing to attribute")
        if len(p) + len(o) > max_len:
            name = output_ids[i] if output_ids else i
            raise InputError(f"output {name}: prompt + output are {len(p) + len(o)} tokens, longer than the "
                             f"model's context ({max_len}); attribute shorter outputs")
        queries.append((p + o, len(p)))
    if not queries:
        raise InputError("no outputs to attribute; give at least one output")
    return TextExamples(train, np.asarray(groups, dtype=np.int64), queries)


def sum_by_document(scores: np.ndarray, groups: np.ndarray, n_docs: int) -> np.ndarray:
    """``[q, n_windows]`` -> ``[q, n_docs]`` by summing each document's windows."""
    out = np.zeros((scores.shape[0], n_docs), dtype=np.float64)
    np.add.at(out.T, groups, scores.T)
    return out
