"""The minhash index: datasketch MinHash-LSH over windows of the works, every candidate verified.

Shingles are word k-grams (``shingle`` words, seeded 64-bit hashes); shingles made only of
stopwords ("of the", "and the") are dropped, because they carry no evidence and they inflate the
similarity of unrelated texts. A work is cut into windows of ``window`` shingles every
``work_stride`` shingles; a text into windows every ``doc_stride`` shingles (a text shorter than a
window is one window). Each window's MinHash goes into / queries a datasketch ``MinHashLSH``.

Whole-document MinHash cannot find a 300-word quote inside a 3,000-word document (Jaccard near
0), and datasketch's LSH Ensemble mis-tunes itself when query and indexed sizes differ (see
FIELD-NOTES): windows of the same size on both sides avoid both problems.

**Verification.** LSH only proposes candidates; those whose MinHash Jaccard estimate lies more
than ``ESTIMATE_SLACK`` below the threshold are dropped, and per (text window, work) only the
most similar work window is verified. Each candidate (work window, text window) is
scored on the true shingle sets: the Jaccard similarity, or — when the text window is shorter
than a full window — the containment of the text window's shingles in the work window, whichever
is larger. Only pairs scoring at least ``minhash_threshold`` and sharing at least ``MIN_SHARED``
(4) shingles are reported, with that score. A short text (at most 4 windows of shingles, e.g. a
model output) is also queried with half windows, which must have at least half of their
shingles in the work window: an edited 12-word quote is then not diluted by the words around it.

**Signatures.** They are computed for all windows at once with numpy, using datasketch's own
permutations and its ``affine32`` scheme (MurmurHash3 finaliser, then ``a * h + b mod 2^32``),
so each one equals ``datasketch.MinHash(num_perm, seed, hashfunc=identity).update_batch`` of the
window's 32-bit shingle values exactly (a test checks this).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import IntegrityError
from .text import ngram_hashes

FILES = ("shingles", "shingle_word", "work_offsets", "win_work", "win_start", "win_len", "signatures")
_M32 = (np.uint32(16), np.uint32(2246822507), np.uint32(13), np.uint32(3266489909), np.uint32(16))
_BATCH_ROWS = 1 << 14
#: texts with at most this many windows of shingles are also queried with half windows
SHORT_TEXT_WINDOWS = 4
#: how far below the threshold a candidate's MinHash Jaccard estimate may be and still be verified
ESTIMATE_SLACK = 0.12
#: a window pair must share at least this many shingles, whatever its score
MIN_SHARED = 4
#: the containment a half window needs (stricter than a full window's score: it is smaller)
HALF_CONTAINMENT = 0.5


def fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch's pre-mix of the affine32 scheme)."""
    s1, m1, s2, m2, s3 = _M32
    with np.errstate(over="ignore"):
        hv = hv ^ (hv >> s1)
        hv = hv * m1
        hv = hv ^ (hv >> s2)
        hv = hv * m2
        return hv ^ (hv >> s3)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b) permutation parameters for ``num_perm`` and ``seed`` (affine32)."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def shingle_values(shingles: np.ndarray) -> np.ndarray:
    """The 32-bit values fed to MinHash (low half of the 64-bit shingle hashes)."""
    return (shingles & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def window_starts(n_shingles: int, window: int, stride: int) -> np.ndarray:
    """Window start offsets: every ``stride``, plus one window ending at the last shingle."""
    if n_shingles <= window:
        return np.zeros(1 if n_shingles else 0, dtype=np.int64)
    starts = np.arange(0, n_shingles - window + 1, stride, dtype=np.int64)
    if starts[-1] + window < n_shingles:
        starts = np.append(starts, n_shingles - window)
    return starts


def signatures(values: np.ndarray, starts: np.ndarray, lens: np.ndarray, a: np.ndarray,
               b: np.ndarray) -> np.ndarray:
    """MinHash signature (uint32[num_perm]) of each window ``values[s:s+l]``, in batches."""
    out = np.empty((len(starts), len(a)), dtype=np.uint32)
    i = 0
    while i < len(starts):
        lo = int(starts[i])
        j = i
        while j < len(starts) and int(starts[j] + lens[j]) - lo <= _BATCH_ROWS:
            j += 1
        j = max(j, i + 1)
        hi = int(max(starts[k] + lens[k] for k in range(i, j)))
        with np.errstate(over="ignore"):
            phv = fmix32(values[lo:hi]).reshape(-1, 1) * a + b
        phv = np.vstack([phv, np.zeros((1, len(a)), dtype=np.uint32)])
        idx = np.empty(2 * (j - i), dtype=np.int64)
        idx[0::2] = starts[i:j] - lo
        idx[1::2] = starts[i:j] + lens[i:j] - lo
        out[i:j] = np.minimum.reduceat(phv, idx, axis=0)[0::2]
        i = j
    return out


def text_shingles(hashes: np.ndarray, words_stop: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes, first word position) of the kept shingles of a text (see the module doc)."""
    g = ngram_hashes(hashes, k)
    if len(g) == 0:
        return g, np.empty(0, dtype=np.int64)
    m = len(g)
    all_stop = np.ones(m, dtype=bool)
    for i in range(k):
        all_stop &= words_stop[i:i + m]
    keep = np.nonzero(~all_stop)[0]
    return g[keep], keep.astype(np.int64)


def _sorted_search(keys: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """``searchsorted(keys, needles)`` clipped to valid positions; the needles are sorted first,
    which is several times faster on large tables (cache-friendly)."""
    order = np.argsort(needles, kind="stable")
    pos = np.empty(len(needles), dtype=np.int64)
    pos[order] = np.searchsorted(keys, needles[order])
    pos[pos >= len(keys)] = 0
    return pos


def _first_last(items: list, members: frozenset) -> tuple[int, int]:
    """Positions of the first and the last item that is in ``members`` (one exists)."""
    first = next(i for i, x in enumerate(items) if x in members)
    last = next(i for i in range(len(items) - 1, -1, -1) if items[i] in members)
    return first, last


@dataclass(frozen=True)
class WindowHit:
    """A verified (work window, text window) pair, in word positions."""

    work: int
    doc_first_word: int
    doc_end_word: int    # one past the last word
    work_first_word: int
    work_end_word: int
    score: float


class MinHashIndex:
    """Windows of the works in a datasketch MinHashLSH (see the module doc)."""

    def __init__(self, *, shingle: int, window: int, work_stride: int, num_perm: int, seed: int,
                 lsh_threshold: float, arrays: dict):
        self.shingle, self.window, self.work_stride = shingle, window, work_stride
        self.num_perm, self.seed, self.lsh_threshold = num_perm, seed, lsh_threshold
        for name in FILES:
            setattr(self, name, arrays[name])
        self.a, self.b = permutations(num_perm, self._mh_seed)
        self._lsh = None
        self._bands: tuple[int, int] | None = None
        self._band_table: tuple[np.ndarray, np.ndarray] | None = None
        self._sets: dict[int, frozenset] = {}

    @property
    def _mh_seed(self) -> int:
        return self.seed % (1 << 32)

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, work_hashes: list[np.ndarray], work_stop: list[np.ndarray], *, shingle: int, window: int,
              work_stride: int, num_perm: int, seed: int, lsh_threshold: float) -> "MinHashIndex":
        """Index the works given their word hashes and stopword masks (work number = position)."""
        arrays = {
            "shingles": np.empty(0, np.uint64), "shingle_word": np.empty(0, np.int32),
            "work_offsets": np.zeros(1, np.int64), "win_work": np.empty(0, np.int32),
            "win_start": np.empty(0, np.int64), "win_len": np.empty(0, np.int32),
            "signatures": np.empty((0, num_perm), np.uint32),
        }
        empty = cls(shingle=shingle, window=window, work_stride=work_stride, num_perm=num_perm, seed=seed,
                    lsh_threshold=lsh_threshold, arrays=arrays)
        return empty.extended(work_hashes, work_stop)

    def extended(self, work_hashes: list[np.ndarray], work_stop: list[np.ndarray]) -> "MinHashIndex":
        """A new index holding this one's works plus the given ones (numbered after them)."""
        n_old = len(self.work_offsets) - 1
        total = int(self.work_offsets[-1])
        sh, sw, offsets, ww, ws, wl = [], [], [], [], [], []
        for w, (h, stop) in enumerate(zip(work_hashes, work_stop), start=n_old):
            g, pos = text_shingles(h, stop, self.shingle)
            starts = window_starts(len(g), self.window, self.work_stride)
            ww.append(np.full(len(starts), w, dtype=np.int32))
            ws.append(starts + total)
            wl.append(np.minimum(self.window, len(g) - starts).astype(np.int32))
            sh.append(g)
            sw.append(pos.astype(np.int32))
            total += len(g)
            offsets.append(total)
        new_sh = np.concatenate(sh) if sh else np.empty(0, np.uint64)
        new_ws = np.concatenate(ws).astype(np.int64) if ws else np.empty(0, np.int64)
        new_wl = np.concatenate(wl).astype(np.int32) if wl else np.empty(0, np.int32)
        all_sh = np.concatenate([np.asarray(self.shingles), new_sh])
        new_sig = signatures(shingle_values(all_sh), new_ws, new_wl, self.a, self.b)
        arrays = {
            "shingles": all_sh,
            "shingle_word": np.concatenate([np.asarray(self.shingle_word)] + sw).astype(np.int32),
            "work_offsets": np.concatenate([np.asarray(self.work_offsets), np.asarray(offsets, np.int64)]),
            "win_work": np.concatenate([np.asarray(self.win_work)] + ww).astype(np.int32),
            "win_start": np.concatenate([np.asarray(self.win_start), new_ws]),
            "win_len": np.concatenate([np.asarray(self.win_len), new_wl]),
            "signatures": np.concatenate([np.asarray(self.signatures), new_sig]),
        }
        return MinHashIndex(shingle=self.shingle, window=self.window, work_stride=self.work_stride,
                            num_perm=self.num_perm, seed=self.seed, lsh_threshold=self.lsh_threshold, arrays=arrays)

    def save(self, folder: Path) -> list[str]:
        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            np.save(folder / f"{name}.npy", np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
        return [f"{name}.npy" for name in FILES]

    @classmethod
    def load(cls, folder: Path, *, n_works: int, **settings) -> "MinHashIndex":
        arrays = {}
        for name in FILES:
            try:
                arrays[name] = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise IntegrityError(
                    f"{folder / (name + '.npy')}: unreadable minhash index file ({e}); run `tribute index build`"
                ) from e
        nw = len(arrays["win_work"])
        sig = arrays["signatures"]
        if (len(arrays["work_offsets"]) != n_works + 1 or len(arrays["win_start"]) != nw
                or len(arrays["win_len"]) != nw or sig.ndim != 2 or sig.shape != (nw, settings["num_perm"])
                or len(arrays["shingles"]) != len(arrays["shingle_word"])):
            raise IntegrityError(f"{folder}: minhash index arrays do not fit together; run `tribute index build`")
        return cls(arrays=arrays, **settings)

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in FILES))

    @property
    def lsh(self):
        """A datasketch ``MinHashLSH`` filled with the stored window signatures (the reference that
        :meth:`candidates` reproduces; built on first use)."""
        if self._lsh is None:
            from datasketch import LeanMinHash, MinHashLSH

            lsh = MinHashLSH(threshold=self.lsh_threshold, num_perm=self.num_perm)
            with lsh.insertion_session() as session:
                for i, sig in enumerate(np.asarray(self.signatures)):
                    session.insert(i, LeanMinHash(seed=self._mh_seed, hashvalues=sig, scheme="affine32"),
                                   check_duplication=False)
            self._lsh = lsh
        return self._lsh

    @property
    def bands(self) -> tuple[int, int]:
        """(b, r): datasketch MinHashLSH's optimal number of bands and rows for the threshold."""
        if self._bands is None:
            from datasketch import MinHashLSH

            ref = MinHashLSH(threshold=self.lsh_threshold, num_perm=self.num_perm)
            self._bands = (ref.b, ref.r)
        return self._bands

    def _band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """uint64 key of every (window, band): the band's r values and the band number, hashed."""
        b, r = self.bands
        sigs = np.asarray(sigs, dtype=np.uint64)[:, : b * r].reshape(len(sigs), b, r)
        with np.errstate(over="ignore"):
            acc = np.broadcast_to(np.arange(1, b + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15),
                                  (len(sigs), b)).copy()
            for j in range(r):
                acc = _mix64(acc ^ sigs[:, :, j])
        return acc

    @property
    def _table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distinct band keys, CSR offsets, work windows) of the stored signatures."""
        if self._band_table is None:
            keys = self._band_keys(self.signatures)
            flat = keys.ravel()
            win = np.repeat(np.arange(len(keys), dtype=np.int64), keys.shape[1])
            order = np.argsort(flat, kind="stable")
            flat, win = flat[order], win[order]
            first = np.ones(len(flat), dtype=bool)
            first[1:] = flat[1:] != flat[:-1]
            self._band_table = (flat[first], np.append(np.nonzero(first)[0], len(flat)), win)
        return self._band_table

    def candidates(self, sigs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, work window) pairs that share a band with each query signature: the
        candidates datasketch's ``MinHashLSH.query`` returns, computed for all rows at once."""
        empty = (np.empty(0, np.int64), np.empty(0, np.int64))
        if len(sigs) == 0 or len(self.win_work) == 0:
            return empty
        keys, offsets, wins = self._table
        q = self._band_keys(sigs)
        flat = q.ravel()
        pos = _sorted_search(keys, flat)
        hit = np.nonzero(keys[pos] == flat)[0]
        if len(hit) == 0:
            return empty
        lo = offsets[pos[hit]]
        cnt = offsets[pos[hit] + 1] - lo
        rows = np.repeat(hit // q.shape[1], cnt)
        within = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        cand = wins[np.repeat(lo, cnt) + within]
        n = len(self.win_work)
        pair = np.unique(rows * n + cand)
        return pair // n, pair % n

    def _work_window_set(self, i: int) -> np.ndarray:
        s = int(self.win_start[i])
        return np.unique(np.asarray(self.shingles[s:s + int(self.win_len[i])]))

    # -- querying -----------------------------------------------------------------------------
    def hits(self, hashes: np.ndarray, stop: np.ndarray, *, doc_stride: int, threshold: float) -> list[WindowHit]:
        """Verified window pairs between a text (its word hashes) and the works.

        A short text (at most ``SHORT_TEXT_WINDOWS`` windows of shingles, e.g. a model output) is
        also queried with half-size windows, so that a short edited quote inside it is not diluted
        by the surrounding words; such a half window must have at least ``HALF_CONTAINMENT`` of its
        shingles inside the work window.
        """
        g, pos = text_shingles(hashes, stop, self.shingle)
        if len(g) == 0 or len(self.win_work) == 0:
            return []
        starts = window_starts(len(g), self.window, doc_stride)
        lens = np.minimum(self.window, len(g) - starts)
        need = np.full(len(starts), threshold)
        half = self.window // 2
        if len(g) <= SHORT_TEXT_WINDOWS * self.window and len(g) > half and half >= 4:
            hs = window_starts(len(g), half, max(1, half // 2))
            starts = np.concatenate([starts, hs])
            lens = np.concatenate([lens, np.minimum(half, len(g) - hs)])
            need = np.concatenate([need, np.full(len(hs), max(threshold, HALF_CONTAINMENT))])
        sigs = signatures(shingle_values(g), starts, lens, self.a, self.b)
        rows, cands = self._best_candidates(sigs, rows_full=lens == self.window, threshold=threshold,
                                            *self.candidates(sigs))
        out: list[WindowHit] = []
        qsets: dict[int, frozenset] = {}
        if len(self._sets) > 200_000:
            self._sets.clear()
        for j, c in zip(rows.tolist(), cands.tolist()):
            q = qsets.get(j)
            if q is None:
                s = int(starts[j])
                q = qsets[j] = frozenset(g[s:s + int(lens[j])].tolist())
            ws = self._sets.get(c)
            if ws is None:
                ws = self._sets[c] = frozenset(self._work_window_set(c).tolist())
            inter = len(q & ws)
            if inter < MIN_SHARED:
                continue
            score = inter / (len(q) + len(ws) - inter)
            if int(lens[j]) < self.window:
                score = max(score, inter / len(q))
            if score >= float(need[j]):
                out.append(self._trimmed_hit(g, pos, int(starts[j]), int(lens[j]), c, q, ws, score))
        return out

    def _best_candidates(self, sigs, rows, cands, *, rows_full: np.ndarray, threshold: float):
        """Pre-filter LSH candidates with the MinHash estimate of their Jaccard, then keep the most
        similar work window per (text window, work): the others overlap it and add nothing to the
        text's span. Only full-size text windows are pre-filtered (their score is a Jaccard); the
        cut-off sits ``ESTIMATE_SLACK`` below the threshold (> 3 standard errors at 128 permutations)."""
        if len(rows) == 0:
            return rows, cands
        est = (sigs[rows] == np.asarray(self.signatures)[cands]).mean(axis=1)
        keep = ~rows_full[rows] | (est >= threshold - ESTIMATE_SLACK)
        rows, cands, est = rows[keep], cands[keep], est[keep]
        work = np.asarray(self.win_work)[cands]
        order = np.lexsort((cands, -est, work, rows))
        rows, cands, work = rows[order], cands[order], work[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (work[1:] != work[:-1])
        return rows[first], cands[first]

    def _trimmed_hit(self, g, pos, s: int, ln: int, c: int, q: frozenset, ws: frozenset, score: float) -> WindowHit:
        """The pair's words, trimmed on both sides to the first and last shared shingle."""
        first, last = _first_last(g[s:s + ln].tolist(), ws) if len(q) > len(ws) or not q <= ws else (0, ln - 1)
        d_first, d_end = int(pos[s + first]), int(pos[s + last]) + self.shingle
        ws0, wl = int(self.win_start[c]), int(self.win_len[c])
        first, last = _first_last(self.shingles[ws0:ws0 + wl].tolist(), q) if not ws <= q else (0, wl - 1)
        w_first = int(self.shingle_word[ws0 + first])
        w_end = int(self.shingle_word[ws0 + last]) + self.shingle
        return WindowHit(int(self.win_work[c]), d_first, d_end, w_first, w_end, float(score))
