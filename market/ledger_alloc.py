"""Exact pool splits: integer amounts that add up to the pool, by largest remainder.

Everything here is pure (numpy / pyarrow in, numpy / pyarrow out, no database), so the ledger,
its ``--dry-run``, ``tribute ledger verify`` and the benchmark all run the same code.

How a pool of ``A`` minor units is split over rows with weights:

1. Shares are clipped or refused when negative (policy), normalised by their sum per pool and
   quantised to integer weights ``w = round(share / sum * 2**32)``; the sums are exact integer
   sums of the shares in 40-bit fixed point (relative to the largest share), so they do not
   depend on row order.
2. Each row gets ``floor(A * w / W)`` (exact integer arithmetic; Python integers where int64
   could overflow), and the ``A - sum(floor)`` leftover units go one each to the rows with the
   largest remainders ``A * w mod W``.
3. Ties between equal remainders are broken by a deterministic key: the rank of the row's key
   (work or holder id) rotated by a seeded hash of the pool's id, so no holder is favoured in
   every pool; the residual ("unattributed") row always ranks last.

Speed (10^7 rows): the leftover units are handed out without an argsort of the rows -- the packed
keys ``(group, remainder)`` are sorted as values and each pool's threshold key is read at its
``left``-th position; only rows exactly at a threshold shared by more rows than units left are
ordered by tie key (see ``_largest_remainder_sorted``). int64 is used only where the bound
``amount * max weight < 2**63`` is checked per call; otherwise the Python-integer path runs. The
floor division is estimated in float64 and corrected exactly in int64 (``_divmod_pos``, where
quotients stay below 2**50). When every output has exactly one unattributed row and no rule
drops a row (the usual run), that row serves as the pool's residual row in place, so the 10^7-row
arrays are neither copied nor concatenated (``_output_pool_in_place``); the detail's text columns
are dictionary-encoded (:func:`detail_schema`).

Fresh memory is the other cost (a new 80 MB array costs more in page faults than the arithmetic
on it), so: sums per pool are ``reduceat`` over the runs of one output that the ledger's rows come
in (``_runs``); the elementwise steps run by blocks of ``BLOCK_ROWS`` rows whose temporaries the
allocator reuses (``_chunks``); the leftover units are handed out block by block, each block cut
between runs and sorted on its own, with the few outputs split over several runs decided together
(``_largest_remainder_runs``); and tie keys are computed only for the rows at a tie. Blocks change
no result: every pool is decided from the same ranks.

So a pool is paid exactly, nobody gets a negative amount, a larger weight never gets less, equal
weights differ by at most one minor unit, and the result is the same for any row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError

QUANT_BITS = 32
QUANT = float(1 << QUANT_BITS)
TIE_SEED = 20261129
BLOCK_ROWS = 1 << 20    # rows per block of the elementwise steps and of the leftover-unit sorts
_I63 = (1 << 63) - 1


def _runs(group: np.ndarray):
    """``(starts, run_group)`` of the runs of equal ids in ``group`` (row order), or None when the
    rows are scattered (more than one run per 8 rows: a bincount is then cheaper). The ledger's
    rows come grouped by output, so 10^7 rows are ~10^5 runs and sums per group are a
    ``reduceat`` over the runs (exact int64) instead of a float ``bincount`` over the rows."""
    n = len(group)
    if n < 2:
        return None
    brk = np.flatnonzero(group[1:] != group[:-1])
    if len(brk) + 1 > n // 8:
        return None
    brk += 1
    starts = np.concatenate(([0], brk))
    return starts, group[starts]


def _run_counts(runs, n: int, n_groups: int) -> np.ndarray:
    """Rows per group from the runs of ``n`` rows."""
    starts, rg = runs
    return np.bincount(rg, weights=np.diff(np.append(starts, n)), minlength=n_groups).astype(np.int64)


def _group_sum(group: np.ndarray, values: np.ndarray, n_groups: int, counts: np.ndarray | None = None,
               runs=None) -> np.ndarray:
    """Exact int64 sums per group, whatever the row order (floats only where provably exact).

    ``counts`` (rows per group) may be passed when the caller has it, to save a pass; ``runs``
    (:func:`_runs` of ``group``) sums in int64 over the runs, where no sum can reach 2**63."""
    if len(values) == 0:
        return np.zeros(n_groups, dtype=np.int64)
    vmax = max(abs(int(values.max())), abs(int(values.min())))
    if runs is not None and vmax * len(values) <= _I63:
        starts, rg = runs
        out = np.zeros(n_groups, dtype=np.int64)
        np.add.at(out, rg, np.add.reduceat(values, starts))
        return out
    if vmax * len(values) < (1 << 53):                  # no count needed to bound the float sums
        cmax = len(values)
    else:
        cmax = int((np.bincount(group, minlength=n_groups) if counts is None else counts).max())
    if vmax * cmax < (1 << 53):
        return np.rint(np.bincount(group, weights=values, minlength=n_groups)).astype(np.int64)
    out = np.zeros(n_groups, dtype=object)
    np.add.at(out, group, values.astype(object))
    if any(abs(int(x)) > _I63 for x in out):
        raise InputError("a pool's total weight exceeds 64 bits; use smaller weights")
    return out.astype(np.int64)


def _chunked_sums(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """:func:`_group_sum` for rows in any order, by chunks (float sums where provably exact)."""
    if len(values) == 0 or max(abs(int(values.max())), abs(int(values.min()))) * len(values) >= (1 << 53):
        return _group_sum(group, values, n_groups)
    out = np.zeros(n_groups)
    for a, b in _chunks(len(values)):
        out += np.bincount(group[a:b], weights=values[a:b], minlength=n_groups)
    return np.rint(out).astype(np.int64)


def split_exact(group: np.ndarray, weight: np.ndarray, amount: np.ndarray, tiekey, *,
                total_w: np.ndarray | None = None, counts: np.ndarray | None = None, runs=None,
                block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Split ``amount[g]`` over the rows of each group ``g`` by integer ``weight``, exactly.

    Args:
        group: int64 group index per row (0..G-1).
        weight: int64 non-negative weight per row.
        amount: int64 non-negative pool amount per group (length G).
        tiekey: int64 tie-break key per row (smaller wins a tie; rows equal in remainder and tie
            key keep their input order), or a function of row indices (None: all rows) giving
            the keys of those rows, so only the rows at a tie are computed.
        total_w: the per-group sums of ``weight`` when the caller already has them (saves a pass;
            they must be exact).
        counts: the number of rows per group, when the caller already has it.
        runs: :func:`_runs` of ``group`` (``(starts, run_group)``: where each run of equal group
            ids starts, and its group), when the caller has it: then the leftover units are
            handed out by blocks of about ``block_rows`` rows (the result does not depend on it).

    Returns:
        int64 amount per row (in the input order); per group they add up to ``amount[g]``.

    Raises:
        InputError: a group with a positive amount has zero total weight.
    """
    group = np.asarray(group, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.int64)
    amount = np.asarray(amount, dtype=np.int64)
    if not callable(tiekey):
        tiekey = np.asarray(tiekey, dtype=np.int64)
    n, g_count = len(group), len(amount)
    if n == 0:
        if np.any(amount != 0):
            raise InputError("a pool with money has no rows to pay; give it a residual row")
        return np.zeros(0, dtype=np.int64)
    if int(weight.min()) < 0 or (g_count and int(amount.min()) < 0):
        raise InputError("negative weight or pool amount; weights and pools must be >= 0")
    counts = np.bincount(group, minlength=g_count) if counts is None else counts
    if total_w is None:
        total_w = _group_sum(group, weight, g_count, counts, runs)
    else:
        total_w = np.asarray(total_w, dtype=np.int64)
    if np.any((amount > 0) & (total_w == 0)):
        bad = int(np.flatnonzero((amount > 0) & (total_w == 0))[0])
        raise InputError(f"pool {bad} has money but no weight to split it by; give it a residual row")
    max_w = int(weight.max())
    if int(amount.max()) > _I63 // max(max_w, 1):
        return _split_exact_objects(group, weight, amount, _all_keys(tiekey), total_w)
    all_w = bool((total_w[counts > 0] > 0).all())        # every row's group has weight
    span = 1 << 33
    by_runs = runs is not None and len(runs[0]) > 1 and int(total_w.max()) < span and g_count < (1 << 29)
    if all_w and int(amount.max()) < (1 << 50):           # quotients <= amount: float estimate within one
        # by runs, the remainders are recomputed block by block later: no 10^7-row array of them
        fl, rem = np.empty(n, dtype=np.int64), None if by_runs else np.empty(n, dtype=np.int64)
        for a, b in _chunks(n):                           # per chunk: the temporaries stay small
            g = group[a:b]
            num = amount[g]
            num *= weight[a:b]
            _divmod_pos(num, total_w[g], fl[a:b], np.empty(b - a, np.int64) if rem is None else rem[a:b])
        del g, num
    else:
        w_row = total_w[group]
        num = amount[group]
        num *= weight
        if all_w:
            fl, rem = np.divmod(num, w_row)
        else:
            ok = w_row > 0
            fl = np.zeros(n, dtype=np.int64)
            fl[ok] = num[ok] // w_row[ok]
            rem = num - fl * np.where(ok, w_row, 0)
        del num, w_row
    left = amount - _group_sum(group, fl, g_count, counts, runs)
    if int(total_w.max()) < span and g_count < (1 << 29):
        if by_runs:
            def rem_of(rows):
                """The remainders ``amount * weight - floor * total`` of ``rows`` (a slice or
                indices), from the floors before any leftover unit is added."""
                if rem is not None:
                    return rem[rows]
                g = group[rows]
                r = amount[g]
                r *= weight[rows]
                r -= fl[rows] * total_w[g]
                return r
            _largest_remainder_runs(fl, group, rem_of, left, tiekey, g_count, span, runs, block_rows)
        else:
            fl += _largest_remainder_sorted(group, rem, left, tiekey, g_count, span, counts)  # bool: +1 / +0
        return fl
    # rank rows inside each group by remainder (desc), then by tie key (asc), then by row
    order = np.lexsort((np.arange(n, dtype=np.int64), _all_keys(tiekey), -rem, group))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    gs = group[order]
    pos = np.arange(n, dtype=np.int64) - starts[gs]
    fl[order] += (pos < left[gs]).astype(np.int64)
    return fl


