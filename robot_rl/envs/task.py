"""A task as a declaration: what it observes, what it rewards, when it ends and where it starts, kept as data.

A task is its MJCF, its robot profile and one ``TaskSpec`` (in the spirit of dm_control's task files and Isaac Lab's
manager-based terms). Reward, termination and success terms are named pure functions whose parameter names are the
names of declared *inputs*: joint positions and velocities by joint name, normalized actions, task parameters,
site positions and the goal. Each term is written once, with numpy ufuncs only (``np.cos``, ``np.exp``,
``np.minimum``, ...: no ``math``, no ``if`` on values), so the same function runs

- on Python or numpy scalars (the single env; compiled with numba into one small evaluator when numba is installed,
  and into the compiled single-env and batch steps of :mod:`robot_rl.envs.fast_step`),
- on ``(N,)`` arrays, one element per env (the batched vector env's numpy pass),
- on ``(..., 3)`` arrays for site and goal inputs (``compute_reward`` of goal-conditioned tasks, relabeling).

The evaluator is generated from the declaration (:meth:`RewardKernel.evaluator`); nothing is written twice. See
docs/tasks.md for a walk-through of adding a task.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

INPUT_KINDS = ("qpos", "qvel", "action", "last_action", "param", "site", "goal")
SCALAR_KINDS = ("qpos", "qvel", "action", "param")


@dataclass(frozen=True)
class Input:
    """A named value that terms read: ``qpos``/``qvel`` of a joint (by name), ``action`` ``i`` (normalized, after
    action noise and latency, not clipped), ``last_action`` ``i`` (the same, one step earlier), a task ``param`` (a
    float), the world position of a ``site`` [m] (forward kinematics of the true joint positions) or the ``goal``
    vector.
    """

    kind: str
    arg: Any = None

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"input kind {self.kind!r} is not one of {INPUT_KINDS}")


def qpos(joint: str) -> Input:
    """Position of 1-dof joint ``joint`` [rad or m]."""
    return Input("qpos", joint)


def qvel(joint: str) -> Input:
    """Velocity of 1-dof joint ``joint`` [rad/s or m/s]."""
    return Input("qvel", joint)


def action(index: int) -> Input:
    """Normalized action component ``index`` (in [-1, 1] for a well-behaved policy; not clipped)."""
    return Input("action", int(index))


def last_action(index: int) -> Input:
    """The previous step's normalized action component ``index`` (as ``action``; 0 at an episode's first step): for
    action-rate costs. A task that reads it steps in Python (no compiled step).
    """
    return Input("last_action", int(index))


def param(value: float) -> Input:
    """A task constant (a margin, a threshold, an actuator range)."""
    return Input("param", float(value))


def site(name: str) -> Input:
    """World position of MJCF site ``name`` [m], shape ``(3,)``."""
    return Input("site", name)


def goal() -> Input:
    """The episode's goal vector (task units)."""
    return Input("goal")


@dataclass(frozen=True)
class Term:
    """One named term: ``fn(**inputs)`` -> reward contribution, termination flag or success flag.

    ``fn``'s parameter names are input names of the task; it must be elementwise (scalars in, scalar out; arrays
    in, arrays out) and built from numpy ufuncs so numba can compile it too. ``weight`` scales a ``sum`` reward.
    """

    name: str
    fn: Callable[..., Any]
    weight: float = 1.0

    arguments: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """``fn``'s parameter names (the inputs it reads)."""

    def __post_init__(self):
        object.__setattr__(self, "arguments", tuple(inspect.signature(self.fn).parameters))


