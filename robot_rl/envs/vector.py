"""Vectorized env with same-step autoreset: ``make_vec(env_id, num_envs, *, seed, randomization, **kw)``.

Gymnasium ``VectorEnv`` API (``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``): an env that ends is reset
inside the same ``step`` call, the returned observation is the new episode's first one, and the true last
observation is in ``infos["final_obs"]`` (shape ``[N, ...]``, zeros where not done) with the mask
``infos["_final_obs"]``. Finished episodes report ``infos["episode"] = {"r": [N], "l": [N]}`` with mask
``infos["_episode"]``; ``infos["physics_error"]`` ([N] bool) and, for tasks with a success notion,
``infos["is_success"]`` ([N] bool, the value of the step that ended or continued) are always present.
Dict observations (goal-conditioned tasks) are dicts of ``[N, ...]`` arrays.

Env ``i`` is ``robot_rl.envs.make(env_id, seed=seed + i, ...)``, so a vector env equals N single envs stepped with
the same actions and reset on done. Backends: ``"process"`` (default when ``num_workers > 1``) runs the envs in
``num_workers`` worker processes (a contiguous block each, one pipe round trip per step) so physics and Python
overhead both run in parallel; ``"sync"`` steps them in this process. See bench/results/envs.md for speed.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


def _stack(items: list):
    if isinstance(items[0], dict):
        return {k: np.stack([it[k] for it in items]) for k in items[0]}
    return np.stack(items)


def _concat(parts: list):
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


class _Block:
    """A contiguous block of envs stepped in a loop with same-step autoreset (runs in-process or in a worker)."""

    def __init__(self, env_id: str, indices: range, seed: int | None, randomization, kwargs: dict):
        from robot_rl.envs import make

        self.envs = [make(env_id, randomization=randomization, seed=None if seed is None else seed + i, **kwargs)
                     for i in indices]
        self.returns = np.zeros(len(self.envs))
        self.lengths = np.zeros(len(self.envs), dtype=np.int64)
        obs_space = self.envs[0].observation_space
        self.zero_obs = ({k: np.zeros(s.shape, s.dtype) for k, s in obs_space.spaces.items()}
                         if isinstance(obs_space, gym.spaces.Dict) else np.zeros(obs_space.shape, obs_space.dtype))

    def reset(self, seeds: list):
        obs, succ = [], []
        for env, s in zip(self.envs, seeds):
            o, info = env.reset(seed=s)
            obs.append(o)
            succ.append(info.get("is_success", False))
        self.returns[:] = 0.0
        self.lengths[:] = 0
        return _stack(obs), {"is_success": np.asarray(succ, dtype=bool),
                             "physics_error": np.zeros(len(self.envs), dtype=bool)}

    def step(self, actions: np.ndarray):
        n = len(self.envs)
        obs, final_obs = [], []
        rew = np.zeros(n)
        term = np.zeros(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        err = np.zeros(n, dtype=bool)
        succ = np.zeros(n, dtype=bool)
        ep_r, ep_l = np.zeros(n), np.zeros(n, dtype=np.int64)
        for i, env in enumerate(self.envs):
            o, r, te, tr, info = env.step(actions[i])
            rew[i], term[i], trunc[i] = r, te, tr
            err[i] = info["physics_error"]
            succ[i] = info.get("is_success", False)
            self.returns[i] += r
            self.lengths[i] += 1
            if te or tr:
                final_obs.append(o)
                ep_r[i], ep_l[i] = self.returns[i], self.lengths[i]
                self.returns[i], self.lengths[i] = 0.0, 0
                o, _ = env.reset()
            else:
                final_obs.append(self.zero_obs)
            obs.append(o)
        done = term | trunc
        infos = {"final_obs": _stack(final_obs), "_final_obs": done, "episode": {"r": ep_r, "l": ep_l},
                 "_episode": done, "physics_error": err, "is_success": succ}
        return _stack(obs), rew, term, trunc, infos

    def get_attr(self, name: str) -> list:
        return [getattr(env.unwrapped, name) for env in self.envs]

    def set_attr(self, name: str, values: list) -> None:
        for env, v in zip(self.envs, values):
            setattr(env.unwrapped, name, v)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker(conn, env_id, indices, seed, randomization, kwargs):
    try:
        block = _Block(env_id, indices, seed, randomization, kwargs)
        conn.send(("ok", None))
    except Exception:  # noqa: BLE001 - report any construction error to the parent
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        cmd, arg = conn.recv()
        try:
            if cmd == "close":
                block.close()
                conn.send(("ok", None))
                return
            conn.send(("ok", getattr(block, cmd)(*arg)))
        except Exception:  # noqa: BLE001 - the parent re-raises with the worker traceback
            conn.send(("error", traceback.format_exc()))


def _merge_infos(parts: list[dict]) -> dict:
    out = {}
    for k in parts[0]:
        if isinstance(parts[0][k], dict):
            out[k] = {kk: np.concatenate([p[k][kk] for p in parts]) for kk in parts[0][k]}
        else:
            out[k] = _concat([p[k] for p in parts])
    return out


class RobotVecEnv(VectorEnv):
    """N copies of a robot_rl task with same-step autoreset (see module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env_id: str, num_envs: int, *, seed: int | None = 0, randomization=None,
                 num_workers: int = 1, backend: str | None = None, **kwargs):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        backend = backend or ("process" if num_workers > 1 else "sync")
        if backend not in ("process", "sync"):
            raise ValueError(f"backend must be 'process' or 'sync', got {backend!r}")
        self.num_envs = num_envs
        self.backend = backend
        self._seed = seed
        from robot_rl.envs import make

        probe = make(env_id, **kwargs)
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.obs_names = probe.unwrapped.obs_names
        self.control_dt = probe.unwrapped.control_dt
        probe.close()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.spec = None
        self.render_mode = None
        self.closed = False
        if backend == "sync":
            self._blocks = [_Block(env_id, range(num_envs), seed, randomization, kwargs)]
            self._slices = [slice(0, num_envs)]
            self._conns, self._procs = [], []
            return
        workers = max(1, min(num_workers, num_envs))
        bounds = np.linspace(0, num_envs, workers + 1).round().astype(int)
        self._slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        # fork: no re-import of the caller's __main__ (spawn would need an `if __name__ == "__main__"` guard in
        # every script); workers only run numpy/mujoco, never torch, so forking a torch-using parent is safe.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self._conns, self._procs = [], []
        for sl in self._slices:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child, env_id, range(sl.start, sl.stop), seed, randomization, kwargs),
                            daemon=True)
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)
        for c in self._conns:
            self._recv(c)

    # ------------------------------------------------------------------ transport
    def _recv(self, conn):
        try:
            status, payload = conn.recv()
        except (EOFError, ConnectionResetError) as exc:
            raise RuntimeError(f"vector env worker exited unexpectedly ({type(exc).__name__})") from None
        if status != "ok":
            raise RuntimeError(f"vector env worker failed:\n{payload}")
        return payload

    def _call_all(self, cmd: str, args_per_block: list) -> list:
        if self.backend == "sync":
            return [getattr(b, cmd)(*a) for b, a in zip(self._blocks, args_per_block)]
        for c, a in zip(self._conns, args_per_block):
            c.send((cmd, a))
        return [self._recv(c) for c in self._conns]

    # ------------------------------------------------------------------ VectorEnv API
    def reset(self, *, seed: int | list | None = None, options: dict | None = None):
        """Reset every env; ``seed`` int -> env i gets ``seed + i``; a list gives one seed per env."""
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        parts = self._call_all("reset", [(seeds[sl],) for sl in self._slices])
        return _concat([p[0] for p in parts]), _merge_infos([p[1] for p in parts])

    def step(self, actions):
        """Step all envs with ``actions`` of shape ``(num_envs, n_act)``; same-step autoreset."""
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"actions must have shape {self.action_space.shape}, got {actions.shape}")
        parts = self._call_all("step", [(actions[sl],) for sl in self._slices])
        obs = _concat([p[0] for p in parts])
        rew = np.concatenate([p[1] for p in parts])
        term = np.concatenate([p[2] for p in parts])
        trunc = np.concatenate([p[3] for p in parts])
        return obs, rew, term, trunc, _merge_infos([p[4] for p in parts])

    def get_attr(self, name: str) -> tuple:
        """Attribute ``name`` of every env's ``unwrapped``."""
        return tuple(v for part in self._call_all("get_attr", [(name,)] * len(self._slices)) for v in part)

    def set_attr(self, name: str, values) -> None:
        """Set ``name`` on every env's ``unwrapped`` (one value for all, or a list of ``num_envs`` values)."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"got {len(values)} values for {self.num_envs} envs")
        self._call_all("set_attr", [(name, list(values[sl])) for sl in self._slices])

    def close_extras(self, **kwargs) -> None:
        if self.backend == "sync":
            for b in self._blocks:
                b.close()
            return
        for c in self._conns:
            try:
                c.send(("close", ()))
                c.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
        for p in self._procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


def make_vec(env_id: str, num_envs: int, *, seed: int | None = 0, randomization=None, num_workers: int = 1,
             backend: str | None = None, **kwargs) -> RobotVecEnv:
    """Vector env of ``num_envs`` copies of ``env_id`` (see module docstring); ``kwargs`` go to every env."""
    return RobotVecEnv(env_id, num_envs, seed=seed, randomization=randomization, num_workers=num_workers,
                       backend=backend, **kwargs)