def _all_keys(tiekey) -> np.ndarray:
    """The tie keys of all rows (``tiekey`` an array or a function of row indices)."""
    return np.asarray(tiekey(None), dtype=np.int64) if callable(tiekey) else tiekey


def _chunks(n: int, size: int = BLOCK_ROWS):
    """``(start, stop)`` of the row chunks that elementwise steps over 10^7 rows run in: their
    temporaries (8 MB) are reused by the allocator from chunk to chunk instead of each being a
    fresh 80 MB array from the kernel (page faults cost more than the arithmetic)."""
    return ((a, min(a + size, n)) for a in range(0, n, size))


def _divmod_pos(num: np.ndarray, den: np.ndarray, fl: np.ndarray, rem: np.ndarray) -> None:
    """``fl, rem = np.divmod(num, den)`` for int64 ``num >= 0``, ``den > 0`` whose quotients are
    below 2**50, exactly, faster: the quotient estimated in float64 (relative error a few 2**-53,
    so off by at most one) and corrected with integer arithmetic. Writes into ``fl`` / ``rem``."""
    q = np.divide(num, den, dtype=np.float64)
    np.floor(q, out=q)
    np.copyto(fl, q, casting="unsafe")
    np.multiply(fl, den, out=rem)
    np.subtract(num, rem, out=rem)
    low = rem < 0
    if low.any():
        fl[low] -= 1
        rem[low] += den[low]
    high = rem >= den
    if high.any():
        fl[high] += 1
        rem[high] -= den[high]


def _largest_remainder_sorted(group, rem, left, tiekey, g_count: int, span: int, counts) -> np.ndarray:
    """0/1 per row: whether the row gets one of its group's ``left`` leftover units.

    The rows of a group ranked by (remainder desc, tie key asc, row asc), the first ``left[g]``
    win. Instead of an argsort of all rows this sorts the packed keys ``group * span + (span - 1
    - rem)`` (values only) and reads each group's threshold key at position ``left[g] - 1`` of
    its block: rows below it win; rows equal to it (equal remainders) are ordered by tie key only
    where the threshold is shared by more rows than it has units left. ``rem`` is overwritten
    (by the keys).
    """
    key = rem                                           # rem is not needed after: the keys take its place
    for a, b in _chunks(len(key)):
        k = key[a:b]
        np.subtract(span - 1, k, out=k)
        k += group[a:b] * span
    sk = np.sort(key)
    starts = np.cumsum(counts) - counts
    has = left > 0
    thr = np.full(g_count, -1, dtype=np.int64)          # no key is < -1: groups without units
    thr[has] = sk[starts[has] + left[has] - 1]
    win, at = np.empty(len(key), dtype=bool), np.empty(len(key), dtype=bool)
    for a, b in _chunks(len(key)):
        t_row = thr[group[a:b]]
        np.less(key[a:b], t_row, out=win[a:b])
        np.equal(key[a:b], t_row, out=at[a:b])
    # how many units the rows at the threshold key share, and how many rows share it
    lo = np.searchsorted(sk, thr[has], side="left")
    hi = np.searchsorted(sk, thr[has], side="right")
    need = np.zeros(g_count, dtype=np.int64)
    need[has] = starts[has] + left[has] - lo
    eq_n = np.zeros(g_count, dtype=np.int64)
    eq_n[has] = hi - lo
    easy = need == eq_n                                 # all rows at the threshold win (no tie to break)
    if easy.all():
        win |= at
    else:
        win |= at & easy[group]
        idx = np.flatnonzero(at & ~easy[group])
        gi = group[idx]
        o = np.lexsort((idx, tiekey(idx) if callable(tiekey) else tiekey[idx], gi))
        idx, gi = idx[o], gi[o]
        first = np.flatnonzero(np.r_[True, gi[1:] != gi[:-1]])
        pos = np.arange(len(idx)) - np.repeat(first, np.diff(np.r_[first, len(idx)]))
        win[idx[pos < need[gi]]] = True
    return win