@dataclass(frozen=True)
class TaskSpec:
    """Declaration of a MuJoCo task (see module docstring and docs/tasks.md).

    ``initial_state(env, rng)`` sets ``env.data.qpos`` / ``qvel`` after ``mj_resetData`` and returns the goal
    (float64 array) or None; it reads joint addresses as ``env.joint_qpos_addresses`` etc.
    """

    name: str
    """Task name (the env id without ``robot_rl/`` and ``-v0``), used in messages."""
    robot: str
    """Robot profile (``hardware/<robot>.yaml``), which names the MJCF."""
    frame_skip: int
    """Physics steps per control step (``frame_skip * timestep`` must equal the profile's control period)."""
    max_episode_steps: int
    """Control steps until ``truncated``."""
    observation: tuple[tuple[str, str, Any, str], ...]
    """Observation terms ``(name, kind, ref, unit)`` (:class:`robot_rl.envs.obs.ObservationBuilder` kinds)."""
    inputs: Mapping[str, Input]
    """Named inputs of the terms."""
    reward: tuple[Term, ...]
    """Reward terms."""
    initial_state: Callable[[Any, np.random.Generator], np.ndarray | None]
    """Initial state distribution (see class docstring)."""
    combine: Literal["sum", "product"] = "sum"
    """``sum``: reward = sum of weight * term; ``product``: reward = product of the terms (weights must be 1)."""
    terminations: tuple[Term, ...] = ()
    """Termination terms: the episode ends when any is true."""
    success: Term | None = None
    """Success term (``info["is_success"]``, also reported at reset), or None."""
    goal_dim: int = 0
    """Length of the goal vector (0: no goal)."""
    goal_box: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    """Goal-conditioned tasks: ``(low, high)`` corners of the goal workspace, the box the goals are drawn from, in
    the robot's base frame (goal units, m for positions); a deployed policy refuses goals outside it. None: not
    declared."""
    achieved_goal: str | None = None
    """Goal-conditioned tasks: the ``site`` input that is the achieved goal (``compute_reward(achieved, desired)``
    evaluates the reward terms with it and the goal)."""
    fk_sites: tuple[str, ...] = ()
    """Sites the observation builder computes besides its own terms (site inputs are added automatically)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The task options the spec was made with (for attribute access, e.g. ``env.swingup``)."""

    def __post_init__(self):
        names = set(self.inputs)
        for term in (*self.reward, *self.terminations, *((self.success,) if self.success else ())):
            missing = [a for a in term.arguments if a not in names]
            if missing:
                raise ValueError(f"task {self.name!r}: term {term.name!r} reads {missing}, which are not declared "
                                 f"inputs ({sorted(names)})")
        if self.combine not in ("sum", "product"):
            raise ValueError(f"task {self.name!r}: combine must be 'sum' or 'product', got {self.combine!r}")
        if self.combine == "product" and any(t.weight != 1.0 for t in self.reward):
            raise ValueError(f"task {self.name!r}: a product reward takes no weights")
        if not self.reward:
            raise ValueError(f"task {self.name!r}: at least one reward term is required")
        if self.goal_box is not None and (len(self.goal_box) != 2 or any(len(c) != self.goal_dim
                                                                         for c in self.goal_box)):
            raise ValueError(f"task {self.name!r}: goal_box needs (low, high) corners of goal_dim "
                             f"({self.goal_dim}) values each")
        if self.achieved_goal is not None and self.inputs.get(self.achieved_goal, Input("goal")).kind != "site":
            raise ValueError(f"task {self.name!r}: achieved_goal {self.achieved_goal!r} must name a site input")

    @property
    def reads_last_action(self) -> bool:
        """A term reads the previous action (``last_action`` inputs): the env keeps it between steps."""
        return any(i.kind == "last_action" for i in self.inputs.values())

    @property
    def scalar(self) -> bool:
        """Every input is a scalar per env (joint state, action, parameter): the task's terms can be compiled and
        evaluated over a batch from ``qpos`` / ``qvel`` rows alone.
        """
        return all(i.kind in SCALAR_KINDS for i in self.inputs.values())

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(i.arg for i in self.inputs.values() if i.kind == "site")

    def describe(self) -> dict:
        """Terms and inputs as plain data (for docs and run metadata)."""
        def term(t):
            return {"name": t.name, "weight": t.weight, "inputs": list(t.arguments)}

        return {"reward": [term(t) for t in self.reward], "combine": self.combine,
                "terminations": [term(t) for t in self.terminations],
                "success": term(self.success) if self.success else None,
                "inputs": {k: [v.kind, v.arg] for k, v in self.inputs.items()}}


# ---------------------------------------------------------------------------------------------------- evaluation
_HELPERS: list = []
_registered: set = set()


def helper(fn: Callable) -> Callable:
    """Mark ``fn`` (an elementwise building block such as ``rewards.gaussian``) as callable from term functions in
    compiled code too: numba compiles a call to it inline. ``fn`` itself is returned unchanged.
    """
    _HELPERS.append(fn)
    return fn


