"""Execution engines: an ordered map of a picklable function over shard specs.

Two engines run the same work and return the same results in the same order:

* ``local`` (default): a process pool on this machine; with one worker it runs serially in
  this process (no pool, easiest to debug and profile).
* ``ray``: Ray Core tasks (never Ray Data), on a local Ray instance or an existing cluster
  (``address="auto"`` or ``"ray://head:10001"``). Ray is an optional extra:
  ``pip install 'tribute[ray]'``.

An engine only schedules work. Determinism comes from the work itself (seeded hashes, sorted
rows) and from results being consumed in shard order, never in completion order, so the output
does not depend on the engine or on the number of workers.

Example::

    from tribute.core.engine import get_engine

    with get_engine("local", workers=2) as eng:
        for result in eng.map(work_fn, shard_specs, config):
            ...  # results arrive in the order of shard_specs
"""

from __future__ import annotations

import multiprocessing
import os
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Mapping, Sequence

from .errors import ConfigError, DependencyError, InputError, TributeError

ENGINES = ("local", "ray")
RAY_INSTALL_HINT = "pip install 'tribute[ray]'"

WorkFn = Callable[..., Any]


def default_workers() -> int:
    """The number of CPUs this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r}: must be a whole number >= 1; use --workers 1 or more")
    return workers


class Engine(ABC):
    """Runs ``fn(item, *args)`` for every item and yields the results in item order.

    ``fn`` must be a top-level function of an importable module (it is pickled by reference);
    ``items`` and ``args`` must be picklable. Errors raised by ``fn`` reach the caller as the
    same exception (a :class:`TributeError` keeps its one-line message).
    """

    name: str = ""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = _check_workers(workers)

    @abstractmethod
    def map(self, fn: WorkFn, items: Sequence[Any], *args: Any) -> Iterator[Any]:
        """Yield ``fn(item, *args)`` for each item of ``items``, in the order of ``items``."""

    def close(self) -> None:
        """Release workers (idempotent)."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for logs and reports (not part of any manifest)."""
        return {"engine": self.name, "workers": self.workers}

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _in_order(
    items: Sequence[Any],
    window: int,
    submit: Callable[[Any], Any],
    wait_any: Callable[[list[Any]], list[Any]],
    result: Callable[[Any], Any],
    cancel: Callable[[Any], None],
) -> Iterator[Any]:
    """Yield each item's result in input order, with at most ``window`` items submitted and not
    yet yielded (running, or finished out of order and held back).

    The bound covers held-back results too, so a consumer that stops or stalls (a progress
    callback, a killed driver) leaves at most ``window`` shards of work past the last one it saw.
    """
    handles: dict[Any, int] = {}
    done: dict[int, Any] = {}
    it = iter(enumerate(items))
    next_index = 0
    try:
        while True:
            while next_index in done:
                value = done.pop(next_index)
                next_index += 1
                yield value
            for i, item in _take(it, window - len(handles) - len(done)):
                handles[submit(item)] = i
            if not handles:
                return
            for h in wait_any(list(handles)):
                done[handles.pop(h)] = result(h)  # re-raises the worker's exception
    finally:
        for h in handles:
            cancel(h)


class LocalEngine(Engine):
    """A process pool on this machine; serial in this process when ``workers == 1``.

    Each pool worker caps its BLAS / OpenMP threads to its share of the CPUs (as Ray does).

    At most ``2 * workers`` items are in flight at once, so an interrupted job has started
    little work it did not finish, and memory stays bounded for long shard lists.
    """

    name = "local"

    def __init__(self, workers: int | None = 1, start_method: str | None = None) -> None:
        super().__init__(workers)
        methods = multiprocessing.get_all_start_methods()
        if start_method is None:
            # forkserver: no fork of a process that may hold threads (duckdb, torch, BLAS).
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        if start_method not in methods:
            raise ConfigError(f"start_method={start_method!r}: not available here; use one of {', '.join(methods)}")
        self.start_method = start_method
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context(self.start_method)
            threads = max(1, default_workers() // self.workers)
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                             initializer=_limit_threads, initargs=(threads,))
        return self._pool

    def map(self, fn: WorkFn, items: Sequence[Any], *args: Any) -> Iterator[Any]:
        if self.workers == 1:
            for item in items:
                yield fn(item, *args)
            return
        pool = self._executor()

        def result(fut: Future) -> Any:
            try:
                return fut.result()
            except BrokenProcessPool as e:
                raise ConfigError(
                    "a local worker process died (out of memory, killed, or a script without "
                    "an `if __name__ == \"__main__\":` guard); lower --workers or fix the script"
                ) from e

        yield from _in_order(items, 2 * self.workers, lambda item: pool.submit(fn, item, *args),
                             lambda fs: list(wait(fs, return_when=FIRST_COMPLETED)[0]), result,
                             lambda fut: fut.cancel())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _limit_threads(threads: int) -> None:
    """Pool initializer: each worker's BLAS / OpenMP / torch uses its share of the CPUs
    (as Ray does for its workers), so N workers do not start N x CPUs threads."""
    for var in _THREAD_VARS:
        os.environ.setdefault(var, str(threads))
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:  # pragma: no cover - only when the parent preloaded torch
        torch.set_num_threads(threads)


