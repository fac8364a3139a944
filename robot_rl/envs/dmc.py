"""dm_control suite adapter: ``robot_rl/dmc-<domain>-<task>-v0`` with the robot_rl env API.

Observations: the suite's observation dict flattened in its key order to one float32 vector, named
``"<key>"`` (scalars) or ``"<key>[i]"``. Actions in [-1, 1] are scaled to the suite's action bounds. Episodes use the
suite's own time limit (``truncated``) and termination (``discount == 0`` -> ``terminated``). The suite task's random
state is re-seeded from the env's ``np_random`` at every reset, so ``seed`` reproduces episodes.

``profile`` and ``observation_builder`` are None (suite tasks have no hardware profile; their observations are not
all joint positions/velocities). Randomization: every model term, action noise/latency, pushes and initial-state
spread act on ``physics.model``/``physics.data``; observation noise is added to the flat observation
(``position_std`` white, ``position_bias_std`` per episode). A dm_control ``PhysicsError`` (divergence) ends the
episode with ``terminated=True`` and ``info["physics_error"]=True``.
"""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np

from robot_rl.envs.randomization import RandomizationControls, Randomizer


class DmControlEnv(RandomizationControls, gym.Env):
    """One dm_control suite task (see module docstring).

    Args:
        domain: suite domain, e.g. ``"cheetah"``.
        task: suite task, e.g. ``"run"``.
        randomization: None, profile name, path or ``RandomizationConfig``.
        seed: seeds ``np_random``.
        environment_kwargs: passed to ``suite.load`` (e.g. ``{"time_limit": 5}``).
        max_episode_steps: truncate after this many control steps (the suite's own time limit still applies).

    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, domain: str, task: str, *, randomization=None, seed: int | None = None,
                 environment_kwargs: dict | None = None, render_mode: str | None = None,
                 max_episode_steps: int | None = None):
        from dm_control import suite

        if (domain, task) not in suite.ALL_TASKS:
            raise KeyError(f"dm_control suite has no task {domain}-{task}; see dm_control.suite.ALL_TASKS")
        self._env = suite.load(domain, task, task_kwargs={"random": 0}, environment_kwargs=environment_kwargs or {})
        self.max_episode_steps = max_episode_steps
        self.physics = self._env.physics
        self.model, self.data = self.physics.model.ptr, self.physics.data.ptr
        self.profile = None
        self.observation_builder = None
        self.frame_skip = int(self._env._n_sub_steps)
        self.control_dt = float(self._env.control_timestep())
        self.render_mode = render_mode
        spec = self._env.action_spec()
        lo, hi = np.asarray(spec.minimum, dtype=np.float64), np.asarray(spec.maximum, dtype=np.float64)
        self._act_mid, self._act_half = (hi + lo) / 2.0, (hi - lo) / 2.0
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=spec.shape, dtype=np.float32)
        names = []
        for key, s in self._env.observation_spec().items():
            size = int(np.prod(s.shape))
            names += [key] if s.shape == () else [f"{key}[{i}]" for i in range(size)]
        self.obs_names = tuple(names)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(len(names),), dtype=np.float32)
        self.randomizer = Randomizer.from_spec(randomization, self.model, self.data, None)
        self.randomization_enabled = self.randomizer is not None
        self._rand_info: dict = {}
        self._t = 0
        if seed is not None:
            self.reset(seed=seed)

    def _flat(self, obs_dict) -> np.ndarray:
        obs = np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in obs_dict.values()])
        if self.randomization_enabled:
            obs = self.randomizer.sense_flat(obs, self.np_random)
        return obs

    def get_state(self) -> np.ndarray:
        """Physics state ``[qpos, qvel]`` (copy)."""
        return np.concatenate([self.data.qpos, self.data.qvel])

    def set_state(self, state: np.ndarray) -> None:
        nq, nv = self.model.nq, self.model.nv
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (nq + nv,):
            raise ValueError(f"state must have shape ({nq + nv},) = [qpos, qvel], got {state.shape}")
        with self.physics.reset_context():
            self.data.qpos[:] = state[:nq]
            self.data.qvel[:] = state[nq:]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        self._env.task._random = np.random.RandomState(int(rng.integers(2**31 - 1)))
        if self.randomizer is not None:
            self.randomizer.restore_nominal()
        self._rand_info = self.randomizer.on_reset(rng) if self.randomization_enabled else {}
        ts = self._env.reset()
        if self.randomization_enabled and self.randomizer.config.initial_state is not None:
            self.randomizer.perturb_initial_state(rng)
            mujoco.mj_forward(self.model, self.data)
            ts = ts._replace(observation=self._env.task.get_observation(self.physics))
        self._t = 0
        return self._flat(ts.observation), {"randomization": dict(self._rand_info), "physics_error": False}

    def step(self, action):
        from dm_control.rl.control import PhysicsError

        a = np.asarray(action, dtype=np.float64)
        if a.size != self._act_mid.size:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {np.shape(action)}")
        a = a.reshape(self._act_mid.shape)
        bad = not math.isfinite(a.sum())
        a = np.clip(np.zeros_like(a) if bad else a, -1.0, 1.0)
        if self.randomization_enabled:
            a = self.randomizer.process_action(a, self._t, self.np_random)
            self._rand_info = self.randomizer.before_step(self._t, self.np_random, self._rand_info)
        self._t += 1
        info = {"randomization": dict(self._rand_info), "physics_error": bad}
        try:
            ts = self._env.step(self._act_mid + self._act_half * a)
        except PhysicsError as exc:
            info["physics_error"], info["error"] = True, str(exc)
            return np.zeros(self.observation_space.shape, np.float32), 0.0, True, False, info
        obs = self._flat(ts.observation)
        if bad or not np.isfinite(obs).all():
            info["physics_error"] = True
            return np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0), 0.0, True, False, info
        terminated = ts.last() and ts.discount == 0.0
        truncated = (ts.last() and not terminated) or (
            self.max_episode_steps is not None and self._t >= self.max_episode_steps and not terminated)
        return obs, float(ts.reward or 0.0), terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.physics.render(height=240, width=320, camera_id=0)
