"""Unlearning a Hugging Face causal LM loaded from a local folder (a tiny GPT-2 built here; no hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_unlearn_run import WORK_A, _eval_fast, _fast, _hashes, make_corpus

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


def build_hf(folder: Path, texts, extra_tokens: int = 0, seed: int = 0, n_vocab: int | None = None) -> Path:
    """A tiny GPT-2 and a word-level fast tokenizer fitted on ``texts``, saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tk = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.train_from_iterator(list(texts) + [f"extra{i}" for i in range(extra_tokens)],
                           trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "<s>", "</s>"]))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]",
                                               bos_token="<s>", eos_token="</s>")
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=n_vocab or len(tok), n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = transformers.GPT2LMHeadModel(cfg)
    model.save_pretrained(str(folder), safe_serialization=True)
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hf-lm")
    docs, forget, holdout = make_corpus()
    build_hf(root / "gpt2", [t for _, t in docs])
    return {"root": root, "model": root / "gpt2", "docs": docs, "forget": forget, "holdout": holdout}


def _run(hf, out, model=None, **kw):
    from tribute.attribution.unlearn import run_unlearning

    return run_unlearning(model or hf["model"], hf["docs"], hf["forget"], hf["holdout"], out,
                          _fast("calibrated", steps=4), work_ids=["work-a"], holder_id="northwind",
                          work_texts=[WORK_A], eval_config=_eval_fast(), retain_size=8, relearn=False, **kw)


def test_hf_model_unlearned_into_new_folder(hf, tmp_path):
    import torch
    from safetensors.torch import load_file

    before = _hashes(hf["model"])
    out = tmp_path / "out"
    cert = _run(hf, out)
    assert _hashes(hf["model"]) == before                      # the input folder is untouched
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "certificate.json", "manifest.json"} <= names
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["tribute_unlearned"]["method"] == "calibrated"
    manifest = json.loads((out / "manifest.json").read_text())
    assert "transformers" in manifest["packages"]
    # the written folder loads back with transformers (offline) and holds the changed weights
    again = transformers.AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    w_in, w_out = load_file(str(hf["model"] / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(w_in) == set(w_out)
    assert any(not torch.equal(w_in[k], w_out[k]) for k in w_in)
    assert torch.equal(again.state_dict()["transformer.wte.weight"], w_out["transformer.wte.weight"])
    # spans come from the fast tokenizer's offsets: only the work's tokens are weighted
    assert cert["run"]["data"]["span_source"] == "work-ngrams"
    share = cert["attribution_share"]
    assert 0.0 <= share["before"] <= 1.0 and 0.0 <= share["after"] <= 1.0 and share["method"] == "graddot"


def test_hf_spans_follow_tokenizer_offsets(hf):
    from tribute.attribution.unlearn import build_data, load_model

    model, tok = load_model(hf["model"])
    docs = hf["docs"]
    text = dict(docs)[hf["forget"][0]]
    start = text.index("Bethlehem")
    spans = {d: [(start, start + len("Bethlehem"))] for d in hf["forget"]}
    data = build_data(tok, model.config.max_len, docs, hf["forget"], hf["holdout"], spans=spans, retain_size=4)
    assert data.span_source == "spans"
    marked = [t for win, ws in zip(data.forget, data.forget_weights) for w, t in zip(ws, win[1:]) if w]
    assert marked and set(marked) == {tok.vocab["Bethlehem"]}


def test_hf_bad_folders(hf, tmp_path):
    from tribute.core.errors import InputError

    docs = [t for _, t in hf["docs"]]
    # the tokenizer has more tokens than the model's embedding: a tokenizer mismatch
    bad = build_hf(tmp_path / "mismatch", docs, extra_tokens=20, n_vocab=10)
    with pytest.raises(InputError, match="tokenizer mismatch") as e:
        _run(hf, tmp_path / "o1", model=bad)
    assert "\n" not in str(e.value) and not (tmp_path / "o1").exists()
    # a folder that does not load: corrupt weights
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in hf["model"].iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="does not load") as e:
        _run(hf, tmp_path / "o2", model=broken)
    assert "\n" not in str(e.value) and not (tmp_path / "o2").exists()
    # a reference retrained with another tokenizer
    other = build_hf(tmp_path / "other", docs[:5])
    with pytest.raises(InputError, match="tokenizer differs"):
        _run(hf, tmp_path / "o3", reference_dir=other)
    assert not (tmp_path / "o3").exists()
