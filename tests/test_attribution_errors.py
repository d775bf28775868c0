"""Bad input gets a clear one-line error and leaves nothing half-written; features resume."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tribute.attribution import CausalLMTask, ClassificationTask, attribute  # noqa: E402
from tribute.attribution.features import resolve_device  # noqa: E402
from tribute.core.engine import LocalEngine  # noqa: E402
from tribute.core.errors import ConfigError, InputError  # noqa: E402


def _setup(n=12):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4, generator=g)
    data = [(X[i], int(X[i, 0] > 0)) for i in range(n)]
    return model, data


def test_checkpoint_that_does_not_fit_the_model(tmp_path):
    model, data = _setup()
    other = torch.nn.Sequential(torch.nn.Linear(4, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    with pytest.raises(ConfigError, match="does not match the model"):
        attribute(model, [other.state_dict()], ClassificationTask(), data, data[:2], "graddot",
                  features_dir=tmp_path / "f")
    assert not (tmp_path / "f").exists()          # checked before anything is written
    with pytest.raises(Exception, match="no such file"):
        attribute(model, [tmp_path / "missing.safetensors"], ClassificationTask(), data, data[:2])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        attribute(model, [bad], ClassificationTask(), data, data[:2])


def test_empty_train_set_and_no_queries():
    model, data = _setup()
    with pytest.raises(InputError, match="empty"):
        attribute(model, None, ClassificationTask(), [], data[:2])
    with pytest.raises(InputError, match="no queries"):
        attribute(model, None, ClassificationTask(), data, [])


def test_nan_gradients_are_an_error_naming_the_example():
    model, data = _setup()
    data = list(data)
    data[3] = (torch.full((4,), float("nan")), 1)
    with pytest.raises(InputError, match="example 3"):
        attribute(model, None, ClassificationTask(), data, data[:1], "graddot")


def test_query_longer_than_context():
    task = CausalLMTask(max_len=4)
    with pytest.raises(InputError, match="longer than the model's context"):
        task.collate([([2, 3, 4, 5, 6], 1)])


def test_features_reused_only_with_same_settings_and_size(tmp_path):
    model, data = _setup()
    f = tmp_path / "f"
    a = attribute(model, None, ClassificationTask(), data, data[:2], "tracin", features_dir=f).scores
    b = attribute(model, None, ClassificationTask(), data, data[:2], "tracin", features_dir=f).scores
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError, match="other settings"):
        attribute(model, None, ClassificationTask(), data, data[:2], "tracin", features_dir=f,
                  proj_dim=4, projector="countsketch")
    with pytest.raises(ConfigError, match="other settings"):
        attribute(model, None, ClassificationTask(), data[:-1], data[:2], "tracin", features_dir=f)


def test_sharded_featurisation_resumes_and_equals_one_pass(tmp_path):
    model, data = _setup(n=20)
    one = attribute(model, None, ClassificationTask(), data, data[:3], "graddot", chunk=4).scores
    f = tmp_path / "f"
    r0 = attribute(model, None, ClassificationTask(), data, data[:3], "graddot", chunk=4, features_dir=f, shard="0/2")
    assert not r0.complete and r0.scores is None
    # contiguous slices of the stage's shard plan: 5 shards of 4 rows, slice 0/2 = shards 0 and 1
    assert sorted(p.name for p in (f / "train").glob("*.done")) == [f"shard-0000{i}-of-00005.done" for i in (0, 1)]
    r1 = attribute(model, None, ClassificationTask(), data, data[:3], "graddot", chunk=4, features_dir=f, shard="1/2")
    assert r1.complete
    assert np.array_equal(r1.scores, one)
    assert len(list((f / "train").glob("*.done"))) == 5
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(InputError, match="shard"):
            attribute(model, None, ClassificationTask(), data, data[:3], "graddot", features_dir=f, shard=bad)
    with pytest.raises(ConfigError, match="shard"):
        attribute(model, None, ClassificationTask(), data, data[:3], "influence", shard="0/2")
    with pytest.raises(ConfigError, match="features"):
        attribute(model, None, ClassificationTask(), data, data[:3], "graddot", shard="0/2")


def test_engine_and_device_errors_are_one_line_config_errors(tmp_path, monkeypatch):
    model, data = _setup()
    for bad in ("tpu", "cuda:x", "gpu0"):
        with pytest.raises(ConfigError, match="unknown; use cpu, cuda, cuda:N or auto"):
            attribute(model, None, ClassificationTask(), data, data[:2], "graddot", device=bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == "cpu" and resolve_device("CPU") == "cpu"
    with pytest.raises(ConfigError, match="device cuda"):
        attribute(model, None, ClassificationTask(), data, data[:2], "tracin", device="cuda",
                  features_dir=tmp_path / "f")
    assert not (tmp_path / "f").exists()
    with pytest.raises(ConfigError, match="only the featurisation"):
        attribute(model, None, ClassificationTask(), data, data[:2], "influence", device="cuda")
    with LocalEngine(2) as eng:   # a pool rebuilds the model: it needs a builder it can import
        with pytest.raises(ConfigError, match="model_builder"):
            attribute(model, None, ClassificationTask(), data, data[:2], "graddot", engine=eng)
        with pytest.raises(ConfigError, match="top-level function"):
            attribute(model, None, ClassificationTask(), data, data[:2], "graddot", engine=eng,
                      model_builder=lambda: model)
        with pytest.raises(ConfigError, match="drop them"):
            attribute(model, None, ClassificationTask(), data, data[:2], "influence", engine=eng)


def test_model_is_restored_after_attribution():
    model, data = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other = {k: v + 1 for k, v in before.items()}
    attribute(model, [other], ClassificationTask(), data, data[:2], "graddot")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
