"""Rollout sources: where a learner gets its transitions from.

A source owns ``workers`` rollout workers (``robot_rl.scale.worker.RolloutWorker``) that split ``num_envs`` envs
evenly. The learner publishes its acting policy with ``set_policy(snapshot) -> version`` (the Ray source puts it in
the object store once per version; every worker call carries the reference) and pulls one batch per worker with
``collect(n_steps)``. Vector-env-like ``reset(seed)``, ``single_observation_space``, ``single_action_space`` and
``close()`` let a learner hold a source where it held its vector env.

Stale batches: a batch made with policy version ``v`` while the learner is at ``V`` is accepted when
``V - v <= max_staleness`` and dropped otherwise (PPO: ``max_staleness = 0``, on-policy; SAC / PETS data: ``None``,
keep everything). With ``max_staleness != 0`` the Ray source prefetches: as soon as a batch arrives it asks the
worker for the next one, so collection overlaps the learner's update.

Worker failure (Ray): a worker whose process dies is restarted by Ray (``max_restarts``); its in-flight batch is
discarded, the event is logged (logger ``robot_rl.scale``, ``events``, and the counters of ``pop_stats()`` that the
learner writes to metrics.csv), and the request is sent again to the restarted worker, which rebuilds its env from
the seed stream of its new incarnation (``robot_rl.scale.seeding``).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from robot_rl.scale.config import RayConfig, RolloutConfig
from robot_rl.scale.worker import RolloutWorker

log = logging.getLogger("robot_rl.scale")


def _cause(exc: Exception) -> str:
    """The most specific line of a Ray error (the remote ``SomeError: message`` line when there is one)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error:" in ln or "Exception:" in ln]
    return errors[-1] if errors else (lines[0] if lines else type(exc).__name__)


def split_envs(num_envs: int, workers: int) -> int:
    """Envs per worker; ``num_envs`` must divide evenly so every batch has the learner's ``[T, num_envs]`` shape."""
    if workers < 1 or num_envs % workers:
        raise ValueError(f"num_envs ({num_envs}) must be a positive multiple of rollout.workers ({workers})")
    return num_envs // workers


class _SourceBase:
    def __init__(self, num_envs: int, workers: int, max_staleness: int | None):
        self.num_envs, self.num_workers = int(num_envs), int(workers)
        self.envs_per_worker = split_envs(num_envs, workers)
        self.max_staleness = max_staleness
        self.version = -1
        self.events: list[dict] = []
        self._counts = {"rollout_batches": 0, "rollout_stale_dropped": 0, "rollout_restarts": 0,
                        "rollout_wait_s": 0.0}

    def _accept(self, batch_version: int) -> bool:
        return self.max_staleness is None or self.version - batch_version <= self.max_staleness

    def _event(self, level: int, kind: str, msg: str, **fields) -> None:
        self.events.append({"event": kind, "time": time.time(), **fields})
        log.log(level, msg)

    def pop_stats(self) -> dict[str, float]:
        """Counters since the last call (batches, stale batches dropped, worker restarts, seconds waited)."""
        out = {k: float(v) for k, v in self._counts.items()}
        self._counts = dict.fromkeys(self._counts, 0)
        self._counts["rollout_wait_s"] = 0.0
        return out


class LocalRolloutSource(_SourceBase):
    """The workers in this process, stepped one after the other (reference for the Ray source; no ray needed)."""

    def __init__(self, env_id: str, num_envs: int, *, workers: int, randomization: str | None, run_seed: int,
                 max_staleness: int | None = 0):
        super().__init__(num_envs, workers, max_staleness)
        self.workers = [RolloutWorker(env_id, self.envs_per_worker, randomization=randomization, run_seed=run_seed,
                                      worker_index=w) for w in range(workers)]
        self.single_observation_space, self.single_action_space = self.workers[0].spaces()
        self._snapshot = None

    def set_policy(self, snapshot: dict) -> int:
        self.version += 1
        self._snapshot = snapshot
        return self.version

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Reset every worker's envs from ``seed``; returns ``(obs [num_envs, n_obs], {})``."""
        return np.concatenate([w.reset(0 if seed is None else seed) for w in self.workers]), {}

    def collect(self, n_steps: int) -> list[dict]:
        if self._snapshot is None:
            raise RuntimeError("collect() before set_policy(): publish the acting policy first")
        t0 = time.perf_counter()
        out = [w.collect(n_steps, self._snapshot, self.version) for w in self.workers]
        self._counts["rollout_batches"] += len(out)
        self._counts["rollout_wait_s"] += time.perf_counter() - t0
        return out

    def close(self) -> None:
        for w in self.workers:
            w.close()


