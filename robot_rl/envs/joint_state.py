"""The public state API of a MuJoCo task env (``MujocoTaskEnv``, ``robot_rl.envs.base``): ``JointStateAPI``.

What deploy, bag import, replay and the demos call to read and set an env's state in the robot's terms: measured
joints in profile order, the full physics state ``[qpos, qvel]``, the goal, the reward of a state and the packaged
observation. Apart from the env's stepping code because it is an interface to the outside and stable; the env
supplies ``model``, ``data``, ``_qadr`` / ``_dadr``, ``_goal``, ``_evaluate`` and ``_package_obs``.
"""

from __future__ import annotations

import mujoco
import numpy as np


class JointStateAPI:
    """Read and set a ``MujocoTaskEnv``'s state in the robot's terms (see module docstring)."""

    @property
    def joint_qpos_addresses(self) -> np.ndarray:
        """Index in ``qpos`` of each measured joint, profile order, shape ``(n_joints,)`` (a copy)."""
        return self._qadr.copy()

    @property
    def joint_qvel_addresses(self) -> np.ndarray:
        """Index in ``qvel`` (dof) of each measured joint, profile order, shape ``(n_joints,)`` (a copy)."""
        return self._dadr.copy()

    def qpos_from_joints(self, q: np.ndarray) -> np.ndarray:
        """Measured joint positions (profile order) ``(n_joints,)`` or ``(T, n_joints)`` -> full ``qpos``
        ``(nq,)`` or ``(T, nq)``: the model's ``qpos0`` with the measured joints written in (rad / m).
        """
        q = np.asarray(q, dtype=np.float64)
        n = len(self._qadr)
        if q.shape[-1:] != (n,) or q.ndim > 2:
            raise ValueError(f"{self.name}.qpos_from_joints: expected ({n},) or (T, {n}) joint positions "
                             f"in profile order {list(self.profile.joint_names)}, got shape {q.shape}")
        qpos = np.broadcast_to(self.model.qpos0, q.shape[:-1] + (self.model.nq,)).copy()
        qpos[..., self._qadr] = q
        return qpos

    def set_joint_state(self, q: np.ndarray, qd: np.ndarray, goal: np.ndarray | None = None) -> None:
        """Put the sim in the state of measured joints: positions ``q`` [rad|m] and velocities ``qd`` [rad/s|m/s],
        both ``(n_joints,)`` in profile order; other coordinates at ``qpos0`` / zero velocity; ``goal`` (task goal
        vector or None) becomes the env's goal. Derived quantities are recomputed (mj_forward).
        """
        qd = np.asarray(qd, dtype=np.float64)
        if qd.shape != (len(self._dadr),):
            raise ValueError(f"{self.name}.set_joint_state: qd must have shape ({len(self._dadr)},), "
                             f"got {qd.shape}")
        qvel = np.zeros(self.model.nv)
        qvel[self._dadr] = qd
        self.set_state(np.concatenate([self.qpos_from_joints(q), qvel]))
        self._goal = None if goal is None else np.asarray(goal, dtype=np.float64).copy()

    def reward_for(self, action: np.ndarray, last_action: np.ndarray | None = None) -> float:
        """The task's reward of the current state for normalized ``action`` ``(n_act,)`` in [-1, 1] (as ``step``
        would report it had it just reached this state with that action); the state is not changed.
        ``last_action``: the action of the step before, for tasks whose reward reads it (action-rate costs);
        None = zeros, as at an episode's first step.
        """
        action = np.asarray(action, dtype=np.float64)
        if not self._tracks_last_action:
            return float(self._evaluate(action)[0])
        return float(self.terms.evaluate(action, np.zeros_like(action) if last_action is None else last_action)[0])

    def package_observation(self, flat_obs: np.ndarray):
        """Flat observation ``(n_obs,)`` -> what ``step`` returns: the array itself, or for goal-conditioned tasks
        the ``{"observation", "achieved_goal", "desired_goal"}`` dict of the current sim state and goal.
        """
        return self._package_obs(np.asarray(flat_obs, dtype=np.float32))

    # ------------------------------------------------------------------ state
    def get_state(self) -> np.ndarray:
        """Physics state ``[qpos, qvel]``, shape ``(nq + nv,)`` (a copy)."""
        return np.concatenate([self.data.qpos, self.data.qvel])

    def set_state(self, state: np.ndarray) -> None:
        """Set ``[qpos, qvel]`` and recompute derived quantities (mj_forward)."""
        state = np.asarray(state, dtype=np.float64)
        nq, nv = self.model.nq, self.model.nv
        if state.shape != (nq + nv,):
            raise ValueError(f"state must have shape ({nq + nv},) = [qpos, qvel], got {state.shape}")
        self.data.qpos[:] = state[:nq]
        self.data.qvel[:] = state[nq:]
        mujoco.mj_forward(self.model, self.data)

    @property
    def goal(self) -> np.ndarray | None:
        """The episode's goal vector (a copy), or None for tasks without one."""
        return None if self._goal is None else self._goal.copy()

    def measured_joints(self) -> tuple[np.ndarray, np.ndarray]:
        """True joint positions and velocities in profile order (no sensor noise)."""
        return self.data.qpos[self._qadr], self.data.qvel[self._dadr]
