"""The execution engines and resumable sharded stages (issue 8).

Every engine test is parametrised over ``local`` (a 2-process pool) and ``ray`` (Ray Core on a
local instance started once per test session with ``ray.init(num_cpus=2)``) and compares output
bytes with a serial reference run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tribute.core.engine import LocalEngine, RayEngine, get_engine, parse_shard
from tribute.core.errors import ConfigError, DependencyError, InputError, IntegrityError
from tribute.core.fingerprints import fingerprint_stage, minhash, permutations, shingle_hashes, words
from tribute.core.readers import read_records
from tribute.core.stages import (
    Stage, plan_record_shards, prepare_stage, read_shard_records, run_stage, stage_status,
)

STAGE_KW = dict(n=5, num_perm=32, seed=7, num_shards=8)
VOCAB = [f"w{i}" for i in range(300)] + ["Ünïcode", "naïve", "ŝtraße"]


def _docs(count: int = 120, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        length = rng.choice([2, 4, 30, 80, 150])  # some shorter than n=5 words
        docs.append({"id": f"doc-{rng.randrange(10**6):06d}-{i}", "text": " ".join(rng.choice(VOCAB) for _ in range(length))})
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in _docs()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """The serial, in-process run: the bytes every engine must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "fp"
    result = run_stage(fingerprint_stage(corpus, out, **STAGE_KW))
    assert result.complete and result.ran == list(range(8)) and result.rows == 120
    return result


@pytest.fixture(params=["local", "ray"])
def engine(request):
    if request.param == "ray":
        request.getfixturevalue("ray_session")
        eng = RayEngine(workers=2)
    else:
        eng = LocalEngine(workers=2)
    yield eng
    eng.close()


def _bytes(paths) -> list[bytes]:
    return [Path(p).read_bytes() for p in paths]


# -- the workload -------------------------------------------------------------------------------


def test_minhash_equals_a_naive_python_reference():
    hashes = shingle_hashes("the quick brown fox jumps over the lazy dog again and again", 3, seed=11)
    a, b = permutations(16, 5)
    naive = [min((int(ak) * int(h) + int(bk)) % 2**64 for h in hashes) for ak, bk in zip(a, b)]
    assert minhash(hashes, 16, 5).tolist() == naive
    assert all(int(x) % 2 == 1 for x in a)  # odd multipliers: bijections mod 2**64
    assert minhash(np.zeros(0, dtype=np.uint64), 4, 5).tolist() == [2**64 - 1] * 4


def test_shingles_are_seeded_lowercased_and_cover_short_texts():
    assert words("Hello, WORLD! naïve") == ["hello", "world", "naïve"]
    assert len(shingle_hashes("one two", 5, seed=1)) == 1  # shorter than n: one shingle
    assert len(shingle_hashes("a b c d e f", 5, seed=1)) == 2
    assert shingle_hashes("A b c", 2, 1).tolist() == shingle_hashes("a B C", 2, 1).tolist()
    assert shingle_hashes("a b c", 2, 1).tolist() != shingle_hashes("a b c", 2, 2).tolist()


# -- shard plans ------------------------------------------------------------------------------


def _write_formats(tmp: Path, docs: list[dict]) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {}
    jl = tmp / "c.jsonl"  # a BOM and blank lines: line numbers and offsets must still be right
    jl.write_text("\ufeff" + "\n".join(json.dumps(d, ensure_ascii=False) + ("\n" if i % 7 == 0 else "")
                                      for i, d in enumerate(docs)) + "\n", encoding="utf-8")
    paths["jsonl"] = jl
    cp = tmp / "c.csv"
    with open(cp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "text"])
        w.writeheader()
        w.writerows(docs)
    paths["csv"] = cp
    pp = tmp / "c.parquet"
    pq.write_table(pa.Table.from_pylist(docs), pp, row_group_size=7)
    paths["parquet"] = pp
    td = tmp / "txt"
    td.mkdir()
    for d in docs:
        (td / f"{d['id']}.txt").write_text(d["text"], encoding="utf-8")
    paths["txtdir"] = td
    return paths


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "txtdir"])
def test_plans_cover_every_record_once_in_input_order(tmp_path, fmt):
    docs = _docs(41)
    path = _write_formats(tmp_path, docs)[fmt]
    expected = [(r.id, r.text) for r in read_records(path)]
    for kw in ({"num_shards": 5}, {"records_per_shard": 9}, {"num_shards": 100}):
        plan = plan_record_shards(path, **kw)
        assert plan == plan_record_shards(path, **kw)  # deterministic
        got = [(r.id, r.text) for s in plan for r in read_shard_records(s)]
        assert got == expected
        sizes = [s["stop"] - s["start"] for s in plan]
        assert sum(sizes) == 41 and min(sizes) >= 1
    assert [s["stop"] - s["start"] for s in plan_record_shards(path, num_shards=5)] == [8, 8, 8, 8, 9]
    assert len(plan_record_shards(path, records_per_shard=9)) == 5
    assert len(plan_record_shards(path, num_shards=100)) == 41  # never an empty shard


