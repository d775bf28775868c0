"""Attribution featurisation on the execution engine (issue 8): the same bytes on every engine.

A tiny causal LM's training windows are featurised (tracin, 2 checkpoints, count-sketched) as a
sharded stage in process, on a 2-process local pool and on Ray (a local instance started once
per test session with ``ray.init(num_cpus=2)``); the shard files, the assembled feature matrices
and the scores must be identical bytes. A featurisation killed midway resumes and ends with the
same bytes. Workers rebuild the model with ``tribute.cli.attribute_cmds.build_model`` (importable
on every worker) and load the checkpoints from safetensors files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tribute.attribution import CausalLMTask, attribute  # noqa: E402
from tribute.attribution.lm import checkpoints_in, load_lm  # noqa: E402
from tribute.cli.attribute_cmds import build_model, train_tiny_lm  # noqa: E402
from tribute.core.engine import RayEngine  # noqa: E402

DOCS = [
    "the ship sailed over the grey sea and the sailors sang of the sea all night long",
    "the farmer sowed barley in the field and the rain fell on the field in the spring",
    "the king sat on his throne and the people bowed before the king of the old city",
    "waves rolled on the sea while the ship carried the sailors home across the water",
    "a small bird sang in the tree at dawn and flew over the field to the river bank",
    "the city gates were shut at night and the watchmen walked the walls until morning",
]
SETTINGS = dict(proj_dim=16, projector="countsketch", batch_size=2, chunk=3, seed=5)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A tiny LM with 2 checkpoints, its training windows and two queries."""
    d = tmp_path_factory.mktemp("lm")
    train = d / "train.jsonl"
    train.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)),
                     encoding="utf-8")
    train_tiny_lm(train, d / "model", steps=20, checkpoints=2, context=16, d_model=16, layers=1,
                  batch_size=4, lr=1e-2)
    model, tok = load_lm(d / "model")
    from tribute.attribution.textattr import encode_texts

    ex = encode_texts(lambda t, b: tok.encode(t, b), 16, DOCS,
                      [("the ship", "sailed over the sea"), ("the farmer", "sowed barley")])
    task = CausalLMTask(max_len=16, pad_id=tok.pad_id)
    return d / "model", task, ex.train, ex.queries


def featurise(lm, features: Path, engine=None, *, in_memory: bool = False, **kw):
    """Run tracin featurisation + scoring; returns ``(scores, {file name: sha256})`` of the features."""
    folder, task, train, queries = lm
    model, _ = load_lm(folder)
    ckpts = [str(p) for p in checkpoints_in(folder)]
    if in_memory:   # state dicts: a pool writes them to safetensors files its workers load
        from tribute.attribution import load_state_dict

        ckpts = [load_state_dict(p) for p in ckpts]
    res = attribute(model, ckpts, task, train, queries, "tracin", features_dir=features, engine=engine,
                    model_builder=functools.partial(build_model, str(folder)), **SETTINGS, **kw)
    return res, file_hashes(features)


