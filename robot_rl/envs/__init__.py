"""robot_rl.envs: MuJoCo tasks with the Gymnasium API, dm_control adapter, domain randomization, vector env.

``make(env_id, *, randomization=None, seed=None, **kw)`` builds a task; importing this package registers every id
with Gymnasium (namespace ``robot_rl``), so ``gymnasium.make("robot_rl/CartpoleSwingup-v0")`` works too (with
Gymnasium's own wrappers). ``make`` returns the env itself: the time limit is inside the env (``truncated`` at
``max_episode_steps``), so no copying wrappers sit on the hot path. See docs/tasks.md.
"""

from __future__ import annotations

import importlib

import gymnasium as gym

# The task registry: id -> (task declaration factory "module:function", its fixed options, env class or None for
# the plain MujocoTaskEnv). Modules are imported lazily so `import robot_rl.envs` stays cheap. Adding a task is one
# entry here (docs/tasks.md); every test that covers "all tasks" is parametrized over this table.
TASKS: dict[str, tuple[str, dict, str | None]] = {
    "robot_rl/CartpoleSwingup-v0": ("robot_rl.envs.cartpole:task", {"swingup": True}, None),
    "robot_rl/CartpoleSwingupRail-v0": ("robot_rl.envs.cartpole:task", {"swingup": True, "rail_limit": 1.7}, None),
    "robot_rl/CartpoleBalance-v0": ("robot_rl.envs.cartpole:task", {"swingup": False}, None),
    "robot_rl/PendulumSwingup-v0": ("robot_rl.envs.pendulum:task", {}, None),
    "robot_rl/Reacher2-v0": ("robot_rl.envs.reacher:task", {}, None),
    "robot_rl/ArmReach-v0": ("robot_rl.envs.arm:task", {}, "robot_rl.envs.arm:ArmReachEnv"),
    "robot_rl/PandaReach-v0": ("robot_rl.envs.panda:task", {}, "robot_rl.envs.panda:PandaReachEnv"),
    "robot_rl/Go2Joystick-v0": ("robot_rl.envs.go2:task", {}, "robot_rl.envs.locomotion_env:LocomotionEnv"),
    "robot_rl/Go1Joystick-v0": ("robot_rl.envs.go2:task", {"robot": "go1"},
                                "robot_rl.envs.locomotion_env:LocomotionEnv"),
}
# Keyword arguments of ``make`` that go to the env rather than to the task declaration.
ENV_KWARGS = ("max_episode_steps", "render_mode", "compiled_step")
DMC_PREFIX = "robot_rl/dmc-"
# dm_control ids registered with Gymnasium up front (``make`` accepts any suite task without registration).
DMC_REGISTERED = ("acrobot-swingup", "ball_in_cup-catch", "cartpole-balance", "cartpole-swingup", "cheetah-run",
                  "finger-spin", "finger-turn_easy", "hopper-hop", "hopper-stand", "humanoid-walk", "pendulum-swingup",
                  "point_mass-easy", "quadruped-walk", "reacher-easy", "reacher-hard", "walker-run", "walker-stand",
                  "walker-walk")


def _load(entry):
    if callable(entry):
        return entry
    mod, _, cls = entry.partition(":")
    return getattr(importlib.import_module(mod), cls)


def parse_dmc_id(env_id: str) -> tuple[str, str]:
    """``robot_rl/dmc-<domain>-<task>-v0`` -> (domain, task). Task names may contain '-' (dm uses '_')."""
    body = env_id[len(DMC_PREFIX):]
    if not env_id.startswith(DMC_PREFIX) or not body.endswith("-v0") or body.count("-") < 2:
        raise ValueError(f"dm_control id {env_id!r} must look like 'robot_rl/dmc-<domain>-<task>-v0'")
    domain, _, task = body[: -len("-v0")].partition("-")
    return domain, task.replace("-", "_")