def test_jsonl_plan_seeks_to_byte_offsets_and_keeps_line_numbers(tmp_path):
    docs = _docs(20)
    path = _write_formats(tmp_path, docs)["jsonl"]
    plan = plan_record_shards(path, num_shards=4)
    raw = path.read_bytes()
    for s in plan:
        line = raw[s["offset"]:].split(b"\n", 1)[0]
        assert json.loads(line.decode("utf-8").lstrip("\ufeff"))["id"] == docs[s["start"]]["id"]
        first = next(read_shard_records(s))
        assert first.where == f"{path.resolve()}:{s['line']}"
        assert raw.split(b"\n")[s["line"] - 1] == line


def test_plan_validates_the_whole_input_before_any_work(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x y"}\n{"id": "b", "text": "z"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: invalid JSON"):
        plan_record_shards(bad, num_shards=2)
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="duplicate id 'a'"):
        plan_record_shards(dup, num_shards=2)
    with pytest.raises(InputError, match="no such file"):
        plan_record_shards(tmp_path / "missing.jsonl", num_shards=2)
    with pytest.raises(ConfigError, match="exactly one"):
        plan_record_shards(dup, num_shards=2, records_per_shard=3)
    with pytest.raises(ConfigError, match="num_shards=0"):
        plan_record_shards(dup, num_shards=0)


def test_a_shard_of_an_input_that_shrank_is_an_error(tmp_path):
    path = _write_formats(tmp_path, _docs(10))["jsonl"]
    plan = plan_record_shards(path, num_shards=2)
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(b"\n", plan[1]["offset"]) + 1])  # shard 1 keeps one record
    with pytest.raises(InputError, match="the input changed"):
        list(read_shard_records(plan[1]))


# -- engines ------------------------------------------------------------------------------------


def test_engine_map_keeps_item_order(engine):
    texts = [" ".join(f"t{j}" for j in range(i % 5 + 1)) for i in range(23)]
    assert list(engine.map(words, texts)) == [words(t) for t in texts]
    assert list(engine.map(shingle_hashes, texts[:3], 2, 9))[2].tolist() == shingle_hashes(texts[2], 2, 9).tolist()


def test_stage_output_is_bit_identical_across_engines(engine, corpus, reference, tmp_path):
    result = run_stage(fingerprint_stage(corpus, tmp_path / "fp", **STAGE_KW), engine)
    assert result.ran == list(range(8)) and result.skipped == []
    assert result.checksum() == reference.checksum()
    assert _bytes(result.files) == _bytes(reference.files)
    table = result.read_table()
    assert table.equals(reference.read_table())
    ids = table.column("id").to_pylist()
    for part in result.iter_tables():  # rows sorted within each shard, shards in input order
        part_ids = part.column("id").to_pylist()
        assert part_ids == sorted(part_ids)
    assert sorted(ids) == sorted(d["id"] for d in _docs())
    sig = table.column("signature").to_pylist()
    doc = {d["id"]: d["text"] for d in _docs()}
    i = 17
    assert sig[i] == minhash(np.unique(shingle_hashes(doc[ids[i]], 5, 7)), 32, 7).tolist()