def _register_helpers() -> None:
    from numba.extending import register_jitable

    for fn in _HELPERS:
        if fn not in _registered:
            register_jitable(fn)
            _registered.add(fn)


def scalar_parameters(spec: TaskSpec, qpos_address: Mapping[str, int], qvel_address: Mapping[str, int]) -> np.ndarray:
    """The float64 parameter vector ``p`` of the generated evaluator (:meth:`RewardKernel.evaluator`): per input
    in declaration order, the qpos / qvel address, the action index or the parameter value.
    """
    out = []
    for name, inp in spec.inputs.items():
        table = {"qpos": qpos_address, "qvel": qvel_address}.get(inp.kind)
        if table is not None:
            if inp.arg not in table:
                raise KeyError(f"task {spec.name!r}: input {name!r} reads joint {inp.arg!r}, which the robot profile "
                               f"does not measure ({sorted(table)})")
            out.append(float(table[inp.arg]))
        else:
            out.append(float(inp.arg))
    return np.asarray(out, dtype=np.float64)


def _source(spec: TaskSpec) -> str:
    lines = ["def evaluate(qpos, qvel, action, p):"]
    for k, (name, inp) in enumerate(spec.inputs.items()):
        src = {"qpos": f"qpos[int(p[{k}])]", "qvel": f"qvel[int(p[{k}])]", "action": f"action[int(p[{k}])]",
               "param": f"p[{k}]"}[inp.kind]
        lines.append(f"    {name} = {src}")

    def call(prefix, i, t):
        return f"{prefix}{i}({', '.join(t.arguments)})"

    parts = []
    for i, t in enumerate(spec.reward):
        c = call("r", i, t)
        parts.append(c if t.weight == 1.0 else f"{t.weight!r} * {c}")
    lines.append("    reward = " + (" * " if spec.combine == "product" else " + ").join(parts))
    lines.append("    terminated = False")
    for i, t in enumerate(spec.terminations):
        lines.append(f"    if {call('t', i, t)}:")
        lines.append("        terminated = True")
    succ = "-1" if spec.success is None else f"1 if {call('s', 0, spec.success)} else 0"
    lines.append(f"    success = {succ}")
    lines.append("    return reward, terminated, success")
    return "\n".join(lines) + "\n"


_cache: dict = {}
_lock = threading.Lock()


def _build(spec: TaskSpec, wrap) -> Callable:
    ns: dict = {"np": np}
    for i, t in enumerate(spec.reward):
        ns[f"r{i}"] = wrap(t.fn)
    for i, t in enumerate(spec.terminations):
        ns[f"t{i}"] = wrap(t.fn)
    if spec.success is not None:
        ns["s0"] = wrap(spec.success.fn)
    exec(compile(_source(spec), f"<task {spec.name} evaluator>", "exec"), ns)  # noqa: S102 - our own generated code
    return wrap(ns["evaluate"])


def _key(spec: TaskSpec):
    fns = tuple(t.fn for t in (*spec.reward, *spec.terminations, *((spec.success,) if spec.success else ())))
    return _source(spec), fns


class RewardKernel:
    """The compiled-step hook of a scalar task: ``factory(njit) -> evaluate(qpos, qvel, action, p) -> (reward,
    terminated, success -1 none / 0 / 1)``, generated from the declaration. One object per distinct declaration
    (it keys the compiled kernels of :mod:`robot_rl.envs.fast_step`).
    """

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self._evaluator = None

    def __call__(self, njit):
        with _lock:
            _register_helpers()
        return _build(self.spec, njit)

    def evaluator(self) -> Callable:
        """``evaluate(qpos, qvel, action, p) -> (reward, terminated, success -1 / 0 / 1)`` on one env's float64
        ``qpos`` / ``qvel`` / ``action`` arrays, ``p`` from :func:`scalar_parameters`: compiled with numba when it is
        installed (the very code the compiled steps inline, so all single-env paths agree bit for bit), else plain
        Python over numpy scalars. Built once per declaration.
        """
        if self._evaluator is None:
            try:
                import numba
            except ImportError:
                self._evaluator = _python_evaluator(self.spec)
            else:
                self._evaluator = self(numba.njit(nogil=True, cache=False))
        return self._evaluator