def _take(it: Iterator[Any], n: int) -> list[Any]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def import_ray():
    """Import ray, or raise :class:`DependencyError` with the install hint."""
    try:
        import ray  # noqa: PLC0415 - optional dependency, imported where used
    except ImportError as e:
        raise DependencyError(f"the ray engine needs the ray package, which is not installed; run {RAY_INSTALL_HINT}") from e
    return ray


class RayEngine(Engine):
    """Ray Core tasks, at most ``workers`` in flight at once.

    Args:
        workers: how many tasks run at the same time (default: the cluster's CPUs, or this
            machine's when Ray is started here).
        address: ``None`` starts (or reuses) a Ray instance in this process; ``"auto"`` joins the
            cluster this node belongs to; ``"ray://host:10001"`` joins through Ray Client.
        num_cpus, num_gpus: resources each task asks for (``num_gpus=1`` for GPU featurisation).

    If Ray is already initialised in this process (a test session, a notebook), that instance
    is reused and left running on :meth:`close`; an instance this engine started is shut down.
    The machines of a cluster need tribute installed (same version) in the same environment.
    """

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if workers is not None:
            _check_workers(workers)
        self.ray = import_ray()
        self.address = address
        self._started = False
        if not self.ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning",
                                      "log_to_driver": True}
            if address:
                kwargs["address"] = address
            elif workers is not None:
                kwargs["num_cpus"] = max(workers, int(num_cpus) or 1)
            kwargs.update(init_kwargs or {})
            try:
                self.ray.init(**kwargs)
            except ConnectionError as e:
                raise ConfigError(
                    f"--ray-address {address}: cannot connect ({e}); start the cluster with "
                    "`ray start --head` or check the address"
                ) from e
            self._started = True
        if workers is None:
            workers = max(1, int(self.ray.cluster_resources().get("CPU", 1) // max(num_cpus, 1e-9)))
        super().__init__(workers)
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self._remote: dict[WorkFn, Any] = {}

    def _task(self, fn: WorkFn):
        if fn not in self._remote:
            # a task lost with its node is retried: shard work is idempotent (temp file, rename)
            self._remote[fn] = self.ray.remote(fn).options(
                num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=3, retry_exceptions=False
            )
        return self._remote[fn]

    def map(self, fn: WorkFn, items: Sequence[Any], *args: Any) -> Iterator[Any]:
        ray = self.ray
        task = self._task(fn)
        arg_refs = [ray.put(a) for a in args]  # shared once, not copied per task
        yield from _in_order(items, self.workers, lambda item: task.remote(item, *arg_refs),
                             lambda refs: ray.wait(refs, num_returns=1)[0], self._get,
                             lambda ref: ray.cancel(ref, force=True))

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, TributeError):
                raise cause from None
            if isinstance(cause, BaseException):
                raise cause
            raise

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "address": self.address, "num_cpus": self.num_cpus,
                "num_gpus": self.num_gpus}

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False


def get_engine(
    name: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    *,
    num_gpus: float = 0,
) -> Engine:
    """The engine for ``--engine NAME --workers N [--ray-address ADDR]``.

    ``workers=None`` means 1 for ``local`` (serial) and all the cluster's CPUs for ``ray``.
    A ``ray_address`` with the local engine is a :class:`ConfigError` (it would be ignored).
    """
    if name == "local":
        if ray_address:
            raise ConfigError("--ray-address needs --engine ray; drop it or add --engine ray")
        if num_gpus:
            raise ConfigError("num_gpus needs --engine ray; the local engine does not schedule GPUs")
        return LocalEngine(1 if workers is None else workers)
    if name == "ray":
        return RayEngine(workers, address=ray_address, num_gpus=num_gpus)
    raise ConfigError(f"--engine {name!r}: unknown engine; use one of {', '.join(ENGINES)}")


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """Parse ``--shard I/N`` (0-based ``I``, ``0 <= I < N``) into ``(I, N)``; ``None`` stays ``None``.

    ``I`` may also be given as ``$SLURM_ARRAY_TASK_ID`` expanded by the shell.
    """
    if value is None or value == "":
        return None
    parts = str(value).strip().split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        i, n = int(parts[0]), int(parts[1])
    except ValueError:
        raise InputError(f"--shard {value!r}: expected I/N such as 3/16 (0-based I); check the value") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {value!r}: need 0 <= I < N (I is 0-based); use e.g. 0/{max(n, 1)}")
    return i, n


__all__ = [
    "ENGINES", "RAY_INSTALL_HINT", "Engine", "LocalEngine", "RayEngine", "get_engine",
    "import_ray", "parse_shard", "default_workers",
]