class RayRolloutSource(_SourceBase):
    """Rollout workers as Ray actors (Ray must be initialized: ``robot_rl.scale.cluster.init_ray``)."""

    def __init__(self, env_id: str, num_envs: int, *, workers: int, randomization: str | None, run_seed: int,
                 max_staleness: int | None = 0, cpus_per_worker: float = 1.0, max_restarts: int = 3,
                 batch_timeout_s: float = 300.0):
        from robot_rl.scale.cluster import import_ray

        super().__init__(num_envs, workers, max_staleness)
        self.ray = ray = import_ray()
        if not ray.is_initialized():
            raise RuntimeError("RayRolloutSource needs a connected Ray: call robot_rl.scale.cluster.init_ray() first")
        self.max_restarts, self.batch_timeout_s = int(max_restarts), float(batch_timeout_s)
        actor_cls = ray.remote(RolloutWorker)
        self.handles = [actor_cls.options(num_cpus=cpus_per_worker, max_restarts=max_restarts, max_task_retries=0)
                        .remote(env_id, self.envs_per_worker, randomization=randomization, run_seed=run_seed,
                                worker_index=w) for w in range(workers)]
        self.incarnation = [0] * workers
        self.failures = [0] * workers
        self.pids: list[int | None] = [None] * workers
        self.pids = [self._call(w, "pid", what="start-up") for w in range(workers)]
        self.single_observation_space, self.single_action_space = self._get(self.handles[0].spaces.remote(), 0)
        self._ref = None
        self._inflight: dict[int, tuple] = {}  # worker -> (ref, version, n_steps)

    # ------------------------------------------------------------------ failure handling
    def _on_failure(self, w: int, exc: Exception, what: str) -> None:
        """A call to worker ``w`` failed: wait until Ray has it back, and count a restart if its process changed.

        Ray reports a killed actor as ``ActorDiedError`` or (while restarting) ``ActorUnavailableError``; either way
        the call's result is lost. The worker's pid tells a restart (new process) from a transient error.
        """
        from ray.exceptions import ActorUnavailableError, RayActorError

        deadline = time.monotonic() + self.batch_timeout_s
        while True:
            try:
                pid = self._get(self.handles[w].pid.remote(), w)
                break
            except ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"rollout worker {w} still unavailable {self.batch_timeout_s} s after "
                                       f"failing during {what}") from exc
                time.sleep(0.2)
            except RayActorError as dead:
                who = f"rollout worker {w}" + (f" (pid {self.pids[w]})" if self.pids[w] is not None else "")
                raise RuntimeError(f"{who} died {self.failures[w] + 1} times "
                                   f"(rollout.max_restarts={self.max_restarts}) and is not restarted; it failed during "
                                   f"{what}: {_cause(exc)}") from dead
        if pid == self.pids[w]:
            self._event(logging.INFO, "worker_retry", f"rollout worker {w}: {type(exc).__name__} during {what}; "
                        f"result discarded, asking again", worker=w, pid=pid, during=what)
            return
        self.failures[w] += 1
        self._counts["rollout_restarts"] += 1
        self.incarnation[w] += 1
        self._event(logging.WARNING, "worker_restart",
                    f"rollout worker {w} (pid {self.pids[w]}) died during {what}; its in-flight batch is discarded; "
                    f"Ray restarted it as pid {pid} (restart {self.failures[w]}/{self.max_restarts}, incarnation "
                    f"{self.incarnation[w]})", worker=w, pid=self.pids[w], new_pid=pid, during=what,
                    restart=self.failures[w])
        self.pids[w] = pid

    def _get(self, ref, w: int):
        ready, _ = self.ray.wait([ref], timeout=self.batch_timeout_s)
        if not ready:
            raise TimeoutError(f"rollout worker {w} did not answer within rollout.batch_timeout_s="
                               f"{self.batch_timeout_s} s")
        return self.ray.get(ref)

    def _call(self, w: int, method: str, *args, what: str | None = None):
        """``handles[w].method(*args)`` with restart handling (args may depend on the incarnation: callables)."""
        from ray.exceptions import RayActorError

        while True:
            call_args = [a(w) if callable(a) else a for a in args]
            try:
                return self._get(getattr(self.handles[w], method).remote(*call_args), w)
            except RayActorError as exc:
                self._on_failure(w, exc, what or method)

    # ------------------------------------------------------------------ source API
    def set_policy(self, snapshot: dict) -> int:
        """Publish a new policy version: one ``ray.put``; workers fetch it with their next batch request."""
        self.version += 1
        self._ref = self.ray.put(snapshot)
        return self.version

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Discard in-flight batches and reset every worker's envs from ``seed``; ``(obs [num_envs, n_obs], {})``."""
        self._inflight.clear()
        s = 0 if seed is None else int(seed)
        obs = [self._call(w, "reset", s, lambda i: self.incarnation[i]) for w in range(self.num_workers)]
        return np.concatenate(obs), {}

    def _launch(self, w: int, n_steps: int) -> None:
        ref = self.handles[w].collect.remote(n_steps, self._ref, self.version, self.incarnation[w])
        self._inflight[w] = (ref, self.version, n_steps)

    def collect(self, n_steps: int) -> list[dict]:
        """One accepted batch per worker (worker order), waiting for all; see the module docstring."""
        from ray.exceptions import RayActorError

        if self._ref is None:
            raise RuntimeError("collect() before set_policy(): publish the acting policy first")
        t0 = time.perf_counter()
        for w in range(self.num_workers):
            if w in self._inflight and self._inflight[w][2] != n_steps:
                del self._inflight[w]
            if w not in self._inflight:
                self._launch(w, n_steps)
        results: dict[int, dict] = {}
        while len(results) < self.num_workers:
            pending = {self._inflight[w][0]: w for w in self._inflight if w not in results}
            ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=self.batch_timeout_s)
            if not ready:
                raise TimeoutError(f"rollout workers {sorted(pending.values())} sent no batch within "
                                   f"rollout.batch_timeout_s={self.batch_timeout_s} s")
            w = pending[ready[0]]
            _, version, _ = self._inflight.pop(w)
            try:
                batch = self.ray.get(ready[0])
            except RayActorError as exc:
                self._on_failure(w, exc, f"batch collection (policy version {version})")
                self._launch(w, n_steps)
                continue
            self.pids[w] = batch["pid"]
            if not self._accept(batch["version"]) or batch["incarnation"] != self.incarnation[w]:
                self._counts["rollout_stale_dropped"] += 1
                self._event(logging.INFO, "stale_dropped", f"rollout worker {w}: dropped a batch of policy version "
                            f"{batch['version']} (learner at {self.version}, rollout.max_staleness="
                            f"{self.max_staleness})", worker=w, version=batch["version"], learner_version=self.version)
                self._launch(w, n_steps)
                continue
            results[w] = batch
        self._counts["rollout_batches"] += self.num_workers
        self._counts["rollout_wait_s"] += time.perf_counter() - t0
        if self.max_staleness != 0:  # off-policy: keep the workers busy while the learner updates
            for w in range(self.num_workers):
                self._launch(w, n_steps)
        return [results[w] for w in range(self.num_workers)]

    def close(self) -> None:
        self._inflight.clear()
        for h in self.handles:
            try:
                self.ray.kill(h, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead / Ray shut down: nothing left to release
                pass
        self.handles = []


def make_rollout_source(cfg, num_envs: int, *, default_staleness: int | None, rollout=None, ray_cfg=None):
    """The source that ``cfg.rollout`` asks for (``rollout`` / ``ray_cfg`` override the config's sections).

    ``default_staleness`` is the algorithm's policy when ``rollout.max_staleness`` is null (0 for PPO, None for
    off-policy). ``backend: ray`` connects to ``ray.address`` or starts a private loopback cluster.
    """
    rollout = rollout or getattr(cfg, "rollout", None) or RolloutConfig()
    ray_cfg = ray_cfg or getattr(cfg, "ray", None) or RayConfig()
    staleness = rollout.max_staleness if rollout.max_staleness is not None else default_staleness
    common = {"workers": rollout.workers, "randomization": cfg.env.randomization, "run_seed": cfg.seed,
              "max_staleness": staleness}
    if rollout.backend == "local":
        return LocalRolloutSource(cfg.env.id, num_envs, **common)
    from robot_rl.scale.cluster import init_ray

    init_ray(ray_cfg.address, ray_cfg.num_cpus)
    return RayRolloutSource(cfg.env.id, num_envs, cpus_per_worker=rollout.cpus_per_worker,
                            max_restarts=rollout.max_restarts, batch_timeout_s=rollout.batch_timeout_s, **common)
