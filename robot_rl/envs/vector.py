"""Vectorized env with same-step autoreset: ``make_vec(env_id, num_envs, *, seed, randomization, **kw)``.

Gymnasium ``VectorEnv`` API (``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``): an env that ends is reset
inside the same ``step`` call, the returned observation is the new episode's first one, and the true last
observation is in ``infos["final_obs"]`` (shape ``[N, ...]``, zeros where not done) with the mask
``infos["_final_obs"]``. Finished episodes report ``infos["episode"] = {"r": [N], "l": [N]}`` with mask
``infos["_episode"]``; ``infos["physics_error"]`` ([N] bool) and, for tasks with a success notion,
``infos["is_success"]`` ([N] bool, the value of the step that ended or continued) are always present.
Dict observations (goal-conditioned tasks) are dicts of ``[N, ...]`` arrays.

Env ``i`` is ``robot_rl.envs.make(env_id, seed=seed + i, ...)``, so a vector env equals N single envs stepped with
the same actions and reset on done -- bit for bit, whatever the backend:

* ``"batched"`` (default with ``num_workers == 1`` and at least 4 envs for the tasks that support it: the
  cart-poles and the pendulum; see ``robot_rl.envs.batched``) steps the envs in this process as one batch:
  one compiled call for the whole batch (action noise and latency, ``mj_step`` per env, observation, sensor noise,
  reward, divergence checks; ``robot_rl.envs.fast_step``), or one numpy pass with ``compiled_step=False``. About
  1.4x the throughput of compiled-step envs stepped one by one on the same core (16 envs), 4.6x that of
  Python-step envs. ``num_threads=k`` (k > 1, compiled kernel only) splits the batch into k contiguous parts: this
  thread steps the first, k - 1 worker threads the others, in nogil compiled code (no GIL, no pipes; a worker spins
  up to ``batched_threads.THREAD_SPIN_S`` for the next step, then sleeps in a futex wait). 16 envs on a 2-vCPU VM:
  2.2x the throughput of 16 single envs stepped in a loop, 1.6x one thread. The same results, bit for bit.
  ``backend="batched"`` on a task without support raises ``ValueError`` naming the reason.
* ``"sync"`` (default for the other tasks and for fewer than 4 envs) steps the envs one by one in this process.
* ``"process"`` (default when ``num_workers > 1``) runs the envs in ``num_workers`` processes (a contiguous block
  each, batched where the task allows it and a block has at least 4 envs: this process steps the first block,
  forked workers the others; results in shared memory, one tiny pipe message per worker and step, announced by a
  shared counter that the other side busy-waits on for up to ``SPIN_S``). It only pays on cores that are otherwise
  free.

See bench/results/envs.md for speed. Per-env randomization values are not copied into the step infos (a dict per env
and step through the workers' pipes would cost throughput); read them on demand with
``vec.get_attr("randomization_info")``: N dicts, the values in effect in each env's current episode.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from robot_rl.envs.batched import BatchedBlock, batch_support


class _Buffers:
    """Step results of all N envs in flat arrays; shared memory (inherited by forked workers) or private.

    Workers write their rows in place, so a step costs one tiny pipe message per worker instead of pickling
    observations and info dicts.
    """

    def __init__(self, obs_space: gym.Space, act_shape: tuple, n: int, ctx=None):
        self._ctx = ctx
        spaces = obs_space.spaces if isinstance(obs_space, gym.spaces.Dict) else {"": obs_space}
        self.dict_obs = isinstance(obs_space, gym.spaces.Dict)
        self.actions = self._alloc((n, *act_shape), np.float32)
        self.obs = {k: self._alloc((n, *sp.shape), sp.dtype) for k, sp in spaces.items()}
        self.final_obs = {k: self._alloc((n, *sp.shape), sp.dtype) for k, sp in spaces.items()}
        self.rew = self._alloc((n,), np.float64)
        self.ep_r = self._alloc((n,), np.float64)
        self.ep_l = self._alloc((n,), np.int64)
        self.term, self.trunc, self.err, self.succ = (self._alloc((n,), np.bool_) for _ in range(4))

    def _alloc(self, shape: tuple, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        if self._ctx is None:
            return np.zeros(shape, dtype)
        raw = self._ctx.RawArray("b", max(1, int(np.prod(shape)) * dtype.itemsize))
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def rows(self, sl: slice) -> _Buffers:
        view = object.__new__(_Buffers)
        view.dict_obs = self.dict_obs
        for k, v in self.__dict__.items():
            if isinstance(v, np.ndarray):
                setattr(view, k, v[sl])
            elif isinstance(v, dict):
                setattr(view, k, {kk: vv[sl] for kk, vv in v.items()})
        return view

    def observations(self, which: dict):
        """A copy (results must not alias the next step's buffers)."""
        return {k: v.copy() for k, v in which.items()} if self.dict_obs else which[""].copy()


class _Block:
    """A contiguous block of envs stepped in a loop with same-step autoreset (runs in-process or in a worker)."""

    def __init__(self, env_id: str, indices: range, seed: int | None, randomization, kwargs: dict, buf: _Buffers):
        from robot_rl.envs import make

        self.envs = [make(env_id, randomization=randomization, seed=None if seed is None else seed + i, **kwargs)
                     for i in indices]
        self.buf = buf
        self.returns = np.zeros(len(self.envs))
        self.lengths = np.zeros(len(self.envs), dtype=np.int64)

    def _write_obs(self, target: dict, i: int, o) -> None:
        if self.buf.dict_obs:
            for k, v in o.items():
                target[k][i] = v
        else:
            target[""][i] = o

    def reset(self, seeds: list) -> None:
        b = self.buf
        for i, (env, s) in enumerate(zip(self.envs, seeds)):
            o, info = env.reset(seed=s)
            self._write_obs(b.obs, i, o)
            b.succ[i] = info.get("is_success", False)
            b.err[i] = False
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def step(self) -> None:
        b = self.buf
        rews, terms, truncs, errs, succs = [], [], [], [], []
        obs, finals = [], []  # (row, observation) of every env / of the envs whose episode ended
        ep_r, ep_l = [0.0] * len(self.envs), [0] * len(self.envs)
        for i, (env, act) in enumerate(zip(self.envs, b.actions)):
            o, r, te, tr, info = env.step(act)
            rews.append(r)
            terms.append(te)
            truncs.append(tr)
            errs.append(info["physics_error"])
            succs.append(info.get("is_success", False))
            self.returns[i] += r
            self.lengths[i] += 1
            if te or tr:
                finals.append((i, o))
                ep_r[i], ep_l[i] = self.returns[i], self.lengths[i]
                self.returns[i], self.lengths[i] = 0.0, 0
                o, _ = env.reset()
            obs.append(o)
        # Whole-array writes (one numpy call per field, not per env).
        b.rew[:], b.term[:], b.trunc[:], b.err[:], b.succ[:], b.ep_r[:], b.ep_l[:] = (
            rews, terms, truncs, errs, succs, ep_r, ep_l)
        if b.dict_obs:
            for k, dst in b.obs.items():
                np.stack([o[k] for o in obs], out=dst)
        else:
            np.stack(obs, out=b.obs[""])
        for v in b.final_obs.values():
            v.fill(0)
        for i, o in finals:
            self._write_obs(b.final_obs, i, o)

    def get_attr(self, name: str) -> list:
        return [getattr(env.unwrapped, name) for env in self.envs]

    def call(self, name: str, args: tuple, kwargs: dict) -> list:
        out = []
        for env in self.envs:
            attr = getattr(env.unwrapped, name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return out

    def set_attr(self, name: str, values: list) -> None:
        for env, v in zip(self.envs, values):
            setattr(env.unwrapped, name, v)

    def close(self) -> None:
        for env in self.envs:
            env.close()


SPIN_S = 0.002
"""How long a process backend party busy-waits for the other before it sleeps in the pipe read [s].

A pipe read that sleeps costs a wake-up per message: ~70 us round trip on the 2-vCPU VM of bench/results/envs.md,
more than a block of 8 cart-pole steps. Each command is still sent through the pipe; a shared counter announces it,
and a party that sees the counter move reads a message that is already there. The busy-wait ends after ``SPIN_S``
(e.g. while the learner updates between rollouts), so an idle vector env does not keep a core busy."""


def _spin_until(ctl, i: int, value: int) -> None:
    """Busy-wait until ``ctl[i] >= value``, for at most ``SPIN_S``."""
    if ctl[i] >= value:
        return
    end = time.perf_counter() + SPIN_S
    while True:
        for _ in range(200):
            if ctl[i] >= value:
                return
        if time.perf_counter() > end:
            return


def _worker(conn, block_cls, env_id, indices, seed, randomization, kwargs, buf, ctl):
    try:
        block = block_cls(env_id, indices, seed, randomization, kwargs, buf)
        conn.send(("ok", None))
    except Exception:  # noqa: BLE001 - report any construction error to the parent
        conn.send(("error", traceback.format_exc()))
        return
    ctl = np.frombuffer(ctl, dtype=np.int64)  # [commands sent, commands answered]
    seen = 0
    while True:
        _spin_until(ctl, 0, seen + 1)  # the parent bumps ctl[0] after each send
        cmd, arg = conn.recv()
        seen += 1
        try:
            if cmd == "close":
                block.close()
                conn.send(("ok", None))
                return
            reply = ("ok", getattr(block, cmd)(*arg))
        except Exception:  # noqa: BLE001 - the parent re-raises with the worker traceback
            reply = ("error", traceback.format_exc())
        conn.send(reply)
        ctl[1] = seen  # after the send: a parent that sees it finds the reply in the pipe


BATCHED_MIN_ENVS = 4  # the default backend is "batched" from this many envs on (bench: 3 envs 0.8x, 4 envs 1.2x)


class RobotVecEnv(VectorEnv):
    """N copies of a robot_rl task with same-step autoreset (see module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env_id: str, num_envs: int, *, seed: int | None = 0, randomization=None,
                 num_workers: int = 1, backend: str | None = None, num_threads: int = 1, **kwargs):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if backend not in (None, "process", "sync", "batched"):
            raise ValueError(f"backend must be 'batched', 'sync' or 'process', got {backend!r}")
        from robot_rl.envs import make

        probe = make(env_id, **kwargs)
        why_not_batched = batch_support(probe)
        if backend == "batched" and why_not_batched is not None:
            probe.close()
            raise ValueError(f"vector env backend 'batched' cannot run {env_id!r}: {why_not_batched}; use "
                             "backend='sync' or 'process'")
        if backend is None:  # batching pays from about 4 envs on (its numpy calls cost as much as ~3 env steps)
            batch = why_not_batched is None and (num_envs >= BATCHED_MIN_ENVS or num_threads > 1)
            backend = "process" if num_workers > 1 else "batched" if batch else "sync"
        if num_threads != 1 and backend != "batched":
            probe.close()
            raise ValueError(f"num_threads={num_threads} needs backend 'batched' (got {backend!r}"
                             + (f": {why_not_batched}" if why_not_batched else "") + ")")
        # Blocks step their envs as one batch where the task allows it and the blocks are large enough to pay
        # (bit-identical to the loop of _Block).
        workers = max(1, min(num_workers, num_envs)) if backend == "process" else 1
        batched = backend == "batched" or (backend == "process" and num_envs // workers >= BATCHED_MIN_ENVS)
        block_cls = BatchedBlock if why_not_batched is None and batched else _Block
        self.num_envs = num_envs
        self.backend = backend
        self.batched = block_cls is BatchedBlock
        self.num_threads = 1
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
        self._conns, self._procs, self._blocks, self._ctl = [], [], [], []
        self._sent = 0  # commands sent to each worker (all workers get every command)
        if backend != "process":
            self._buf = _Buffers(self.single_observation_space, self.single_action_space.shape, num_envs)
            self._slices = [slice(0, num_envs)]
            extra = {"num_threads": num_threads} if block_cls is BatchedBlock else {}
            self._blocks = [block_cls(env_id, range(num_envs), seed, randomization, kwargs, self._buf, **extra)]
            self.num_threads = getattr(self._blocks[0], "num_threads", 1)
            return
        # fork: no re-import of the caller's __main__ (spawn would need an `if __name__ == "__main__"` guard in
        # every script) and the shared buffers are inherited; workers only run numpy/mujoco, never torch.
        if "fork" not in mp.get_all_start_methods():
            raise RuntimeError("the process backend needs the 'fork' start method; use backend='sync'")
        ctx = mp.get_context("fork")
        self._buf = _Buffers(self.single_observation_space, self.single_action_space.shape, num_envs, ctx)
        bounds = np.linspace(0, num_envs, workers + 1).round().astype(int)
        self._slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        # The first block runs in this process while the workers step theirs: with num_workers=2 on 2 cores, two
        # processes compute and none sits idle waiting on a pipe.
        self._blocks = [block_cls(env_id, range(self._slices[0].start, self._slices[0].stop), seed, randomization,
                                  kwargs, self._buf.rows(self._slices[0]))]
        for sl in self._slices[1:]:
            parent, child = ctx.Pipe()
            ctl = ctx.RawArray("q", 2)
            p = ctx.Process(target=_worker, daemon=True,
                            args=(child, block_cls, env_id, range(sl.start, sl.stop), seed, randomization, kwargs,
                                  self._buf.rows(sl), ctl))
            self._ctl.append(np.frombuffer(ctl, dtype=np.int64))
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
        """Run ``cmd`` on every block: workers first (asynchronously), then the local block, then collect."""
        if self.backend != "process":
            return [getattr(b, cmd)(*a) for b, a in zip(self._blocks, args_per_block)]
        self._send_workers(cmd, args_per_block[1:])
        local = getattr(self._blocks[0], cmd)(*args_per_block[0])
        return [local] + self._collect_workers()

    def _send_workers(self, cmd: str, args_per_worker: list) -> None:
        self._sent += 1
        for c, ctl, a in zip(self._conns, self._ctl, args_per_worker):
            c.send((cmd, a))
            ctl[0] = self._sent  # after the send: a worker that sees it finds the message in the pipe

    def _collect_workers(self) -> list:
        out = []
        for c, ctl in zip(self._conns, self._ctl):
            _spin_until(ctl, 1, self._sent)
            out.append(self._recv(c))
        return out

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
        self._call_all("reset", [(seeds[sl],) for sl in self._slices])
        b = self._buf
        return b.observations(b.obs), {"is_success": b.succ.copy(), "physics_error": b.err.copy()}

    def step(self, actions):
        """Step all envs with ``actions`` of shape ``(num_envs, n_act)``; same-step autoreset."""
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"actions must have shape {self.action_space.shape}, got {actions.shape}")
        if self.backend == "batched":  # fresh arrays straight from the block: no buffer round trip, no copies
            obs, rew, term, trunc, err, succ, final, ep_r, ep_l, done, done2 = self._blocks[0].step_arrays(actions)
            infos = {"final_obs": final, "_final_obs": done, "episode": {"r": ep_r, "l": ep_l},
                     "_episode": done2, "physics_error": err, "is_success": succ}
            return obs, rew, term, trunc, infos
        b = self._buf
        b.actions[:] = actions
        self._call_all("step", [()] * len(self._slices))
        done = b.term | b.trunc
        infos = {"final_obs": b.observations(b.final_obs), "_final_obs": done,
                 "episode": {"r": b.ep_r.copy(), "l": b.ep_l.copy()}, "_episode": done.copy(),
                 "physics_error": b.err.copy(), "is_success": b.succ.copy()}
        return b.observations(b.obs), b.rew.copy(), b.term.copy(), b.trunc.copy(), infos

    def get_attr(self, name: str) -> tuple:
        """Attribute ``name`` of every env's ``unwrapped``."""
        return tuple(v for part in self._call_all("get_attr", [(name,)] * len(self._slices)) for v in part)

    def call(self, name: str, *args, **kwargs) -> tuple:
        """Call method ``name`` of every env's ``unwrapped`` (or read the attribute); results in env order."""
        return tuple(v for part in self._call_all("call", [(name, args, kwargs)] * len(self._slices)) for v in part)

    def set_attr(self, name: str, values) -> None:
        """Set ``name`` on every env's ``unwrapped`` (one value for all, or a list of ``num_envs`` values)."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"got {len(values)} values for {self.num_envs} envs")
        self._call_all("set_attr", [(name, list(values[sl])) for sl in self._slices])

    def close_extras(self, **kwargs) -> None:
        for b in self._blocks:
            b.close()
        self._sent += 1
        for c, ctl in zip(self._conns, self._ctl):
            try:
                c.send(("close", ()))
                ctl[0] = self._sent
                c.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
        for p in self._procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


def make_vec(env_id: str, num_envs: int, *, seed: int | None = 0, randomization=None, num_workers: int = 1,
             backend: str | None = None, num_threads: int = 1, **kwargs) -> RobotVecEnv:
    """Vector env of ``num_envs`` copies of ``env_id`` (see module docstring); ``kwargs`` go to every env.

    A batched task (its env class names a ``vector_class``, e.g. the legged tasks) gets that class instead: it steps
    all envs in one call on MuJoCo's thread pool (``num_threads``; 1, the default here, means all CPUs).
    """
    from robot_rl.envs import TASKS, env_class, task_spec

    full_id = env_id if env_id.startswith("robot_rl/") else "robot_rl/" + env_id
    if full_id in TASKS:
        vector_class = getattr(env_class(full_id), "vector_class", None)
        if vector_class is not None:
            if num_workers != 1:
                raise ValueError(f"{full_id} is a batched task: it steps on MuJoCo's thread pool (num_threads), "
                                 f"not in worker processes (num_workers={num_workers}, backend={backend!r})")
            env_kw = {k: kwargs.pop(k) for k in ("max_episode_steps", "render_mode") if k in kwargs}
            return vector_class(task_spec(full_id, **kwargs), num_envs, seed=seed, randomization=randomization,
                                num_threads=None if num_threads == 1 else num_threads, **env_kw)
    return RobotVecEnv(env_id, num_envs, seed=seed, randomization=randomization, num_workers=num_workers,
                       backend=backend, num_threads=num_threads, **kwargs)