def _largest_remainder_runs(fl, group, rem_of, left, tiekey, g_count: int, span: int, runs, block: int) -> None:
    """:func:`_largest_remainder_sorted` by blocks of ~``block`` rows cut between runs of one group
    (``fl`` gets +1 where a row wins): a group in one run is decided inside its block (a sort of
    the block's keys; the sort buffers are reused), the few groups in several runs together at the
    end. The same winners as one pass over all rows (rows keep their order inside each block).
    ``rem_of(rows)`` gives the remainders of ``rows`` (a slice or indices; overwritten after)."""
    starts, rg = runs
    n = len(group)
    multi = np.bincount(rg, minlength=g_count) > 1
    pos = np.searchsorted(starts, np.arange(block, n, block))
    bounds = np.unique(np.concatenate(([0], starts[pos[pos < len(starts)]], [n])))
    left_one = np.where(multi, 0, left)
    if multi.any():                                     # their rows, before the blocks overwrite ``rem``
        m_runs = np.flatnonzero(multi[rg])
        lens = np.append(starts[1:], n)[m_runs] - starts[m_runs]
        m_rows = np.repeat(starts[m_runs] - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
        m_rem = rem_of(m_rows)

    def part(rows):
        """The tie keys of a block's rows (``rows``: a slice or row indices)."""
        if not callable(tiekey):
            return tiekey[rows]
        if isinstance(rows, slice):
            return lambda idx: tiekey(np.arange(rows.start, rows.stop) if idx is None else idx + rows.start)
        return lambda idx: tiekey(rows if idx is None else rows[idx])

    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        g = group[a:b]
        cnt = np.bincount(g, minlength=g_count)
        fl[a:b] += _largest_remainder_sorted(g, rem_of(slice(a, b)), np.where(cnt > 0, left_one, 0), part(slice(a, b)),
                                             g_count, span, cnt)
    if multi.any():
        g = group[m_rows]
        cnt = np.bincount(g, minlength=g_count)
        fl[m_rows] += _largest_remainder_sorted(g, m_rem, np.where(multi, left, 0), part(m_rows), g_count, span, cnt)


def _split_exact_objects(group, weight, amount, tiekey, total_w) -> np.ndarray:
    """The same split with Python integers, for pools whose products exceed 64 bits."""
    out = np.zeros(len(group), dtype=np.int64)
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    for rows in np.split(order, bounds):
        g = int(group[rows[0]])
        a, wt = int(amount[g]), int(total_w[g])
        if wt == 0:
            continue
        num = [a * int(weight[i]) for i in rows]
        fl = [x // wt for x in num]
        left = a - sum(fl)
        ranked = sorted(range(len(rows)), key=lambda j: (-(num[j] % wt), int(tiekey[rows[j]])))
        for j in ranked[:left]:
            fl[j] += 1
        out[rows] = fl
    return out


FIXED_BITS = 40


def quantise(share: np.ndarray, group: np.ndarray, n_groups: int, counts: np.ndarray | None = None,
             runs=None) -> np.ndarray:
    """Integer weights ``round(share / group_sum * 2**32)``, independent of row order.

    Shares are first scaled by the largest share and rounded to 40-bit fixed point, so the group
    sums are exact integer sums (the same for any row order).
    """
    share = np.asarray(share, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    if len(share) == 0:
        return np.zeros(0, dtype=np.int64)
    m = float(share.max())
    if m <= 0:
        return np.zeros(len(share), dtype=np.int64)
    # the same float operations as floor(share / m * 2**40 + 0.5), in one buffer
    tmp = np.divide(share, m)
    tmp *= float(1 << FIXED_BITS)
    tmp += 0.5
    np.floor(tmp, out=tmp)                              # integer values <= 2**40, exact in float64
    counts = np.bincount(group, minlength=n_groups) if counts is None else counts
    if int(counts.max()) < (1 << (53 - FIXED_BITS)):
        # every partial sum stays below 2**53: the float sums are the exact integer sums
        if runs is not None:
            sums = np.zeros(n_groups)
            np.add.at(sums, runs[1], np.add.reduceat(tmp, runs[0]))
            sums = np.rint(sums).astype(np.int64)
        else:
            sums = np.rint(np.bincount(group, weights=tmp, minlength=n_groups)).astype(np.int64)
    else:
        sums = _group_sum(group, tmp.astype(np.int64), n_groups, counts)
    if (sums > 0).all():
        # floor(fixed / denom * 2**32 + 0.5) (the int64 operands as float64, as numpy's true
        # division converts them), written back into tmp's buffer as int64
        sums_f = sums.astype(np.float64)
        out = tmp.view(np.int64)
        for a, b in _chunks(len(tmp)):
            den = sums_f[group[a:b]]
            np.divide(tmp[a:b], den, out=den)
            den *= QUANT
            den += 0.5
            np.floor(den, out=den)
            np.copyto(out[a:b], den, casting="unsafe")
        return out
    fixed = tmp.astype(np.int64)
    denom = sums[group].astype(np.float64)
    q = np.zeros(len(share), dtype=np.int64)
    ok = denom > 0
    q[ok] = np.floor(fixed[ok] / denom[ok] * QUANT + 0.5).astype(np.int64)
    return q


def rank_strings(values) -> tuple[np.ndarray, int]:
    """Rank of each value among the sorted distinct non-null values; nulls rank last."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(values, pa.string()) if not isinstance(values, (pa.Array, pa.ChunkedArray)) else values
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(arr)
    dictionary = enc.dictionary
    k = len(dictionary)
    by_value = pc.array_sort_indices(dictionary).to_numpy().astype(np.int64) if k else np.zeros(0, np.int64)
    rank_of_code = np.empty(k, dtype=np.int64)
    rank_of_code[by_value] = np.arange(k, dtype=np.int64)
    idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    out = np.where(idx >= 0, rank_of_code[np.maximum(idx, 0)] if k else 0, k)
    return out.astype(np.int64), k


_HASH_CACHE: dict[int, tuple[list, np.ndarray]] = {}


def _id_hashes(ids: list) -> np.ndarray:
    """Seeded 64-bit hashes of pool ids (cached for the last list seen: one batch hashes once)."""
    hit = _HASH_CACHE.get(id(ids))
    if hit is not None and hit[0] is ids:
        return hit[1]
    # stable_hash64(id, TIE_SEED) for each id, with the key built once
    import hashlib

    import functools

    mk = functools.partial(hashlib.blake2b, digest_size=8, key=TIE_SEED.to_bytes(8, "little", signed=False))
    digests = b"".join([mk((x if isinstance(x, str) else str(x)).encode("utf-8")).digest() for x in ids])
    h = np.frombuffer(digests, dtype="<u8").astype(np.uint64)
    _HASH_CACHE.clear()
    _HASH_CACHE[id(ids)] = (ids, h)
    return h


def rotate_ties(rank: np.ndarray, k: int, group_ids: list[str], group: np.ndarray) -> np.ndarray:
    """Tie keys: ``(rank + offset(pool)) mod k`` per row; rank ``k`` (the residual) stays last."""
    offs = _id_hashes(group_ids) % np.uint64(max(k, 1))
    offs = offs.astype(np.int64)
    rot = offs[group]
    rot += rank                     # < 2k: mod k is one conditional subtraction
    np.subtract(rot, max(k, 1), out=rot, where=rot >= max(k, 1))
    rot[rank >= k] = k
    return rot


# ---------------------------------------------------------------------------------------------
# One allocation batch: revenue events -> platform / training pool / output pool -> accounts

SHARE_COLUMNS = ("output_id", "work_id", "holder_id", "share")
EXPOSURE_COLUMNS = ("work_id", "holder_id", "weight")


@dataclass
class Allocation:
    """The outcome of allocating a batch of revenue events (nothing written yet).

    ``detail`` has one row per amount (pool, event_key, output_id, work_id, holder_id, account,
    share, weight, amount; :func:`detail_schema`: the text columns are dictionary-encoded);
    ``split`` and ``distribute`` are the posting lines ``{account:
    minor units}`` of the two transactions (revenue split, pool distribution); each sums to 0.
    """

    detail: "object"
    split: dict[str, int]
    distribute: dict[str, int]
    stats: dict[str, int]


def holder_account(holder_id: str) -> str:
    return f"holder:{holder_id}"


def _lines(accounts, amounts) -> dict[str, int]:
    """``{account: sum of amounts}`` (exact int64 sums by Arrow's hash aggregation)."""
    import pyarrow as pa

    t = pa.table({"a": accounts, "v": pa.array(amounts, pa.int64()) if not isinstance(amounts, (pa.Array, pa.ChunkedArray)) else amounts})
    if t.num_rows == 0:
        return {}
    g = t.group_by("a").aggregate([("v", "sum")])
    return {a: int(v) for a, v in zip(g.column("a").to_pylist(), g.column("v_sum").to_pylist()) if a is not None}


def _sorted_lines(accounts, sums: np.ndarray) -> dict[str, int]:
    """``{account: sum}`` with the keys in sorted order (sorted by Arrow: UTF-8 byte order is code
    point order, so :func:`_merge`'s ``sorted`` then finds them in order)."""
    import pyarrow.compute as pc

    order = pc.sort_indices(accounts).to_numpy()
    return dict(zip(accounts.take(order).to_numpy(zero_copy_only=False).tolist(), sums[order].tolist()))


def _merge(*parts: dict[str, int]) -> dict[str, int]:
    """The sum of the posting lines ``parts``, by account (sorted), without zero lines. Fast when
    the largest part (10^5 holders) already has int values and sorted keys."""
    parts = sorted(parts, key=len, reverse=True)
    out = dict(parts[0]) if parts else {}
    if not all(type(v) is int for v in out.values()):
        out = {k: int(v) for k, v in out.items()}
    for p in parts[1:]:
        for k, v in p.items():
            out[k] = out.get(k, 0) + int(v)
    return {k: v for k in sorted(out) if (v := out[k]) != 0}


def _col(table, name: str, kind: str):
    import pyarrow as pa

    if name not in table.column_names:
        raise InputError(f"{kind}: missing column {name!r}; expected columns {', '.join(SHARE_COLUMNS if kind == 'attribution shares' else EXPOSURE_COLUMNS)}")
    c = table.column(name)
    return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c


def compute_allocation(policy, events, shares=None, exposure=None, *, prior_holder: dict[str, int] | None = None,
                       fee_works: set[str] | frozenset = frozenset()) -> Allocation:
    """Allocate ``events`` (pyarrow: event_key, output_id, amount) under ``policy``.

    Args:
        policy: a :class:`~tribute.market.policy.PricingPolicy`.
        events: revenue events of one currency and period; ``amount`` in integer minor units.
        shares: attribution shares (output_id, work_id, holder_id, share); one row per output
            with a null work_id is its explicit unattributed share. Outputs without rows go to
            the residual account.
        exposure: training exposure (work_id, holder_id, weight), any number of rows per work.
        prior_holder: royalties each holder already received in this period (for the cap).
        fee_works: works already paid their fixed fee in this period.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    events = events.combine_chunks()
    n_ev = events.num_rows
    ev_keys = events.column("event_key").to_pylist()
    ev_out = events.column("output_id")
    amount = events.column("amount").to_numpy().astype(np.int64)
    if np.any(amount < 0):
        raise InputError("revenue events: negative amount; book refunds as adjustments, not negative revenue")
    # 1. revenue split, 3 rows per event: platform, training pool, output pool
    sw = np.array(policy.split_weights(), dtype=np.int64)
    g3 = np.repeat(np.arange(n_ev, dtype=np.int64), 3)
    tie3 = rotate_ties(np.tile(np.arange(3, dtype=np.int64), n_ev), 3, ev_keys, g3)
    parts = split_exact(g3, np.tile(sw, n_ev), amount, tie3).reshape(n_ev, 3) if n_ev else np.zeros((0, 3), np.int64)
    plat, train, outp = parts[:, 0], parts[:, 1], parts[:, 2]

    detail: list = []
    ev3 = np.repeat(np.arange(n_ev, dtype=np.int64), 3)
    no_text = _dict(np.zeros(3 * n_ev, np.int64), pa.array([], pa.string()), mask=np.ones(3 * n_ev, bool))
    ev_out_s = (ev_out.combine_chunks() if isinstance(ev_out, pa.ChunkedArray) else ev_out).cast(pa.string())
    detail.append(pa.table({
        "pool": _dict(np.zeros(3 * n_ev, np.int64), pa.array(["split"], pa.string())),
        "event_key": _dict(ev3, pa.array(ev_keys, pa.string())),
        "output_id": _dict(ev3, ev_out_s),
        "work_id": no_text,
        "holder_id": no_text,
        "account": _dict(np.tile(np.arange(3, dtype=np.int64), n_ev),
                         pa.array(["platform", "pool:training", "pool:output"], pa.string())),
        "share": pa.nulls(3 * n_ev, pa.float64()),
        "weight": pa.array(np.tile(sw, n_ev), pa.int64()),
        "amount": pa.array(parts.reshape(-1), pa.int64()),
    }))

    # 2. output pool, per event, by attribution shares
    out_detail, n_unshared, out_lines = _output_pool(policy, events, shares, outp, ev_keys)
    detail.append(out_detail)
    # 3. training pool, the batch's total, by exposure
    t_total = int(train.sum())
    tr_detail, n_works = _training_pool(policy, exposure, t_total)
    detail.append(_as_detail(tr_detail))
    tr_lines = _lines(tr_detail.column("account"), tr_detail.column("amount"))
    royalty_lines = _merge(out_lines, tr_lines)
    # 4. caps per holder and period
    cap_detail = _caps(policy, royalty_lines, prior_holder or {})
    detail.append(_as_detail(cap_detail))
    # 5. fixed fee per exposed work (once per period), paid by the platform
    fee_detail = _fees(policy, exposure, fee_works)
    detail.append(_as_detail(fee_detail))
    table = pa.concat_tables(detail)

    revenue = int(amount.sum())
    split = _merge({"world:revenue": -revenue, "platform": int(plat.sum()),
                    "pool:training": t_total, "pool:output": int(outp.sum())})
    small = pa.concat_tables([cap_detail, fee_detail])
    fee_total = int(pc.sum(fee_detail.column("amount")).as_py() or 0)
    dist = _merge(
        {"pool:output": -int(outp.sum()), "pool:training": -t_total, "platform": -fee_total},
        royalty_lines, _lines(small.column("account"), small.column("amount")),
    )
    stats = {"events": n_ev, "revenue": revenue, "platform": int(plat.sum()), "training_pool": t_total,
             "output_pool": int(outp.sum()), "outputs_without_shares": n_unshared, "exposed_works": n_works,
             "fees": fee_total, "rows": table.num_rows}
    return Allocation(detail=table, split=split, distribute=dist, stats=stats)


def _np(col, dtype) -> np.ndarray:
    """A numeric Arrow column (chunked or not, no nulls) as a numpy array of ``dtype`` (a view of
    the Arrow buffer, read-only, when it has one chunk of that type)."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray) and col.num_chunks == 1:
        col = col.chunk(0)
    return col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _codes(col) -> np.ndarray:
    """An integer code column (nulls read as -1) as numpy: int32 kept as it is, else int64."""
    import pyarrow as pa

    return _np(col.fill_null(-1) if col.null_count else col, np.int32 if col.type == pa.int32() else np.int64)


def _strings(col):
    """A string column to take from: a single array when it has one chunk, else the chunked array."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        if col.num_chunks == 0:
            return pa.array([], col.type)
    return col


DETAIL_TEXT = ("pool", "event_key", "output_id", "work_id", "holder_id", "account")
def detail_schema():
    """The schema of ``Allocation.detail``: the text columns dictionary-encoded (int32 indices),
    so 10^7 rows repeat ~10^5 distinct ids without copying a string per row."""
    import pyarrow as pa

    text = pa.dictionary(pa.int32(), pa.string())
    return pa.schema([(c, text) for c in DETAIL_TEXT] + [("share", pa.float64()), ("weight", pa.int64()),
                                                        ("amount", pa.int64())])


def _dict(indices: np.ndarray, dictionary, mask: np.ndarray | None = None):
    """A dictionary array (int32 indices) over ``dictionary``; ``mask`` marks nulls."""
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32, copy=False), mask=mask), dictionary)


def _as_detail(table):
    """A detail part with plain string columns cast to the detail schema."""
    return table.cast(detail_schema())


def _dict_take(col, rows: np.ndarray | None, n_null: int, nulls: np.ndarray | None = None):
    """``col[rows]`` (``rows`` None: all of ``col``) followed by ``n_null`` nulls, as a dictionary
    array (int32 indices); ``nulls`` marks more null rows among the taken ones.

    A dictionary-encoded column (the ledger's ``batch_shares``) is taken through its indices, so
    no string is copied; a plain column is dictionary-encoded first."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            col = col.chunk(0)
        elif pa.types.is_dictionary(col.type) and all(c.dictionary.equals(col.chunk(0).dictionary) for c in col.chunks):
            col = pa.DictionaryArray.from_arrays(pa.concat_arrays([c.indices for c in col.chunks]), col.chunk(0).dictionary)
        else:
            col = col.cast(pa.string()).combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col.cast(pa.string()))
    if n_null == 0 and col.indices.null_count == 0 and nulls is not None:
        # every row indexes an entry: only the ``nulls`` rows become nulls (their indices stay)
        code = col.indices.to_numpy()
        sel = (code if rows is None else code[rows]).astype(np.int32, copy=False)
        return pa.DictionaryArray.from_arrays(pa.array(sel, mask=nulls), col.dictionary.cast(pa.string()))
    code = col.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    n_take = len(code) if rows is None else len(rows)
    sel = np.empty(n_take + n_null, dtype=np.int32)
    sel[:n_take] = code if rows is None else code[rows]
    sel[n_take:] = -1
    nulls = sel < 0 if nulls is None else (sel < 0) | np.concatenate([nulls, np.ones(n_null, bool)])
    sel[nulls] = 0
    return pa.DictionaryArray.from_arrays(pa.array(sel, mask=nulls), col.dictionary.cast(pa.string()))


def _kept(values: np.ndarray, mask: np.ndarray | None, n_keep: int, tail: np.ndarray) -> np.ndarray:
    """``values[mask]`` (or all ``values``) followed by ``tail``, written into one new array."""
    out = np.empty(n_keep + len(tail), dtype=np.result_type(values, tail))
    if mask is None:
        out[:n_keep] = values
    else:
        np.compress(mask, values, out=out[:n_keep])
    out[n_keep:] = tail
    return out


def _tail_mask(n_keep: int, tail: np.ndarray) -> np.ndarray | None:
    """Nulls for the NaN values of ``tail`` placed after ``n_keep`` finite values (None: none)."""
    nan = np.isnan(tail)
    if not nan.any():
        return None
    mask = np.zeros(n_keep + len(tail), dtype=bool)
    mask[n_keep:] = nan
    return mask


def _output_pool_in_place(policy, events, ev_keys, outp, ev, counts, share, w, tie_at, k, is_res, res_w, hcode, work,
                          holder, runs):
    """The output pools when nothing is dropped and every event has exactly one unattributed row
    (the usual shape of an attribution run): that row is the event's residual row, in place, so
    the 10^7-row arrays are split and turned into detail columns without copies. Gives the same
    amounts as the general path (the residual row's tie key is unique in its pool, so its
    position does not matter; the other rows keep their order)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n_ev = len(outp)
    res_pos = np.flatnonzero(is_res)
    res_ev = ev[res_pos]
    res_tie = max(k, 1) + 1

    def tie(idx):
        """Tie keys of rows ``idx``: the residual rows rank after every work."""
        t = tie_at(idx)
        t[is_res if idx is None else is_res[idx]] = res_tie
        return t
    tot = _group_sum(ev, w, n_ev, counts, runs)
    if np.any(tot == 0):
        # a group whose kept weight is zero (all shares clipped to 0) pays its residual row
        res_w = np.where(tot == 0, 1, res_w)
        w[res_pos] = res_w[res_ev]
    amounts = split_exact(ev, w, outp, tie, total_w=np.where(tot == 0, 1, tot), counts=counts, runs=runs)
    # holder accounts: code -1 (the residual rows) reads the last slot of each lookup
    n_h = int(hcode.max()) + 1
    first = np.full(n_h + 1, -1, dtype=np.int64)       # a row of each holder code (its name)
    for a, b in _chunks(len(hcode)):
        first[hcode[a:b]] = np.arange(a, b, dtype=np.int64)
    first = first[:n_h]
    names = holder.take(pa.array(first[first >= 0])).cast(pa.string())
    names = names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names
    acc_dict = pc.binary_join_element_wise("holder:", names, "")
    n_acc = len(acc_dict)
    code_pos = np.append(np.cumsum(first >= 0) - 1, n_acc).astype(np.int32)
    acc_idx = code_pos[hcode]                           # int32: the detail's dictionary indices as they are
    sums = _chunked_sums(acc_idx, amounts, n_acc + 1)
    lines = _sorted_lines(acc_dict, sums[:n_acc])
    if int(sums[n_acc]):
        lines[policy.output_residual_account] = lines.get(policy.output_residual_account, 0) + int(sums[n_acc])
    # detail rows: every row, but residual rows that carry nothing (no weight, no money)
    idle = res_pos[(amounts[res_pos] == 0) & (w[res_pos] == 0)]
    rows = None
    if len(idle):
        sel = np.ones(len(ev), dtype=bool)
        sel[idle] = False
        rows = np.flatnonzero(sel)
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])
    ev_out = events.column("output_id")
    ev_out = ev_out.combine_chunks() if isinstance(ev_out, pa.ChunkedArray) else ev_out
    ev_d, res_d = pick(ev).astype(np.int32), pick(is_res)
    acc_d = pick(acc_idx)
    n_rows = len(ev_d)
    table = pa.table({
        "pool": _dict(np.zeros(n_rows, np.int32), pa.array(["output"], pa.string())),
        "event_key": _dict(ev_d, pa.array(ev_keys, pa.string())),
        "output_id": _dict(ev_d, ev_out.cast(pa.string())),
        "work_id": _dict_take(work, rows, 0, nulls=res_d),
        # the residual rows (null holder) index a null entry after the names: in range, no copy
        "holder_id": _dict(acc_d, pa.concat_arrays([names, pa.nulls(1, pa.string())]), mask=res_d),
        "account": _dict(acc_d, pa.concat_arrays([acc_dict, pa.array([policy.output_residual_account], pa.string())])),
        "share": pa.array(pick(share), pa.float64()),
        "weight": pa.array(pick(w), pa.int64()),
        "amount": pa.array(pick(amounts), pa.int64()),
    })
    return table, 0, lines


def _output_pool(policy, events, shares, outp: np.ndarray, ev_keys: list):
    import pyarrow as pa
    import pyarrow.compute as pc

    n_ev = events.num_rows
    ev_idx = pa.table({"_ev": pa.array(np.arange(n_ev, dtype=np.int64)), "output_id": events.column("output_id")})
    if shares is not None and shares.num_rows:
        missing = [c for c in SHARE_COLUMNS if c not in shares.column_names]
        if missing:
            raise InputError(f"attribution shares: missing column {missing[0]!r}; expected columns "
                             f"{', '.join(SHARE_COLUMNS)}")
        pre = [c for c in ("_ev", "_wrank", "_hcode") if c in shares.column_names]
        s = shares.select(list(SHARE_COLUMNS) + pre)
        if "_ev" in pre:
            # the caller (the ledger, in DuckDB) already matched rows to events
            j = s.filter(pc.is_valid(s.column("_ev"))) if s.column("_ev").null_count else s
        elif pc.count_distinct(ev_idx.column("output_id")).as_py() == n_ev:
            # one event per output (the usual case): a hash lookup instead of a join
            pos = pc.index_in(s.column("output_id"), value_set=ev_idx.column("output_id").combine_chunks()
                              if isinstance(ev_idx.column("output_id"), pa.ChunkedArray) else ev_idx.column("output_id"))
            s = s.append_column("_ev", pc.cast(pos, pa.int64())).filter(pc.is_valid(pos))
            j = s
        else:
            j = ev_idx.join(s, "output_id", join_type="inner")
    else:
        j = None
    if j is not None and j.num_rows:
        # numeric columns to numpy (one copy each); string columns stay chunked (only taken from)
        ev = _np(j.column("_ev"), np.int64)
        share = _np(j.column("share"), np.float64)
        work = _strings(j.column("work_id"))
        holder = _strings(j.column("holder_id"))
        if not np.isfinite(share).all():
            raise InputError("attribution shares: a share is NaN or infinite; recompute the attribution run")
        if np.any(share < 0):
            if policy.negative == "error":
                raise InputError("attribution shares: negative share (policy output_pool.negative = \"error\"); "
                                 "fix the run or set negative = \"clip\"")
            share = np.maximum(share, 0.0)
        if "_wrank" in j.column_names and "_hcode" in j.column_names:
            # precomputed by the caller: -1 (or null) = unattributed row / no holder
            pre_rank, pre_hcode = _codes(j.column("_wrank")), _codes(j.column("_hcode"))
            is_res = pre_rank < 0
            bad_holder = ~is_res & (pre_hcode < 0)
        else:
            is_res = work.is_null().to_numpy(zero_copy_only=False)
            bad_holder = ~is_res & holder.is_null().to_numpy(zero_copy_only=False)
        if bad_holder.any():
            raise InputError("attribution shares: a row names a work but no holder_id; fill holder_id")
    else:
        ev = np.zeros(0, np.int64)
        share = np.zeros(0)
        work = pa.array([], pa.string())
        holder = pa.array([], pa.string())
        is_res = np.zeros(0, bool)
    # every event gets one residual row (weight 0 unless the input or the rules put some there)
    runs = _runs(ev)
    if runs is not None:
        ev_counts = _run_counts(runs, len(ev), n_ev)
    else:
        ev_counts = np.bincount(ev, minlength=n_ev) if len(ev) else np.zeros(n_ev, np.int64)
    has_rows = ev_counts > 0
    if j is not None and "_wrank" in j.column_names:
        k = int(pre_rank.max()) + 1 if len(pre_rank) else 0

        def tie_at(idx):
            """Tie keys of rows ``idx`` (None: all), from the precomputed ranks."""
            r, res = (pre_rank, is_res) if idx is None else (pre_rank[idx], is_res[idx])
            return rotate_ties(np.where(res, k, r), k, ev_keys, ev if idx is None else ev[idx])
    else:
        rank, k = rank_strings(work)

        def tie_at(idx):
            """Tie keys of rows ``idx`` (None: all), from the ranks of the work ids."""
            return rotate_ties(rank if idx is None else rank[idx], k, ev_keys, ev if idx is None else ev[idx])
    w = quantise(share, ev, n_ev, ev_counts, runs)
    # the tie keys of all rows only where a rule ranks every row (top-k); else only at ties
    tie = tie_at(None) if policy.top_k > 0 and len(ev) else None
    attributed = ~is_res
    moved = np.zeros(n_ev, dtype=np.int64)
    keep = attributed.copy()
    if policy.min_share > 0:
        floor_w = int(policy.min_share * (1 << QUANT_BITS))
        tiny = attributed & (w < floor_w)
        keep &= ~tiny
    if policy.top_k > 0 and len(ev):
        order = np.lexsort((tie, -w, ~attributed, ev))
        g = ev[order]
        counts = np.bincount(g, minlength=n_ev)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        pos = np.empty(len(ev), np.int64)
        pos[order] = np.arange(len(ev)) - starts[g]
        keep &= pos < policy.top_k
    dropped = attributed & ~keep
    if dropped.any():
        np.add.at(moved, ev[dropped], w[dropped])
    res_w_input = np.zeros(n_ev, dtype=np.int64)
    if is_res.any():
        np.add.at(res_w_input, ev[is_res], w[is_res])
    res_share = np.zeros(n_ev)
    if is_res.any():
        np.add.at(res_share, ev[is_res], share[is_res])
    res_w = res_w_input + (moved if policy.residual == "unattributed" else 0)
    res_w = np.where(~has_rows, 1, res_w)
    if j is not None and "_hcode" in j.column_names and not dropped.any() and is_res.any() and \
            bool((np.bincount(ev[is_res], minlength=n_ev) == 1).all()):
        return _output_pool_in_place(policy, events, ev_keys, outp, ev, ev_counts, share, w, tie_at, k, is_res, res_w,
                                     pre_hcode, work, holder, runs)
    if tie is None:
        tie = tie_at(None) if len(ev) else np.zeros(0, np.int64)
    kw = keep
    n_keep = int(kw.sum())
    grp = _kept(ev, kw, n_keep, np.arange(n_ev, dtype=np.int64))
    wts = _kept(w, kw, n_keep, res_w)
    ties = _kept(tie, kw, n_keep, np.full(n_ev, max(k, 1) + 1, np.int64))
    del tie
    tot = _group_sum(grp, wts, n_ev)
    # a group whose kept weight is zero (all shares clipped to 0) pays its residual row
    res_w = np.where(tot == 0, 1, res_w)
    wts[len(wts) - n_ev:] = res_w
    amounts = split_exact(grp, wts, outp, ties, total_w=np.where(tot == 0, 1, tot))
    kidx = np.flatnonzero(kw)
    res_amt = amounts[n_keep:]
    # residual rows that carry nothing are noise: keep those with weight or money only
    rk = np.flatnonzero((res_amt > 0) | (res_w > 0))
    n_res = len(rk)
    n_rows = n_keep + n_res
    res_account = policy.output_residual_account
    if n_keep and "_hcode" in j.column_names:
        # holder codes from the caller: per-holder totals by bincount, names from the first row per code
        hc = pre_hcode[kidx]
        n_h = int(hc.max()) + 1
        first = np.full(n_h, -1, dtype=np.int64)
        first[hc[::-1]] = np.arange(n_keep - 1, -1, -1, dtype=np.int64)
        names = holder.take(pa.array(kidx[first[first >= 0]])).cast(pa.string())
        code_pos = np.cumsum(first >= 0) - 1
        acc_idx = code_pos[hc]
        del hc
    elif n_keep:
        holders_k = holder.take(pa.array(kidx))
        if isinstance(holders_k, pa.ChunkedArray):
            holders_k = holders_k.combine_chunks()
        enc = pc.dictionary_encode(holders_k)
        names = enc.dictionary.cast(pa.string())
        acc_idx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if n_keep:
        if isinstance(names, pa.ChunkedArray):
            names = names.combine_chunks()
        acc_dict = pc.binary_join_element_wise("holder:", names, "")
        sums = _group_sum(acc_idx, amounts[:n_keep], len(acc_dict))
        lines = _sorted_lines(acc_dict, sums)
        # dictionary columns: indices over kept rows then residual rows, no string copied per row
        accounts = _dict(np.concatenate([acc_idx, np.full(n_res, len(acc_dict), np.int64)]),
                         pa.concat_arrays([acc_dict, pa.array([res_account], pa.string())]))
        works_col = _dict_take(work, kidx, n_res)
        # holder ids from the (small) list of distinct holders, by the codes the lines use
        holders_col = _dict(np.concatenate([acc_idx, np.zeros(n_res, np.int64)]), names,
                            mask=np.concatenate([np.zeros(n_keep, bool), np.ones(n_res, bool)]))
    else:
        accounts = _dict(np.zeros(n_res, np.int64), pa.array([res_account], pa.string()))
        works_col = _dict(np.zeros(n_res, np.int64), pa.array([], pa.string()), mask=np.ones(n_res, bool))
        holders_col = works_col
        lines = {}
    ev_out = events.column("output_id")
    if isinstance(ev_out, pa.ChunkedArray):
        ev_out = ev_out.combine_chunks()
    ev_sel = _kept(grp[:n_keep], None, n_keep, rk)
    res_share_arr = np.where(has_rows, res_share, np.nan)[rk]
    table = pa.table({
        "pool": _dict(np.zeros(n_rows, np.int64), pa.array(["output"], pa.string())),
        "event_key": _dict(ev_sel, pa.array(ev_keys, pa.string())),
        "output_id": _dict(ev_sel, ev_out.cast(pa.string())),
        "work_id": works_col,
        "holder_id": holders_col,
        "account": accounts,
        # kept shares are finite (checked above): only the residual rows' NaN become nulls
        "share": pa.array(_kept(share, kw, n_keep, res_share_arr), pa.float64(), mask=_tail_mask(n_keep, res_share_arr)),
        "weight": pa.array(_kept(wts[:n_keep], None, n_keep, res_w[rk]), pa.int64()),
        "amount": pa.array(_kept(amounts[:n_keep], None, n_keep, res_amt[rk]), pa.int64()),
    })
    res_total = int(res_amt.sum())
    if res_total:
        lines[policy.output_residual_account] = lines.get(policy.output_residual_account, 0) + res_total
    return table, int((~has_rows).sum()), lines


def _training_pool(policy, exposure, total: int):
    import pyarrow as pa

    empty = exposure is None or exposure.num_rows == 0
    if not empty:
        for c in EXPOSURE_COLUMNS:
            _col(exposure, c, "exposure")
        agg = aggregate_exposure(exposure)
        works = agg.column("work_id").to_pylist()
        if len(set(works)) != len(works):
            raise InputError("exposure: a work appears with two different holder_id values; fix the exposure table")
        if any(w is None for w in works) or any(h is None for h in agg.column("holder_id").to_pylist()):
            raise InputError("exposure: a row has no work_id or holder_id; fill them")
        wt = agg.column("weight_sum").to_numpy(zero_copy_only=False).astype(np.float64)
        if np.any(~np.isfinite(wt)) or np.any(wt < 0):
            raise InputError("exposure: weights must be finite and >= 0")
        empty = not (wt > 0).any()
    if empty:
        rows = [] if total == 0 else [(None, None, policy.training_residual_account, None, 1, total)]
        n = 0
    else:
        order = np.argsort(np.array(works, dtype=object), kind="stable")
        works = [works[i] for i in order]
        holders = [agg.column("holder_id").to_pylist()[i] for i in order]
        wt = wt[order]
        g = np.zeros(len(works), np.int64)
        q = quantise(wt, g, 1)
        rank = np.arange(len(works), dtype=np.int64)
        tie = rotate_ties(rank, len(works), ["training"], g)
        amounts = split_exact(g, q, np.array([total], np.int64), tie)
        rows = [(w, h, holder_account(h), float(x), int(qq), int(a))
                for w, h, x, qq, a in zip(works, holders, wt, q, amounts) if qq > 0 or a > 0]
        n = len(rows)
    return pa.table({
        "pool": pa.array(["training"] * len(rows), pa.string()),
        "event_key": pa.nulls(len(rows), pa.string()),
        "output_id": pa.nulls(len(rows), pa.string()),
        "work_id": pa.array([r[0] for r in rows], pa.string()),
        "holder_id": pa.array([r[1] for r in rows], pa.string()),
        "account": pa.array([r[2] for r in rows], pa.string()),
        "share": pa.array([r[3] for r in rows], pa.float64()),
        "weight": pa.array([r[4] for r in rows], pa.int64()),
        "amount": pa.array([r[5] for r in rows], pa.int64()),
    }), n


def aggregate_exposure(exposure):
    """Exposure summed per (work_id, holder_id), sorted by work; row-order independent."""
    import pyarrow as pa

    for c in EXPOSURE_COLUMNS:
        _col(exposure, c, "exposure")
    t = exposure.select(list(EXPOSURE_COLUMNS)).cast(
        pa.schema([("work_id", pa.string()), ("holder_id", pa.string()), ("weight", pa.float64())]))
    t = t.sort_by([("work_id", "ascending"), ("holder_id", "ascending"), ("weight", "ascending")])
    agg = t.group_by(["work_id", "holder_id"], use_threads=False).aggregate([("weight", "sum")])
    return agg.sort_by([("work_id", "ascending"), ("holder_id", "ascending")])


def _empty_detail(pool: str, rows: list[tuple]):
    import pyarrow as pa

    return pa.table({
        "pool": pa.array([pool] * len(rows), pa.string()),
        "event_key": pa.nulls(len(rows), pa.string()),
        "output_id": pa.nulls(len(rows), pa.string()),
        "work_id": pa.array([r[0] for r in rows], pa.string()),
        "holder_id": pa.array([r[1] for r in rows], pa.string()),
        "account": pa.array([r[2] for r in rows], pa.string()),
        "share": pa.nulls(len(rows), pa.float64()),
        "weight": pa.nulls(len(rows), pa.int64()),
        "amount": pa.array([r[3] for r in rows], pa.int64()),
    })


def _caps(policy, royalty_lines: dict[str, int], prior: dict[str, int]):
    rows: list[tuple] = []
    if policy.cap_per_holder > 0:
        got = {a.split(":", 1)[1]: v for a, v in royalty_lines.items() if a.startswith("holder:")}
        for h, amt in sorted(got.items()):
            before = int(prior.get(h, 0))
            excess = min(amt, max(0, before + amt - policy.cap_per_holder))
            if excess > 0:
                rows.append((None, h, holder_account(h), -excess))
                rows.append((None, h, policy.cap_excess_account, excess))
    return _empty_detail("cap", rows)


def _fees(policy, exposure, fee_works):
    rows: list[tuple] = []
    if policy.fixed_fee_per_work > 0 and exposure is not None and exposure.num_rows:
        pairs = sorted(set(zip(exposure.column("work_id").to_pylist(), exposure.column("holder_id").to_pylist())))
        for w, h in pairs:
            if w is not None and h is not None and w not in fee_works:
                rows.append((w, h, holder_account(h), policy.fixed_fee_per_work))
    return _empty_detail("fee", rows)