def test_worker_count_does_not_change_bytes(corpus, reference, tmp_path):
    with LocalEngine(workers=1) as one:
        serial = run_stage(fingerprint_stage(corpus, tmp_path / "w1", **STAGE_KW), one)
    assert serial.checksum() == reference.checksum()
    kw = dict(STAGE_KW, num_shards=3)  # another shard count is another result folder...
    other = run_stage(fingerprint_stage(corpus, tmp_path / "s3", **kw))
    # ...with the same rows (reductions re-sort by id when they need a global order)
    assert other.read_table().sort_by("id").equals(reference.read_table().sort_by("id"))


def test_worker_errors_reach_the_caller_with_their_message(engine, tmp_path):
    from tribute.core.fingerprints import fingerprint_shard

    missing = str(tmp_path / "gone.jsonl")
    shards = [{"path": missing, "fmt": "jsonl", "start": 0, "stop": 1, "total": 1, "offset": 0, "line": 1}]
    stage = Stage("fingerprints", fingerprint_shard, tmp_path / "out", {"n": 5}, shards)
    with pytest.raises(InputError, match="gone.jsonl: no such file"):
        run_stage(stage, engine)
    assert not list((tmp_path / "out").glob("shard-*"))  # nothing half-written


# -- resume, slices, settings ------------------------------------------------------------------


def test_shard_slices_equal_the_full_run_and_the_last_run_only_reduces(corpus, reference, tmp_path):
    out = tmp_path / "fp"
    stage = fingerprint_stage(corpus, out, **STAGE_KW)
    plan = prepare_stage(stage)  # plan once before "submitting the array"
    assert len(plan) == 8 and not list(out.glob("shard-*"))
    assert json.loads((out / "shards.json").read_text())["shards"] == plan
    for k, i in enumerate((2, 0, 1)):  # array tasks finish in any order
        part = run_stage(stage, shard=(i, 3))
        lo, hi = i * 8 // 3, (i + 1) * 8 // 3
        assert part.ran == list(range(lo, hi)) and part.complete == (k == 2)
        assert _bytes(part.files) == _bytes(reference.files[lo:hi])
        with pytest.raises(IntegrityError, match="not all 8 shards" if k < 2 else "one --shard slice"):
            part.read_table()
        assert stage_status(out)["done"] == (3, 5, 8)[k]
    final = run_stage(stage)
    assert final.ran == [] and final.skipped == list(range(8))
    assert final.checksum() == reference.checksum()
    assert stage_status(out) == {"kind": "fingerprints", "num_shards": 8, "done": 8, "missing": []}


def test_rerun_with_other_settings_or_input_is_refused(corpus, tmp_path):
    out = tmp_path / "fp"
    run_stage(fingerprint_stage(corpus, out, **STAGE_KW), shard=(0, 8))
    with pytest.raises(ConfigError, match="num_perm differ"):
        run_stage(fingerprint_stage(corpus, out, **dict(STAGE_KW, num_perm=64)))
    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(corpus.read_bytes().replace(b"w1", b"w2", 1))
    with pytest.raises(ConfigError, match="input_sha256"):
        run_stage(fingerprint_stage(changed, out, **STAGE_KW))


def test_a_corrupted_shard_file_is_recomputed(corpus, reference, tmp_path):
    out = tmp_path / "fp"
    stage = fingerprint_stage(corpus, out, **STAGE_KW)
    run_stage(stage)
    victim = out / "shard-00005-of-00008.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    again = run_stage(stage)
    assert again.ran == [5] and again.checksum() == reference.checksum()


_CHILD = textwrap.dedent("""
    import sys, time
    from tribute.core.fingerprints import fingerprint_stage
    from tribute.core.stages import run_stage

    done = []
    def progress(marker):
        done.append(marker["index"])
        if len(done) == 3:
            print("three shards finished", flush=True)
            time.sleep(600)  # the parent kills us here, mid-job

    if __name__ == "__main__":
        from tribute.core.engine import LocalEngine

        kw = dict(n=5, num_perm=32, seed=7, num_shards=8)
        with LocalEngine(int(sys.argv[3])) as eng:
            run_stage(fingerprint_stage(sys.argv[1], sys.argv[2], **kw), eng, progress=progress)
        print("finished without being killed", flush=True)
""")