def reward_kernel(spec: TaskSpec) -> RewardKernel:
    """The (cached) :class:`RewardKernel` of a scalar task."""
    key = _key(spec)
    with _lock:
        k = _cache.get(key)
        if k is None:
            k = _cache[key] = RewardKernel(spec)
    return k


def _python_evaluator(spec: TaskSpec) -> Callable:
    evaluate = _build(spec, lambda f: f)

    def run(qpos, qvel, act, p):
        r, term, succ = evaluate(qpos, qvel, act, p)
        return float(r), bool(term), int(succ)

    return run


def reward_value(spec: TaskSpec, values: Mapping[str, Any], terms=None):
    """The combined reward of the terms (``terms``, default all of ``spec.reward``) on ``values`` (input name ->
    scalar or array): the raw numpy result, shaped like the inputs (``compute_reward`` of goal-conditioned tasks
    evaluates it over ``(..., 3)`` goals).
    """
    reward = None
    for t in spec.reward if terms is None else terms:
        v = t.fn(**{a: values[a] for a in t.arguments})
        if spec.combine == "sum" and t.weight != 1.0:
            v = t.weight * v
        reward = v if reward is None else (reward * v if spec.combine == "product" else reward + v)
    return reward


def evaluate_terms(spec: TaskSpec, values: Mapping[str, Any], n: int | None = None):
    """Evaluate the reward, termination and success terms on ``values`` (input name -> scalar or array, all with the
    same leading shape). Returns ``(reward, terminated, success or None)``; with ``n`` (a batch size) the results
    are ``(n,)`` arrays (float64, bool, bool), else Python scalars.
    """
    reward = reward_value(spec, values)
    term = None
    for t in spec.terminations:
        v = np.asarray(t.fn(**{a: values[a] for a in t.arguments}), dtype=bool)
        term = v if term is None else term | v
    succ = None
    if spec.success is not None:
        succ = np.asarray(spec.success.fn(**{a: values[a] for a in spec.success.arguments}), dtype=bool)
    if n is None:
        return float(reward), bool(term) if term is not None else False, None if succ is None else bool(succ)
    reward = np.broadcast_to(np.asarray(reward, dtype=np.float64), (n,)).copy()
    term = np.zeros(n, dtype=bool) if term is None else np.broadcast_to(term, (n,)).copy()
    succ = None if succ is None else np.broadcast_to(succ, (n,)).copy()
    return reward, term, succ


