"""GPU check: attribution featurisation on ``cuda`` gives the scores of ``cpu``, and how much faster.

Two workloads, each featurised with ``tribute.attribution.attribute(..., device=...)`` on the CPU
(one torch thread, as every featurisation worker uses) and on CUDA, then scored on the CPU:

* the bench MLP (``benchmarks/bench_attribution.py``: 5-16-16-2 tanh classifier) on 4096 seeded
  "two moons" examples, graddot on full gradients;
* a demo-size tiny GPT (48-d, 2 layers, 64 tokens of context, 2000-word vocabulary, seeded
  random weights) on 512 windows of seeded random tokens, graddot count-sketched to 4096 dims.

It prints, per workload, the max abs difference of the scores, that difference relative to the
largest score, and the cuda / cpu speed ratio (after a CUDA warm-up), and exits 1 when a relative
difference exceeds ``--rtol`` (default 1e-3: float32 reductions run in another order on a GPU).
Without a CUDA GPU it says so and exits 0 (``--require-gpu``: exit 2). About a minute on a GPU
machine; it needs only torch and numpy besides the repository.

    python benchmarks/check_gpu.py [--device cuda:0] [--rtol 1e-3] [--require-gpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _bench_attribution():
    path = Path(__file__).resolve().parent / "bench_attribution.py"
    spec = importlib.util.spec_from_file_location("bench_attribution", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def mlp_workload(n: int = 4096):
    from tribute.attribution import ClassificationTask

    bench = _bench_attribution()
    data = bench.moons(n, seed=0)
    return "bench MLP", bench.make_model(0), ClassificationTask(), data, data[:32], {"proj_dim": 0, "projector": "none"}


def gpt_workload(windows: int = 512):
    import torch

    from tribute.attribution import CausalLMTask
    from tribute.attribution.lm import LMConfig, TinyGPT

    model = TinyGPT(LMConfig(vocab_size=2000, max_len=64, d_model=48, n_layer=2, n_head=2, d_ff=96, seed=0))
    gen = torch.Generator().manual_seed(0)
    train = [(torch.randint(1, 2000, (64,), generator=gen).tolist(), 0) for _ in range(windows)]
    queries = [(torch.randint(1, 2000, (40,), generator=gen).tolist(), 12) for _ in range(16)]
    return ("tiny GPT (demo size)", model, CausalLMTask(max_len=64, pad_id=0), train, queries,
            {"proj_dim": 4096, "projector": "countsketch"})


def featurise(model, task, train, queries, settings, device):
    from tribute.attribution import attribute

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        res = attribute(model, None, task, train, queries, "graddot", features_dir=Path(tmp) / "f",
                        device=device, batch_size=64, chunk=256, **settings)
        return res.scores, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rtol", type=float, default=1e-3, help="max |cuda - cpu| / max |cpu score| allowed")
    ap.add_argument("--require-gpu", action="store_true", help="exit 2 when no CUDA GPU is visible")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA GPU visible to torch {torch.__version__}: nothing to check")
        return 2 if args.require_gpu else 0
    from tribute.attribution.features import resolve_device
    from tribute.core.errors import TributeError

    try:
        args.device = resolve_device(args.device)
    except TributeError as e:
        print(f"Error: {e}")
        return 2
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(args.device)}; "
          f"{torch.get_num_threads()} CPU threads available (featurisation uses 1)")
    warm = mlp_workload(256)
    featurise(*warm[1:], device=args.device)    # CUDA context and kernels, timed apart
    failed = False
    print(f"{'workload':<22}{'rows':>6}{'cpu s':>8}{'cuda s':>8}{'speed-up':>10}{'max |diff|':>12}{'relative':>10}")
    for name, model, task, train, queries, settings in (mlp_workload(), gpt_workload()):
        cpu, t_cpu = featurise(model, task, train, queries, settings, "cpu")
        gpu, t_gpu = featurise(model, task, train, queries, settings, args.device)
        diff = float(np.abs(cpu - gpu).max())
        rel = diff / max(float(np.abs(cpu).max()), 1e-30)
        ok = rel <= args.rtol and np.isfinite(gpu).all()
        failed |= not ok
        print(f"{name:<22}{len(train):>6}{t_cpu:>8.2f}{t_gpu:>8.2f}{t_cpu / t_gpu:>9.1f}x{diff:>12.2e}{rel:>10.1e}"
              f"{'' if ok else '  MISMATCH'}")
    print("FAILED: cuda scores differ from cpu beyond --rtol" if failed else f"OK: cuda matches cpu within rtol {args.rtol}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