def _start_and_kill(corpus: Path, out: Path, tmp_path: Path, workers: int) -> None:
    """Run the stage in a child process and SIGKILL its whole process group after 3 shards."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), str(corpus), str(out), str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "three shards finished", proc.stderr.read()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its pool workers, like a lost node
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_a_job_killed_midway_resumes_skipping_finished_shards(engine, corpus, reference, tmp_path):
    out = tmp_path / "fp"
    _start_and_kill(corpus, out, tmp_path, workers=1)
    markers = sorted(out.glob("*.done"))
    assert [m.name for m in markers] == [f"shard-0000{i}-of-00008.done" for i in range(3)]
    before = {m.name: m.stat().st_mtime_ns for m in markers}
    # what a kill during a write leaves: a temp file, and a shard file whose marker never came
    (out / ".shard-00003-of-00008.abc123.tmp").write_bytes(b"half a parquet")
    (out / "shard-00004-of-00008.parquet").write_bytes(b"truncated")

    resumed = run_stage(fingerprint_stage(corpus, out, **STAGE_KW), engine)
    assert resumed.skipped == [0, 1, 2] and resumed.ran == [3, 4, 5, 6, 7]
    assert {m.name: m.stat().st_mtime_ns for m in markers} == before
    assert resumed.checksum() == reference.checksum()
    assert _bytes(resumed.files) == _bytes(reference.files)
    assert not list(out.glob(".shard-*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "fingerprints" and manifest["config"]["num_perm"] == 32
    assert list(manifest["inputs"].values()) == [hashlib.sha256(corpus.read_bytes()).hexdigest()]


def test_a_process_pool_killed_midway_resumes(corpus, reference, tmp_path):
    out = tmp_path / "fp"
    _start_and_kill(corpus, out, tmp_path, workers=2)
    finished = sorted(int(m.name[6:11]) for m in out.glob("*.done"))
    assert 3 <= len(finished) < 8  # the window of in-flight shards was bounded
    resumed = run_stage(fingerprint_stage(corpus, out, **STAGE_KW))
    assert resumed.skipped == finished and sorted(resumed.skipped + resumed.ran) == list(range(8))
    assert resumed.checksum() == reference.checksum()


# -- choosing an engine -------------------------------------------------------------------------


def test_missing_ray_is_a_dependency_error_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(DependencyError, match=r"pip install 'tribute\[ray\]'"):
        get_engine("ray", workers=2)


def test_engine_options_are_validated():
    assert parse_shard("3/16") == (3, 16) and parse_shard(None) is None
    for bad in ("16/16", "-1/4", "a/b", "3", "1/0"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)
    with pytest.raises(ConfigError, match="unknown engine"):
        get_engine("spark")
    with pytest.raises(ConfigError, match="--ray-address needs --engine ray"):
        get_engine("local", ray_address="auto")
    with pytest.raises(ConfigError, match="workers=0"):
        get_engine("local", workers=0)
    with get_engine("local") as eng:
        assert eng.describe() == {"engine": "local", "workers": 1}


def test_ray_engine_reuses_the_running_instance_and_leaves_it_up(ray_session):
    with get_engine("ray", workers=1) as eng:
        assert eng.describe()["workers"] == 1
        assert list(eng.map(words, ["A b", "c"])) == [["a", "b"], ["c"]]
    assert ray_session.is_initialized()


def test_benchmark_quick_mode_runs_and_checks_identical_outputs():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"
    spec = importlib.util.spec_from_file_location("bench_engine", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.main(["--quick", "--engines", "local", "--docs", "120", "--shards", "4", "--num-perm", "16"])
    assert figures["identical"] and figures["docs"] == 120
    assert figures["featurise"]["identical"] and set(figures["featurise"]["runs"]) == {"local x1", "local x2"}
    assert set(figures["runs"]) == {"local x1", "local x2"}
    est = figures["estimate"]
    assert est["s_per_doc"] > 0 and [c["nodes"] for c in est["clusters"]] == [1, 10, 100]
    assert est["clusters"][0]["hours"] > est["clusters"][1]["hours"] > est["clusters"][2]["hours"]


def test_an_unreachable_ray_address_is_a_config_error(monkeypatch):
    import types

    def init(**kwargs):
        assert kwargs["address"] == "ray://nowhere:10001"
        raise ConnectionError("Could not find any running Ray instance")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(ConfigError, match=r"--ray-address ray://nowhere:10001: cannot connect .*ray start --head"):
        get_engine("ray", workers=2, ray_address="ray://nowhere:10001")