class BoundTask:
    """A declaration bound to one env: its inputs resolved to the env's joint addresses, and the evaluation of its
    terms on the env's true state (single step), on ``(N,)`` rows (batch) and on goals (``compute_reward``).

    ``env`` provides ``profile.joint_names``, ``_qadr`` / ``_dadr`` (qpos / dof addresses in profile order),
    ``_qpos`` / ``_qvel`` (cached ``MjData`` views), ``observation_builder`` (forward kinematics of site inputs)
    and ``_goal``.
    """

    def __init__(self, spec: TaskSpec, env):
        self.spec, self._env = spec, env
        names = env.profile.joint_names
        qadr, dadr = dict(zip(names, env._qadr.tolist())), dict(zip(names, env._dadr.tolist()))
        for name, inp in spec.inputs.items():
            table = {"qpos": qadr, "qvel": dadr}.get(inp.kind)
            if table is not None and inp.arg not in table:
                raise KeyError(f"task {spec.name!r}: input {name!r} reads joint {inp.arg!r}, which the robot profile "
                               f"does not measure ({list(names)})")
        self.params = scalar_parameters(spec, qadr, dadr) if spec.scalar else np.zeros(0)
        """Float64 parameters of the compiled terms (:func:`scalar_parameters`; empty for a non-scalar task)."""
        self.kernel_factory = reward_kernel(spec) if spec.scalar else None
        """The compiled steps' reward hook (:class:`RewardKernel`), None for a non-scalar task."""
        self._eval = self.kernel_factory.evaluator() if spec.scalar else None
        self._inputs = [(name, inp.kind, qadr.get(inp.arg) if inp.kind == "qpos" else dadr.get(inp.arg)
                         if inp.kind == "qvel" else inp.arg) for name, inp in spec.inputs.items()]
        if self._eval is not None:
            # Compile now (numba: ~1 s on the first env of a process), not on the first reward: a real-time caller
            # (the sim_robot node's physics loop, reward_for) must not stall mid-run. The evaluator is pure.
            self.evaluate(np.zeros(env.model.nu))

    def input_values(self, action: np.ndarray, last_action: np.ndarray | None = None) -> dict:
        """Input name -> value on the env's current true state and the normalized ``action`` (``last_action``: the
        previous step's, default the env's own).
        """
        env = self._env
        last = env._last_action if last_action is None else np.asarray(last_action, dtype=np.float64)
        q = None
        out = {}
        for name, kind, ref in self._inputs:
            if kind == "qpos":
                out[name] = env._qpos.item(ref)
            elif kind == "qvel":
                out[name] = env._qvel.item(ref)
            elif kind == "action":
                out[name] = float(action[ref])
            elif kind == "last_action":
                out[name] = last.item(ref)
            elif kind == "param":
                out[name] = ref
            elif kind == "site":
                q = env._qpos[env._qadr] if q is None else q
                out[name] = env.observation_builder.site_position(q, ref)
            else:
                out[name] = env._goal
        return out

    def evaluate(self, action: np.ndarray, last_action: np.ndarray | None = None) -> tuple[float, bool, bool | None]:
        """(reward, terminated, is_success or None) of the env's current state for the normalized ``action``
        (``last_action``: the previous step's, for ``last_action`` inputs; default the env's own).
        """
        if self._eval is None:
            return evaluate_terms(self.spec, self.input_values(action, last_action))
        a = action
        if a.dtype != np.float64 or not (a.flags.c_contiguous and a.flags.writeable):
            a = np.array(a, dtype=np.float64)  # (the evaluator is compiled for this array type)
        env = self._env
        reward, terminated, success = self._eval(env._qpos, env._qvel, a, self.params)
        return reward, terminated, None if success < 0 else success == 1

    def evaluate_batch(self, qpos: np.ndarray, qvel: np.ndarray, action: np.ndarray):
        """``evaluate`` for N envs of a scalar task from ``qpos (N, nq)``, ``qvel (N, nv)`` and ``action (N, n_act)``
        (float64, after noise / latency): the term functions on ``(N,)`` arrays. Rewards equal the single env's to
        rounding (numpy's SIMD transcendental functions may differ from the C library in the last bit). Returns
        ``(reward (N,), terminated (N,), is_success (N,) or None)``.
        """
        values = {name: (qpos[:, ref] if kind == "qpos" else qvel[:, ref] if kind == "qvel"
                         else action[:, ref] if kind == "action" else ref) for name, kind, ref in self._inputs}
        return evaluate_terms(self.spec, values, n=len(qpos))

    def goal_terms(self) -> tuple[Term, ...]:
        """The reward terms that are functions of the goals alone: every input they read is the achieved goal (a
        site), the goal or a parameter. The other terms (actions, joint velocities) do not change when a goal is
        relabeled; the step reward is the sum of both groups.
        """
        kinds = {name: kind for name, kind, _ in self._inputs}
        return tuple(t for t in self.spec.reward if all(kinds[a] in ("site", "goal", "param") for a in t.arguments))

    def compute_reward(self, achieved_goal, desired_goal) -> np.ndarray:
        """Goal-conditioned tasks: the goal reward terms (``goal_terms``) on (batches of) achieved goals (the
        ``achieved_goal`` site input) and desired goals (the goal input), shape ``(...)`` from ``(..., goal_dim)``
        arrays. Without other terms this is the step reward (Gymnasium-Robotics' contract); with them (an action
        cost) the step reward is this plus those.
        """
        if self.spec.achieved_goal is None:
            raise TypeError(f"{self.spec.name} is not goal-conditioned (its spec has no achieved_goal)")
        terms = self.goal_terms()
        if len(terms) != len(self.spec.reward) and self.spec.combine != "sum":
            raise TypeError(f"{self.spec.name}: compute_reward of a '{self.spec.combine}' reward needs every term to "
                            f"be a goal term; {[t.name for t in self.spec.reward if t not in terms]} are not")
        values = {}
        for name, kind, ref in self._inputs:
            if kind == "param":
                values[name] = ref
            elif kind == "site":
                values[name] = np.asarray(achieved_goal, dtype=np.float64)
            elif kind == "goal":
                values[name] = np.asarray(desired_goal, dtype=np.float64)
        return np.asarray(reward_value(self.spec, values, terms), dtype=np.float64)
