"""The exact index: seeded hashes of normalised word n-grams of the works, with postings.

Layout on disk (every file a plain ``.npy``, memory-mapped on load)::

    keys.npy          uint64[K]   sorted distinct n-gram hashes
    key_offsets.npy   int64[K+1]  CSR: postings of key k are [key_offsets[k], key_offsets[k+1])
    post_work.npy     int32[P]    work number of each posting
    post_pos.npy      int32[P]    word position of the n-gram in that work
    key_content.npy   uint8[K]    content words in the n-gram (see below)
    key_nworks.npy    int32[K]    distinct works the n-gram occurs in

A query hashes the text's n-grams the same way, finds them with one ``searchsorted``, and joins
consecutive hits on the same diagonal (work position - text position) into *maximal verbatim
spans*: a run of k consecutive shared n-grams is a shared stretch of k + n - 1 words.

**The common n-gram rule.** An n-gram is *weak* when fewer than ``min_content_words`` of its
words are content words (not in :data:`~tribute.indexes.text.STOPWORDS`, not pure digits) — e.g.
"out of the corner of his eye he" has two — or when it occurs in more than
``common_max_works`` works (default ``max(3, 1% of works)``): idioms and boilerplate. A span is
reported only when it contains at least one strong n-gram, so a lone idiom is never evidence,
while a long copy that passes through an idiom stays one span.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import IntegrityError
from .text import KeyLookup, content_counts, ngram_hashes, word_hashes

FILES = ("keys", "key_offsets", "post_work", "post_pos", "key_content", "key_nworks")


def save_arrays(folder: Path, index, names) -> list[str]:
    """Write ``index.<name>`` as ``folder/<name>.npy`` for each name (no pickles); returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        np.save(folder / f"{name}.npy", np.ascontiguousarray(getattr(index, name)), allow_pickle=False)
    return [f"{name}.npy" for name in names]


def load_arrays(folder: Path, names, kind: str) -> dict[str, "np.ndarray"]:
    """Memory-map ``folder/<name>.npy`` for each name (no pickles); an unreadable file is an IntegrityError."""
    arrays = {}
    for name in names:
        try:
            arrays[name] = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise IntegrityError(
                f"{folder / (name + '.npy')}: unreadable {kind} index file ({e}); run `tribute index build`"
            ) from e
    return arrays



@dataclass(frozen=True)
class Run:
    """One maximal verbatim span: word positions in the text and in work ``work``."""

    work: int
    doc_word: int      # first word in the text
    work_word: int     # first word in the work
    n_words: int