def file_hashes(features: Path) -> dict[str, str]:
    files = sorted((features / "train").glob("shard-*.npy")) + sorted((features / "matrix").glob("*.npy"))
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def reference(lm, tmp_path_factory):
    """The serial, in-process featurisation: the bytes every engine must reproduce."""
    res, hashes = featurise(lm, tmp_path_factory.mktemp("ref") / "f")
    n_shards = 2 * -(-len(lm[2]) // SETTINGS["chunk"])
    assert res.complete and len([h for h in hashes if h.startswith("shard-")]) == n_shards
    assert sorted(h for h in hashes if h.startswith("ckpt-")) == ["ckpt-000.npy", "ckpt-001.npy"]
    return res.scores, hashes


def test_the_stage_reproduces_the_direct_gradient_features(lm, reference, tmp_path):
    """The features are the projected per-example loss gradients at each checkpoint, row for row."""
    from tribute.attribution import load_state_dict
    from tribute.attribution.grads import per_example_grads, param_names
    from tribute.attribution.projection import make_projector

    folder, task, train, _ = lm
    model, _ = load_lm(folder)
    names = param_names(model)
    proj = make_projector("countsketch", sum(p.numel() for p in model.parameters()), 16, SETTINGS["seed"])
    feats = tmp_path / "f"
    featurise(lm, feats)
    for k, ck in enumerate(checkpoints_in(folder)):
        model.load_state_dict(load_state_dict(str(ck)))
        direct = proj.project(per_example_grads(model, task, train, "loss", names, 64), k).numpy()
        np.testing.assert_allclose(np.load(feats / "matrix" / f"ckpt-{k:03d}.npy"), direct, rtol=1e-5, atol=1e-6)


def test_ray_gives_identical_feature_bytes_and_scores(lm, reference, tmp_path, ray_session):
    """Ray tasks rebuild the model and load checkpoints saved once in a safe format; the 2-process
    local pool is checked the same way by the engine benchmark's --quick test (tests/test_engine.py)."""
    scores, hashes = reference
    with RayEngine(workers=2) as eng:
        res, got = featurise(lm, tmp_path / "f", eng, in_memory=True)
    assert got == hashes
    assert np.array_equal(res.scores, scores)
    assert len(list((tmp_path / "f" / "checkpoints").glob("*.safetensors"))) == 2


def test_worker_count_and_slices_do_not_change_bytes(lm, reference, tmp_path):
    """Three --shard slices in this process, then the run that scores: the same bytes."""
    scores, hashes = reference
    for i in range(3):
        res, _ = featurise(lm, tmp_path / "f", shard=f"{i}/3")
        assert res.complete == (i == 2)
    assert file_hashes(tmp_path / "f") == hashes and np.array_equal(res.scores, scores)
    # slices featurised on one device kind; a folder of another kind is refused while shards are
    # missing, and a run that only reads finished shards may use any device
    from tribute.attribution.features import _device_kind
    from tribute.core.stages import stage_status

    assert _device_kind(tmp_path / "f" / "train", "cuda") == "cpu"
    min(Path(tmp_path / "f" / "train").glob("*.done")).unlink()
    assert stage_status(tmp_path / "f" / "train")["missing"] == [0]
    assert _device_kind(tmp_path / "f" / "train", "cuda") == "cuda"


_CHILD = textwrap.dedent("""
    import functools, json, os, signal, sys
    from tribute.attribution import CausalLMTask, attribute
    from tribute.attribution.lm import checkpoints_in, load_lm
    from tribute.attribution.textattr import encode_texts
    from tribute.cli.attribute_cmds import build_model

    done = []
    def progress(marker):
        done.append(marker["index"])
        if len(done) == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-job, like a lost node or a Slurm time limit

    if __name__ == "__main__":
        folder, feats, docs, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
        model, tok = load_lm(folder)
        ex = encode_texts(lambda t, b: tok.encode(t, b), 16, docs,
                          [("the ship", "sailed over the sea"), ("the farmer", "sowed barley")])
        attribute(model, [str(p) for p in checkpoints_in(folder)], CausalLMTask(max_len=16, pad_id=tok.pad_id),
                  ex.train, ex.queries, "tracin", features_dir=feats, progress=progress,
                  model_builder=functools.partial(build_model, folder), **settings)
        print("finished without being killed", flush=True)
""")


def test_a_featurisation_killed_midway_resumes_with_the_same_bytes(lm, reference, tmp_path):
    feats = tmp_path / "f"
    script = tmp_path / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), str(lm[0]), str(feats), json.dumps(DOCS),
                           json.dumps(SETTINGS)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    markers = sorted(p.name for p in (feats / "train").glob("*.done"))
    assert len(markers) == 3 and not (feats / "matrix").exists()
    # what a kill during a write leaves: a shard file whose marker never came
    n = int(markers[0].split("-of-")[1][:5])
    (feats / "train" / f"shard-00003-of-{n:05d}.npy").write_bytes(b"truncated")
    ran = []
    res, got = featurise(lm, feats, progress=lambda m: ran.append(m["index"]))
    assert ran == list(range(3, n))          # finished shards were skipped
    scores, hashes = reference
    assert got == hashes and np.array_equal(res.scores, scores)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_featurisation_matches_cpu(lm, reference, tmp_path):
    res, _ = featurise(lm, tmp_path / "f", device="cuda")
    scores, _ = reference
    np.testing.assert_allclose(res.scores, scores, rtol=1e-3, atol=1e-3 * np.abs(scores).max())


# -- the CLI --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_attribute_on_ray_stores_the_same_scores_as_local(ws, invoke, lm, tmp_path, ray_session):
    from tribute.market.attribution_store import get_run, load_scores

    folder = lm[0]
    train = folder.parent / "train.jsonl"
    outputs = tmp_path / "o.jsonl"
    outputs.write_text(json.dumps({"id": "o1", "prompt": "the ship", "text": "sailed over the sea"}) + "\n",
                       encoding="utf-8")
    with ws.connect() as con:   # exposure rows by hand (the scanner is another module)
        con.execute("INSERT INTO scans (scan_id, target, source, source_sha256, kinds, config, catalog_hash, "
                    "n_docs, n_words, n_chars, n_matches, started_at) VALUES "
                    "('scan-1', 'corpus', 'train.jsonl', 'x', 'exact', '{}', 'x', 6, 1, 1, 1, now())")
        con.execute("INSERT INTO scan_exposure VALUES ('scan-1', 'sea-work', 'd0', 'sea-press', 1, 1, 1.0)")
    common = ["attribute", "run", "--model", folder, "--outputs", outputs, "--train", train, "--method", "tracin",
              "--proj-dim", "16", "--batch-size", "2", "--chunk", "3", "--json"]
    stored = []
    for extra in ([], ["--engine", "ray", "--workers", "2", "--features", tmp_path / "f"]):
        r = invoke(*common, *extra)
        assert r.exit_code == 0, r.output
        with ws.connect(read_only=True) as con:
            stored.append(load_scores(get_run(con, json.loads(r.output)["run_id"]))[0])
    assert np.array_equal(stored[0], stored[1])
    r = invoke(*common, "--engine", "ray", "--shard", "0/2", "--features", tmp_path / "g")
    assert r.exit_code == 1 and "--shard runs one slice in this process" in r.output
