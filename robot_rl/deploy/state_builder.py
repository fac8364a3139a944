"""Planner state from measured joints: ``x = [qpos, qvel]`` in the MuJoCo model's order (no ROS).

Same interface as ``ObservationBuilder`` (``joint_names``, ``names``, ``goal_dim``, ``build``) so the policy node's
control loop can drive a planner: the measured joints (profile order) are scattered to their ``qpos`` / ``qvel``
addresses. Every degree of freedom of the model must be measured (``nq == nv ==`` number of profile joints).
With ``goal_dim`` (a planner whose cost takes goals, e.g. an end-effector target), ``build`` appends the goal in
use: ``[qpos, qvel, goal]``, which the MPC node splits again (the policy loop hands the goal to its controller
this way, as it does to a goal-conditioned policy).
"""

from __future__ import annotations

import numpy as np


class StateBuilder:
    """``build(q, v) -> x [nq + nv]`` (float64) for a MuJoCo model whose every dof is a measured 1-dof joint."""

    def __init__(self, model, joint_names, goal_dim: int = 0):
        import mujoco

        self.joint_names = tuple(joint_names)
        if goal_dim < 0:
            raise ValueError(f"goal_dim must be >= 0, got {goal_dim}")
        self.goal_dim = int(goal_dim)
        if model.nq != model.nv or model.nq != len(self.joint_names):
            raise ValueError(f"planner state needs every dof measured: model has nq={model.nq}, nv={model.nv}, "
                             f"profile joints {list(self.joint_names)}")
        qadr, dadr = [], []
        for name in self.joint_names:
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise KeyError(f"profile joint {name!r} is not in the model")
            qadr.append(int(model.jnt_qposadr[jid]))
            dadr.append(int(model.jnt_dofadr[jid]))
        self._qadr = np.asarray(qadr, dtype=np.intp)
        self._dadr = np.asarray(dadr, dtype=np.intp) + model.nq
        self.nx = model.nq + model.nv
        order = [""] * self.nx
        for name, a, d in zip(self.joint_names, self._qadr, self._dadr):
            order[a], order[d] = f"{name}_position", f"{name}_velocity"
        self.names = tuple(order) + tuple(f"goal[{i}]" for i in range(self.goal_dim))

    def build(self, positions, velocities, goal=None) -> np.ndarray:
        """State ``[qpos, qvel]`` (float64, shape ``(nx,)``) from profile-ordered positions and velocities; with
        ``goal_dim``, ``[qpos, qvel, goal]`` (shape ``(nx + goal_dim,)``).
        """
        x = np.empty(self.nx + self.goal_dim)
        x[self._qadr] = positions
        x[self._dadr] = velocities
        if self.goal_dim:
            x[self.nx:] = goal
        return x
