"""Batches of model work on a Ray cluster (optional extra: ``pip install -e ".[ray]"``).

The driver (the CLI or the dashboard's worker process) keeps everything that makes a run
reproducible and resumable: it reads the cache, decides which clips are missing, and
writes each finished batch to the same cache as the local executor, so progress,
cancellation and resume after a kill work exactly as they do locally. Ray only does the
model work:

* one actor (the evidence layer's :class:`core.pipeline.evidence.EvidenceWorker`) per GPU (or per ``cpus_per_actor`` CPUs when the cluster has
  no GPU) loads the target **once** and scores batches of clips;
* batches go to whichever actor is idle and are written to the cache in the order they
  finish;
* each batch carries the clips' stored (compressed) bytes, so workers need no access to
  the workspace; a local checkpoint folder must exist at the same path on every worker
  (shared storage), and ``zoo:`` targets ship with the package.

Every actor reports the fingerprint of the model it loaded; a mismatch (a worker with
other weights at the same path) stops the run before anything is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

# one batch: (indices into the run's clip list, [(clip_hash, audio bytes, text), ...])
Batch = tuple[list[int], list[tuple[str, bytes, str]]]


class ExecutorError(RuntimeError):
    """The cluster cannot run the work (not reachable, too small, inconsistent workers)."""


def _ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ExecutorError('the Ray executor needs the optional extra: pip install -e ".[ray]"') from exc
    return ray


@dataclass(frozen=True)
class RayExecutor:
    """Run evidence batches on Ray actors.

    Parameters
    ----------
    address : Ray cluster address (``ray://host:10001``, ``host:6379`` or ``auto``); ``None``
        joins a Ray instance already initialized in this process or starts a local one.
    n_actors : number of model replicas; default one per GPU in the cluster, else one per
        ``cpus_per_actor`` CPUs (at least one).
    cpus_per_actor : CPUs reserved by each CPU actor (its torch thread count).
    start_timeout_s : how long actors may take to be scheduled and load the model.
    """

    address: str | None = None
    n_actors: int | None = None
    cpus_per_actor: int = 1
    start_timeout_s: float = 900.0

    def connect(self):
        ray = _ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address or None, ignore_reinit_error=True, log_to_driver=False,
                         include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                raise ExecutorError(f"could not join {where}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from exc
        return ray

    def _plan(self, ray) -> tuple[int, dict]:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        if gpus:
            return self.n_actors or gpus, {"num_gpus": 1, "num_cpus": 1}
        cpus = max(1, int(res.get("CPU", 1)))
        n = self.n_actors or max(1, cpus // self.cpus_per_actor)
        return n, {"num_cpus": self.cpus_per_actor}

    def actors(self, n: int | None, worker: type, *, have: int = 0, **init) -> list:
        """Start up to ``n`` more ``worker(**init, threads=...)`` actors beside the ``have``
        already running, never more in all than the cluster plan allows (``n=None``: up to
        the plan). ``threads`` is the torch thread count of a CPU actor (None on a GPU).
        A worker has ``fingerprint()`` and ``score(batch)`` methods."""
        ray = self.connect()
        planned, resources = self._plan(ray)
        room = max(0, planned - have)
        n = room if n is None else max(0, min(n, room))
        threads = None if "num_gpus" in resources else self.cpus_per_actor
        actor_cls = ray.remote(**resources)(worker)
        return [actor_cls.remote(**init, threads=threads) for _ in range(n)]

    def fingerprint(self, actors: Sequence) -> str:
        """The model fingerprint every actor loaded; different ones stop the run."""
        ray = _ray()
        try:
            fps = set(ray.get([a.fingerprint.remote() for a in actors], timeout=self.start_timeout_s))
        except ray.exceptions.GetTimeoutError:
            raise ExecutorError(f"Ray actors did not start within {self.start_timeout_s:.0f} s: "
                               "the cluster lacks the CPUs/GPUs they reserve, or loading the model stalls") from None
        if len(fps) != 1:
            raise ExecutorError(f"Ray workers loaded different models (fingerprints {sorted(fps)}): "
                               "the checkpoint folder differs between machines")
        return fps.pop()

    def ask(self, actor, method: str):
        """The answer of one actor's argument-free ``method`` (e.g. what it loaded)."""
        return _ray().get(getattr(actor, method).remote(), timeout=self.start_timeout_s)

    def stop(self, actors: Sequence) -> None:
        ray = _ray()
        for a in actors:
            ray.kill(a)

    def run(self, actors: Sequence, batches: Iterable[Batch]) -> Iterator[tuple[list[int], list[bytes | str]]]:
        """Results of every batch, in the order they finish.

        One batch in flight per actor; the next batch's payload is read only when an actor
        becomes free, so the driver never holds more than ``len(actors)`` batches of audio.
        """
        ray = _ray()
        todo = iter(batches)
        idle = list(actors)
        inflight: dict = {}

        def fill() -> None:
            while idle:
                batch = next(todo, None)
                if batch is None:
                    return
                actor = idle.pop()
                inflight[actor.score.remote(batch)] = actor

        fill()
        while inflight:
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            idle.append(inflight.pop(ref))
            result = ray.get(ref)
            fill()  # keep the actors busy while the caller writes this batch to the cache
            yield result