def common_limit(common_max_works: int, n_works: int) -> int:
    """The number of works an n-gram may occur in before it is common."""
    if common_max_works > 0:
        return common_max_works
    return max(3, -(-n_works // 100))


class ExactIndex:
    """Word n-gram postings of the works (see the module doc)."""

    def __init__(self, n: int, seed: int, min_content_words: int, common_max_works: int, n_works: int,
                 arrays: dict):
        self.n = n
        self.seed = seed
        self.min_content_words = min_content_words
        self.common_max_works = common_max_works
        self.n_works = n_works
        self.keys: np.ndarray = arrays["keys"]
        self.key_offsets: np.ndarray = arrays["key_offsets"]
        self.post_work: np.ndarray = arrays["post_work"]
        self.post_pos: np.ndarray = arrays["post_pos"]
        self.key_content: np.ndarray = arrays["key_content"]
        self.key_nworks: np.ndarray = arrays["key_nworks"]
        limit = common_limit(common_max_works, n_works)
        self._key_lookup: KeyLookup | None = None
        self.key_strong = (np.asarray(self.key_content) >= min_content_words) & (np.asarray(self.key_nworks) <= limit)

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, work_words: list[list[str]], *, n: int, seed: int, min_content_words: int,
              common_max_works: int) -> "ExactIndex":
        """Index the word lists of the works (work number = position in ``work_words``)."""
        empty = cls(n, seed, min_content_words, common_max_works, 0, _empty_arrays())
        return empty.extended(work_words)

    def extended(self, work_words: list[list[str]]) -> "ExactIndex":
        """A new index holding this one's works plus ``work_words`` (numbered after them)."""
        n, seed = self.n, self.seed
        cnt = np.diff(np.asarray(self.key_offsets, dtype=np.int64))
        hs = [np.repeat(np.asarray(self.keys), cnt)]
        works = [np.asarray(self.post_work, dtype=np.int32)]
        poss = [np.asarray(self.post_pos, dtype=np.int32)]
        contents = [np.repeat(np.asarray(self.key_content), cnt)]
        for w, words in enumerate(work_words, start=self.n_works):
            g = ngram_hashes(word_hashes(words, seed), n)
            hs.append(g)
            works.append(np.full(len(g), w, dtype=np.int32))
            poss.append(np.arange(len(g), dtype=np.int32))
            contents.append(np.minimum(content_counts(words, n), 255).astype(np.uint8))
        h, wk, ps = np.concatenate(hs), np.concatenate(works), np.concatenate(poss)
        ct = np.concatenate(contents).astype(np.uint8)
        order = np.lexsort((ps, wk, h))
        h, wk, ps, ct = h[order], wk[order], ps[order], ct[order]
        first = np.ones(len(h), dtype=bool)
        first[1:] = h[1:] != h[:-1]
        kw_first = first.copy()
        kw_first[1:] |= wk[1:] != wk[:-1]
        key_id = np.cumsum(first) - 1
        keys = h[first]
        arrays = {
            "keys": keys,
            "key_offsets": np.append(np.nonzero(first)[0], len(h)).astype(np.int64),
            "post_work": wk, "post_pos": ps, "key_content": ct[first],
            "key_nworks": np.bincount(key_id[kw_first], minlength=len(keys)).astype(np.int32),
        }
        return ExactIndex(n, seed, self.min_content_words, self.common_max_works,
                          self.n_works + len(work_words), arrays)

    def save(self, folder: Path) -> list[str]:
        return save_arrays(folder, self, FILES)

    @classmethod
    def load(cls, folder: Path, *, n: int, seed: int, min_content_words: int, common_max_works: int,
             n_works: int) -> "ExactIndex":
        arrays = load_arrays(folder, FILES, "exact")
        k = len(arrays["keys"])
        if (len(arrays["key_offsets"]) != k + 1 or len(arrays["key_content"]) != k
                or len(arrays["key_nworks"]) != k
                or len(arrays["post_work"]) != len(arrays["post_pos"])
                or (k and int(arrays["key_offsets"][-1]) != len(arrays["post_work"]))
                or (len(arrays["post_work"]) and int(arrays["post_work"].max()) >= n_works)):
            raise IntegrityError(f"{folder}: exact index arrays do not fit together; run `tribute index build`")
        return cls(n, seed, min_content_words, common_max_works, n_works, arrays)

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in FILES))

    def strong_count(self) -> int:
        return int(np.count_nonzero(self.key_strong))

    # -- querying -----------------------------------------------------------------------------
    def runs(self, hashes: np.ndarray) -> list[Run]:
        """Maximal verbatim spans of a text, given its word hashes (see the module doc)."""
        return self.runs_many(hashes, np.array([0, len(hashes)], dtype=np.int64))[0]

    @property
    def _lookup(self) -> KeyLookup:
        if self._key_lookup is None:
            self._key_lookup = KeyLookup(self.keys)
        return self._key_lookup

    def runs_many(self, hashes: np.ndarray, offsets: np.ndarray) -> list[list[Run]]:
        """:meth:`runs` of several texts at once: ``hashes`` holds their word hashes one after the
        other, text ``i`` being ``hashes[offsets[i]:offsets[i+1]]`` (one lookup for all)."""
        n = self.n
        offsets = np.asarray(offsets, dtype=np.int64)
        n_docs = len(offsets) - 1
        out: list[list[Run]] = [[] for _ in range(n_docs)]
        g = ngram_hashes(np.asarray(hashes, dtype=np.uint64), n)
        if len(g) == 0 or len(self.keys) == 0:
            return out
        counts = np.diff(offsets)
        doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), counts)[:len(g)]
        local = np.arange(len(g), dtype=np.int64) - offsets[doc_of]
        ok = local + n <= counts[doc_of]          # n-grams inside one text
        idx = self._lookup.find(g)
        gpos = np.flatnonzero((idx >= 0) & ok)
        if len(gpos) == 0:
            return out
        kid = idx[gpos]
        rep, post = self._postings(kid)
        dc = doc_of[gpos][rep]
        di = local[gpos][rep]
        wk = np.asarray(self.post_work[post], dtype=np.int64)
        wp = np.asarray(self.post_pos[post], dtype=np.int64)
        strong = self.key_strong[kid][rep]
        diag = wp - di
        order = np.lexsort((di, diag, wk, dc))
        dc, di, wk, wp, diag, strong = dc[order], di[order], wk[order], wp[order], diag[order], strong[order]
        brk = np.ones(len(di), dtype=bool)
        brk[1:] = ((dc[1:] != dc[:-1]) | (wk[1:] != wk[:-1]) | (diag[1:] != diag[:-1])
                   | (di[1:] != di[:-1] + 1))
        run_id = np.cumsum(brk) - 1
        starts = np.nonzero(brk)[0]
        ends = np.concatenate([starts[1:], [len(di)]]) - 1
        has_strong = np.bincount(run_id, weights=strong.astype(np.float64), minlength=len(starts)) > 0
        keep = starts[has_strong]
        kend = ends[has_strong]
        for d, w, s, p, e in zip(dc[keep].tolist(), wk[keep].tolist(), di[keep].tolist(), wp[keep].tolist(),
                                 di[kend].tolist()):
            out[d].append(Run(w, s, p, e - s + n))
        return [_maximal(r) if r else r for r in out]

    def _postings(self, kid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rep, post)`` for every (hit, posting) pair of the hit keys ``kid``: the hit's index
        and the posting's index."""
        lo = np.asarray(self.key_offsets[kid], dtype=np.int64)
        cnt = np.asarray(self.key_offsets[kid + 1], dtype=np.int64) - lo
        rep = np.repeat(np.arange(len(kid)), cnt)
        within = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        return rep, lo[rep] + within

    def runs_reference(self, hashes: np.ndarray) -> list[Run]:
        """The one-text implementation :meth:`runs_many` must equal (kept for tests)."""
        n = self.n
        g = ngram_hashes(hashes, n)
        if len(g) == 0 or len(self.keys) == 0:
            return []
        order = np.argsort(g, kind="stable")
        idx = np.empty(len(g), dtype=np.int64)
        idx[order] = np.searchsorted(self.keys, g[order])   # sorted needles: cache-friendly
        idx[idx >= len(self.keys)] = 0
        hit = self.keys[idx] == g
        if not hit.any():
            return []
        doc_pos = np.nonzero(hit)[0]
        kid = idx[hit]
        rep, post = self._postings(kid)
        di = doc_pos[rep].astype(np.int64)
        wk = np.asarray(self.post_work[post], dtype=np.int64)
        wp = np.asarray(self.post_pos[post], dtype=np.int64)
        strong = self.key_strong[kid][rep]
        diag = wp - di
        order = np.lexsort((di, diag, wk))
        di, wk, wp, diag, strong = di[order], wk[order], wp[order], diag[order], strong[order]
        brk = np.ones(len(di), dtype=bool)
        brk[1:] = (wk[1:] != wk[:-1]) | (diag[1:] != diag[:-1]) | (di[1:] != di[:-1] + 1)
        run_id = np.cumsum(brk) - 1
        starts = np.nonzero(brk)[0]
        ends = np.concatenate([starts[1:], [len(di)]]) - 1
        has_strong = np.bincount(run_id, weights=strong.astype(np.float64), minlength=len(starts)) > 0
        out = []
        for s, e, ok in zip(starts.tolist(), ends.tolist(), has_strong.tolist()):
            if ok:
                out.append(Run(int(wk[s]), int(di[s]), int(wp[s]), int(di[e] - di[s]) + n))
        return _maximal(out)


def _maximal(runs: list[Run]) -> list[Run]:
    """Drop runs whose text interval lies inside a longer run of the same work."""
    runs.sort(key=lambda r: (r.work, r.doc_word, -r.n_words))
    out: list[Run] = []
    last_work, reach = -1, -1
    for r in runs:
        end = r.doc_word + r.n_words
        if r.work != last_work:
            last_work, reach = r.work, -1
        if end > reach:
            out.append(r)
            reach = end
    return out


def _empty_arrays() -> dict:
    return {"keys": np.empty(0, np.uint64), "key_offsets": np.zeros(1, np.int64),
            "post_work": np.empty(0, np.int32), "post_pos": np.empty(0, np.int32),
            "key_content": np.empty(0, np.uint8), "key_nworks": np.empty(0, np.int32)}
