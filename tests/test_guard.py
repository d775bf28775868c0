"""The output guard: against a naive reference, adversarial formatting, redaction offsets, the CLI,
and the benchmark's --quick mode."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tribute.core.errors import ConfigError
from tribute.indexes.guard import Guard, GuardConfig, naive_haystacks, naive_spans, skeleton

ROOT = Path(__file__).resolve().parents[1]
RUTH = ("In the days when the judges ruled there was a famine in the land and a certain man of Bethlehem "
        "Judah went to sojourn in the country of Moab he and his wife and his two sons and the name of the man "
        "was Elimelech and the name of his wife Naomi")
COMMON = "it was the best of times and it was the worst of times for all of us"


def _zw(s: str) -> str:
    return "".join(c + ("\u200b" if c.isalpha() and i % 3 == 0 else "") for i, c in enumerate(s))


ATTACKS = {
    "upper case": lambda s: s.upper(),
    "title case": lambda s: s.title(),
    "punctuation": lambda s: ", ".join(s.split()) + "!",
    "newlines and tabs": lambda s: "\n\t ".join(s.split()),
    "no-break spaces": lambda s: "\u00a0".join(s.split()),
    "underscores": lambda s: "_".join(s.split()),
    "zero-width chars in words": _zw,
    "soft hyphens": lambda s: s.replace("an", "a\u00adn"),
    "cyrillic look-alikes": lambda s: s.translate(str.maketrans("aeopcxy", "аеорсху")),
    "greek look-alikes": lambda s: s.translate(str.maketrans("oikv", "οικν")),
    "fullwidth letters": lambda s: "".join(chr(ord(c) + 0xFEE0) if c.isalpha() and c.isascii() else c for c in s),
    "combining accents": lambda s: "".join(c + "\u0301" if c in "aeiou" else c for c in s),
    "math bold": lambda s: "".join(chr(0x1D41A + ord(c) - 97) if "a" <= c <= "z" else c for c in s),
}


@pytest.fixture(scope="module")
def guard():
    return Guard.build([("ruth", RUTH), ("idiom", COMMON)], GuardConfig(max_words=12))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_adversarial_formatting_does_not_get_past(guard, name):
    text = "The model said: " + ATTACKS[name](RUTH) + " -- and that was all."
    res = guard.check(text)
    assert [r.work_id for r in res.redactions] == ["ruth"], name
    r = res.redactions[0]
    assert r.n_words == len(RUTH.split())
    # the span covers the copy in the original text, and nothing of the framing
    assert text[:r.start].rstrip().endswith("said:") and text[r.end:].lstrip(" !").startswith("--")
    assert res.text == text[:r.start] + "[REDACTED]" + text[r.end:]
    assert "ruth" in r.reason and "limit of 12" in r.reason


def test_threshold_is_exact(guard):
    words = RUTH.split()
    assert guard.check(" ".join(words[:12])).clean                         # 12 words: allowed
    res = guard.check("so " + " ".join(words[:13]) + " end")               # 13 words: redacted
    assert [r.n_words for r in res.redactions] == [13]
    assert guard.check(" ".join(words[:6]) + " banana " + " ".join(words[7:13])).clean


def test_block_action_and_multiple_spans():
    g = Guard.build([("ruth", RUTH)], GuardConfig(max_words=5, action="block"))
    words = RUTH.split()
    res = g.check(" ".join(words[:8]) + " unrelated filler " + " ".join(words[20:30]))
    assert res.blocked and res.text == "" and len(res.redactions) == 2
    with pytest.raises(ConfigError, match="GuardConfig.action"):
        GuardConfig(action="shout")
    with pytest.raises(ConfigError, match="max_words"):
        GuardConfig(max_words=0)


def test_skeleton_keeps_offsets_into_the_original():
    text = "Ｒｕｔｈ\u200b went ﬁne"
    sk, owner = skeleton(text)
    assert sk.split() == ["ruth", "went", "fine"]
    assert [text[owner[i]] for i in range(4)] == list("Ｒｕｔｈ")
    assert skeleton("Plain_ASCII") == ("plain ascii", None)


def test_agrees_with_the_naive_reference():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(400)]
    works = {f"work{i}": " ".join(rng.choice(vocab) for _ in range(150)) for i in range(30)}
    g = Guard.build(list(works.items()), GuardConfig(max_words=10, min_content_words=0))
    outs = []
    for _ in range(60):
        parts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 40)))]
        if rng.random() < 0.6:
            w = works[rng.choice(sorted(works))].split()
            k = rng.randint(6, 20)
            s = rng.randrange(len(w) - k)
            parts.append(ATTACKS[rng.choice(sorted(ATTACKS))](" ".join(w[s:s + k])))
        parts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 40))))
        outs.append(" . ".join(parts))
    flagged = 0
    hays = naive_haystacks(works)
    for text, res in zip(outs, g.check_many(outs)):
        assert {r.work_id for r in res.redactions} == naive_spans(hays, text, 10)
        flagged += bool(res.redactions)
    assert flagged >= 10


def test_cli_guard_filters_jsonl_against_claimed_works(ws, invoke, tmp_path, write_jsonl):
    works = [{"id": "ruth", "holder": "Northwind Press", "title": "Ruth", "text": RUTH},
             {"id": "other", "holder": "Northwind Press", "title": "Other", "text": COMMON + " " + RUTH[::-1]}]
    assert invoke("works", "import", write_jsonl(tmp_path / "w.jsonl", works)).exit_code == 0
    outs = write_jsonl(tmp_path / "o.jsonl", [{"id": "a", "text": "Quote: " + RUTH.upper()},
                                              {"id": "b", "text": "nothing to see"}])
    r = invoke("guard", outs)                        # no claims yet: nothing is guarded
    assert [json.loads(x)["redactions"] for x in r.output.splitlines() if x.startswith("{")] == [[], []]
    assert invoke("claims", "file", "--holder", "Northwind Press", "--works", "ruth", "--remedy", "unlearn").exit_code == 0
    r = invoke("guard", outs)
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert rows[0]["text"] == "Quote: [REDACTED]" and rows[0]["redactions"][0]["work_id"] == "ruth"
    assert rows[1] == {"id": "b", "text": "nothing to see", "blocked": False, "redactions": []}
    r = invoke("guard", "--action", "block", input="\n".join(json.dumps({"id": i, "text": t}) for i, t in
                                                             [("x", RUTH), ("y", "fine")]) + "\n")
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert rows[0]["blocked"] and rows[0]["text"] == "" and not rows[1]["blocked"]
    r = invoke("guard", input="not json\n")
    assert r.exit_code == 1 and "line 1" in r.output
    r = invoke("guard", "--works", "ruth,nope", outs)
    assert r.exit_code == 1 and "no active work 'nope'" in r.output


def test_bench_guard_quick_runs_and_reports_the_ratio():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_guard.py"), "--quick", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["agree"] == res["checked_naive"] and res["outputs_per_s"] > 0 and res["speedup_vs_naive"] > 1
    assert res["recall_planted"] == 1.0