def make(env_id: str, *, randomization=None, seed: int | None = None, **kwargs) -> gym.Env:
    """Build task ``env_id`` (see ``TASKS`` and ``robot_rl/dmc-<domain>-<task>-v0``).

    Args:
        env_id: registered id, e.g. ``"robot_rl/CartpoleSwingup-v0"`` (the ``robot_rl/`` prefix may be omitted).
        randomization: None (off), a profile name in ``sim/randomization/``, a YAML path or a
            ``RandomizationConfig``.
        seed: seeds the env (reset once with this seed), so the first ``reset()`` without a seed is reproducible.
        **kwargs: task options (e.g. ``max_episode_steps``, ``render_mode``).

    """
    if not env_id.startswith("robot_rl/"):
        env_id = "robot_rl/" + env_id
    if env_id.startswith(DMC_PREFIX):
        from robot_rl.envs.dmc import DmControlEnv

        domain, task = parse_dmc_id(env_id)
        env = DmControlEnv(domain, task, randomization=randomization, seed=seed, **kwargs)
    else:
        if env_id not in TASKS:
            raise KeyError(f"unknown env id {env_id!r}; known: {sorted(TASKS)} and {DMC_PREFIX}<domain>-<task>-v0")
        env = _make_task_env(env_id, randomization, seed, kwargs)
    env.spec = gym.envs.registration.EnvSpec(env_id, entry_point=_entry_point, kwargs={"env_id": env_id},
                                             max_episode_steps=None)
    return env


def register(env_id: str, factory, *, options: dict | None = None, env_class=None) -> None:
    """Register a task: ``factory(**options) -> TaskSpec`` (a callable or ``"module:function"``) under ``env_id``
    (``robot_rl/<Name>-v0``), with fixed ``options`` and an optional ``MujocoTaskEnv`` subclass (or
    ``"module:Class"``); ``make`` and ``gymnasium.make`` then build it. See docs/tasks.md.
    """
    if not env_id.startswith("robot_rl/") or not env_id.endswith("-v0") or env_id.startswith(DMC_PREFIX):
        raise ValueError(f"task id {env_id!r} must look like 'robot_rl/<Name>-v0' (and not start with 'dmc-')")
    if env_id in TASKS:
        raise ValueError(f"task id {env_id!r} is already registered")
    TASKS[env_id] = (factory, dict(options or {}), env_class)
    _register()


def task_spec(env_id: str, **options):
    """The declaration (:class:`robot_rl.envs.task.TaskSpec`) of registered task ``env_id`` with task ``options``."""
    if not env_id.startswith("robot_rl/"):
        env_id = "robot_rl/" + env_id
    if env_id not in TASKS:
        raise KeyError(f"unknown env id {env_id!r}; known: {sorted(TASKS)}")
    factory, fixed, _ = TASKS[env_id]
    try:
        return _load(factory)(**fixed, **options)
    except TypeError as exc:
        raise TypeError(f"{env_id}: {exc}") from None


def _make_task_env(env_id: str, randomization, seed, kwargs: dict):
    env_kw = {k: kwargs.pop(k) for k in ENV_KWARGS if k in kwargs}
    spec = task_spec(env_id, **kwargs)
    cls_entry = TASKS[env_id][2]
    if cls_entry is None:
        from robot_rl.envs.base import MujocoTaskEnv as cls
    else:
        cls = _load(cls_entry)
    return cls(spec, randomization=randomization, seed=seed, **env_kw)


def env_class(env_id: str):
    """The env class of registered task ``env_id`` (``MujocoTaskEnv``, a subclass, or a batched task's single-env
    class, which names its vector env as ``vector_class``).
    """
    if not env_id.startswith("robot_rl/"):
        env_id = "robot_rl/" + env_id
    entry = TASKS[env_id][2] if env_id in TASKS else None
    if entry is None:
        from robot_rl.envs.base import MujocoTaskEnv

        return MujocoTaskEnv
    return _load(entry)


def is_batched(env_id: str) -> bool:
    """True for a batched task (a legged :class:`robot_rl.envs.locomotion.LocomotionSpec` task: its env steps all
    copies together), False for a :class:`robot_rl.envs.task.TaskSpec` task run by ``MujocoTaskEnv``.
    """
    return getattr(env_class(env_id), "vector_class", None) is not None


def _entry_point(env_id: str, **kwargs) -> gym.Env:
    return make(env_id, **kwargs)


def observation_builder(env_id: str):
    """The ``ObservationBuilder`` of a task (for the ROS policy node and log import), built from the task itself."""
    env = make(env_id)
    try:
        return env.unwrapped.observation_builder
    finally:
        env.close()


def _register() -> None:
    for env_id in (*TASKS, *(f"{DMC_PREFIX}{t}-v0" for t in DMC_REGISTERED)):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=_entry_point, kwargs={"env_id": env_id}, disable_env_checker=True)


_register()

__all__ = ["make", "observation_builder", "register", "task_spec", "TASKS", "parse_dmc_id", "env_class", "is_batched"]
