"""One observation contract for sim, robot and logs: measured joints (+ goal) -> flat float32 observation.

``ObservationBuilder`` needs only numpy (and mujoco for forward-kinematics terms), so the ROS policy node and the
rosbag importer build exactly the observation the env built in training. Inputs are the *measured* joint positions
and velocities in the robot profile's joint order (``profile.joint_names``) and, for goal-conditioned tasks, the goal.

A layout is a sequence of terms ``(name, kind, ref)``:

========================  ===========================================================  ==========
kind                      value                                                        ref
========================  ===========================================================  ==========
``pos``                   joint position [rad or m]                                    joint name
``cos`` / ``sin``         cos / sin of a joint angle [-]                               joint name
``vel``                   joint velocity [rad/s or m/s]                                joint name
``goal``                  component ``i`` of the goal vector [task units]              ``i`` (int)
``site``                  world coordinate of a site by forward kinematics [m]         ``"site:x|y|z"``
``site_minus_goal``       site coordinate minus goal component (same axis index) [m]   ``"site:x|y|z"``
========================  ===========================================================  ==========

Implementation: every needed quantity goes into one float64 source vector, and a precomputed index array gathers the
observation from it (one allocation per call, no Python loop over terms).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np

from robot_rl.envs.rewards import elementwise

KINDS = ("pos", "cos", "sin", "vel", "goal", "site", "site_minus_goal")
_AXES = {"x": 0, "y": 1, "z": 2}


class ObservationBuilder:
    """Build the flat float32 observation from measured joint state (+ goal).

    Args:
        joint_names: measured joints in input order (the robot profile's ``joint_names``), length ``n_joints``.
        terms: observation layout, ``(name, kind, ref)`` per entry (see module docstring).
        goal_dim: length of the goal vector (0 for tasks without a goal).
        model: ``mujoco.MjModel`` for ``site`` terms (a private copy is kept; kinematics only, so mass
            randomization does not matter). Every joint in ``joint_names`` must be a 1-dof hinge/slide joint.
        units: optional unit string per term (for sidecars and docs).
        fk_sites: extra sites for ``site_position`` (e.g. an end effector used as achieved goal) that are not
            part of the flat observation.

    """

    def __init__(self, joint_names: Sequence[str], terms: Sequence[tuple[str, str, object]], *, goal_dim: int = 0,
                 model=None, units: Sequence[str] | None = None, fk_sites: Sequence[str] = ()):
        self.joint_names = tuple(joint_names)
        self.terms = tuple((str(n), str(k), r) for n, k, r in terms)
        self.goal_dim = int(goal_dim)
        self.names = tuple(t[0] for t in self.terms)
        self.units = tuple(units) if units is not None else tuple("" for _ in self.terms)
        if len(self.units) != len(self.terms):
            raise ValueError(f"units has {len(self.units)} entries, terms has {len(self.terms)}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate observation names in {self.names}")
        n = len(self.joint_names)
        jidx = {name: i for i, name in enumerate(self.joint_names)}
        sites: list[str] = list(dict.fromkeys(fk_sites))
        for name, kind, ref in self.terms:
            if kind not in KINDS:
                raise ValueError(f"observation term {name!r}: unknown kind {kind!r}; allowed: {KINDS}")
            if kind in ("site", "site_minus_goal"):
                site, _, axis = str(ref).partition(":")
                if axis not in _AXES:
                    raise ValueError(f"observation term {name!r}: ref {ref!r} must be 'site:x|y|z'")
                if site not in sites:
                    sites.append(site)
        self._sites = tuple(sites)
        g = self.goal_dim
        s = len(sites)
        # Source vector layout: [q, cos q, sin q, qd, goal, site xyz (3 s), site xyz - goal padded (3 s)].
        base = {"pos": 0, "cos": n, "sin": 2 * n, "vel": 3 * n}
        off_goal, off_site = 4 * n, 4 * n + g
        off_diff = off_site + 3 * s
        index = []
        for name, kind, ref in self.terms:
            if kind in base:
                if ref not in jidx:
                    raise KeyError(f"observation term {name!r}: joint {ref!r} not in {list(self.joint_names)}")
                index.append(base[kind] + jidx[ref])
            elif kind == "goal":
                if not isinstance(ref, int) or not 0 <= ref < g:
                    raise ValueError(f"observation term {name!r}: goal index {ref!r} outside goal_dim {g}")
                index.append(off_goal + ref)
            else:
                site, _, axis = str(ref).partition(":")
                a = _AXES[axis]
                if kind == "site_minus_goal" and a >= g:
                    raise ValueError(f"observation term {name!r}: axis {axis} needs goal_dim > {a}, got {g}")
                index.append((off_site if kind == "site" else off_diff) + 3 * sites.index(site) + a)
        self._index = np.asarray(index, dtype=np.intp)
        self._src = np.zeros(off_diff + 3 * s)
        self._n = n
        self._jshape = (n,)
        src = self._src
        self._v_pos, self._v_cos, self._v_sin, self._v_vel = src[0:n], src[n:2 * n], src[2 * n:3 * n], src[3 * n:4 * n]
        self._trig = any(k in ("cos", "sin") for _, k, _ in self.terms)
        trig_joints = sorted({jidx[r] for _, k, r in self.terms if k in ("cos", "sin")})
        self._trig_joints = np.asarray(trig_joints, dtype=np.intp)
        # build_batch's compact source drops the unused cos/sin columns: map the source index onto it.
        k, tpos = len(trig_joints), {j: i for i, j in enumerate(trig_joints)}
        compact = {**{j: j for j in range(n)}, **{n + j: n + tpos[j] for j in trig_joints},
                   **{2 * n + j: n + k + tpos[j] for j in trig_joints}, **{3 * n + j: n + 2 * k + j for j in range(n)},
                   **{4 * n + i: 2 * n + 2 * k + i for i in range(g)}}
        self._batch_index = np.asarray([compact.get(i, -1) for i in index], dtype=np.intp)
        self._layout_fk = any(k in ("site", "site_minus_goal") for _, k, _ in self.terms)  # else: no FK per build
        self._pad = [0.0] * (2 * n)
        self._gather = operator.itemgetter(*index) if len(index) > 1 else (lambda src, i=index[0]: (src[i],))
        self._out_shape = (len(index),)
        # The layout [positions, velocities] of every joint in joint order (the arm's): one concatenate.
        self._pos_vel = g == 0 and index == list(range(n)) + list(range(3 * n, 4 * n))
        self._fk = None
        if sites:
            self._fk = _Kinematics(model, self.joint_names, sites)

    @property
    def n_obs(self) -> int:
        return len(self._index)

    def build(self, positions: np.ndarray, velocities: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        """Observation from measured state.

        Args:
            positions: joint positions, shape ``(n_joints,)`` in ``joint_names`` order [rad or m].
            velocities: joint velocities, shape ``(n_joints,)`` [rad/s or m/s].
            goal: goal vector, shape ``(goal_dim,)``, or None when ``goal_dim`` is 0.

        Returns:
            float32 array of shape ``(n_obs,)`` (a fresh array each call).

        """
        q = positions if type(positions) is np.ndarray else np.asarray(positions, dtype=np.float64)
        if q.shape != self._jshape or np.shape(velocities) != self._jshape:
            raise ValueError(f"expected positions and velocities of shape {self._jshape} for joints "
                             f"{list(self.joint_names)}, got {q.shape} and {np.shape(velocities)}")
        if self._pos_vel:  # float64 -> float32 as _build_small's conversion: the same values
            return np.concatenate((q, velocities)).astype(np.float32)
        if not self._layout_fk:
            return self._build_small(q, velocities, goal)
        # Precomputed views into the source vector: no slicing, no temporaries on this per-step path.
        self._v_pos[:] = q
        if self._trig:
            np.cos(q, out=self._v_cos)
            np.sin(q, out=self._v_sin)
        self._v_vel[:] = velocities
        self._build_goal_and_sites(q, goal)
        return self._src[self._index].astype(np.float32)

    def _build_small(self, q: np.ndarray, velocities, goal) -> np.ndarray:
        """Same result without forward kinematics, in Python floats: for a handful of joints a few list operations
        cost less than the numpy calls (this runs every env step).
        """
        ql = q.tolist()
        src = ql + ([math.cos(x) for x in ql] + [math.sin(x) for x in ql] if self._trig else self._pad)
        src += velocities.tolist() if type(velocities) is np.ndarray else [float(v) for v in velocities]
        if self.goal_dim:
            if goal is None or np.shape(goal) != (self.goal_dim,):
                raise ValueError(f"expected a goal of shape ({self.goal_dim},), got "
                                 f"{None if goal is None else np.shape(goal)}")
            src += np.asarray(goal, dtype=np.float64).tolist()
        return np.array(self._gather(src), dtype=np.float32).reshape(self._out_shape)

    def build_lists(self, positions: list, velocities: list, goal=None) -> np.ndarray:
        """``build`` from Python lists of floats (the env's per-step path; no shape checks): bit-identical result.

        Args:
            positions: joint positions [rad or m], ``n_joints`` floats in ``joint_names`` order.
            velocities: joint velocities [rad/s or m/s], ``n_joints`` floats.
            goal: goal vector ``(goal_dim,)`` or None.

        Returns:
            float32 array of shape ``(n_obs,)``. Layouts with forward-kinematics terms raise ValueError.

        """
        if self._layout_fk:
            raise ValueError(f"build_lists: the layout {self.names} has forward-kinematics terms; use build")
        src = positions + ([*map(math.cos, positions), *map(math.sin, positions)] if self._trig else self._pad)
        src += velocities
        if self.goal_dim:
            if goal is None or np.shape(goal) != (self.goal_dim,):
                raise ValueError(f"expected a goal of shape ({self.goal_dim},), got "
                                 f"{None if goal is None else np.shape(goal)}")
            src += np.asarray(goal, dtype=np.float64).tolist()
        return np.array(self._gather(src), dtype=np.float32)

    @property
    def batchable(self) -> bool:
        """Whether ``build_batch`` applies (no forward-kinematics terms in the layout)."""
        return not self._layout_fk

    def build_batch(self, positions: np.ndarray, velocities: np.ndarray, goals: np.ndarray | None = None) -> np.ndarray:
        """``build`` for N states at once, row ``i`` bit-identical to ``build(positions[i], velocities[i], goals[i])``.

        Args:
            positions: joint positions, shape ``(N, n_joints)`` [rad or m], float64.
            velocities: joint velocities, shape ``(N, n_joints)`` [rad/s or m/s], float64.
            goals: goals, shape ``(N, goal_dim)``, or None when ``goal_dim`` is 0.

        Returns:
            float32 array of shape ``(N, n_obs)``.

        Layouts with forward-kinematics terms (``site``/``site_minus_goal``) are not supported (ValueError).

        """
        if self._layout_fk:
            raise ValueError(f"build_batch: the layout {self.names} has forward-kinematics terms; use build per row")
        n = self._n
        q = positions if type(positions) is np.ndarray else np.asarray(positions, dtype=np.float64)
        qd = velocities if type(velocities) is np.ndarray else np.asarray(velocities, dtype=np.float64)
        if q.ndim != 2 or q.shape[1:] != self._jshape or qd.shape != q.shape:
            raise ValueError(f"build_batch: expected positions and velocities of shape (N, {n}) for joints "
                             f"{list(self.joint_names)}, got {q.shape} and {qd.shape}")
        if self.goal_dim and (goals is None or np.shape(goals) != (len(q), self.goal_dim)):
            raise ValueError(f"build_batch: expected goals of shape ({len(q)}, {self.goal_dim}), got "
                             f"{None if goals is None else np.shape(goals)}")
        return self._build_batch(q, qd, goals)

    def _build_batch(self, q: np.ndarray, qd: np.ndarray, goals: np.ndarray | None) -> np.ndarray:
        """``build_batch`` without the checks (float64 ``(N, n_joints)`` arrays, the batched env's per-step path)."""
        # Compact source [q, cos q[:, tj], sin q[:, tj], qd, goal] (tj: the joints with trig terms).
        parts = [q]
        if self._trig:  # cos and sin with math, as build does (bit-identical), in one pass
            k = len(self._trig_joints)
            vals = q[:, self._trig_joints].ravel().tolist()
            cs = np.array(elementwise(math.cos, vals) + elementwise(math.sin, vals)).reshape(2, len(q), k)
            parts += [cs[0], cs[1]]
        parts.append(qd)
        if self.goal_dim:
            parts.append(np.asarray(goals, dtype=np.float64))
        return np.concatenate(parts, axis=1, dtype=np.float32, casting="same_kind")[:, self._batch_index]

    def _build_goal_and_sites(self, q: np.ndarray, goal) -> None:
        n, src, g = self._n, self._src, self.goal_dim
        if g:
            if goal is None or np.shape(goal) != (g,):
                raise ValueError(f"expected a goal of shape ({g},), got {None if goal is None else np.shape(goal)}")
            src[4 * n:4 * n + g] = goal
        if self._layout_fk:
            xyz = self._fk.sites(q)  # (s, 3)
            off = 4 * n + g
            s3 = xyz.size
            src[off:off + s3] = xyz.ravel()
            diff = xyz.copy()
            if g:
                k = min(g, 3)
                diff[:, :k] -= np.asarray(goal, dtype=np.float64)[:k]
            src[off + s3:off + 2 * s3] = diff.ravel()

    def site_position(self, positions: np.ndarray, site: str) -> np.ndarray:
        """World position [m] of ``site`` for joint positions ``positions`` (forward kinematics), shape (3,)."""
        if self._fk is None or site not in self._sites:
            raise KeyError(f"site {site!r} is not part of this observation layout (sites: {list(self._sites)})")
        return self._fk.site(np.asarray(positions, dtype=np.float64), self._sites.index(site))

    def describe(self) -> list[dict]:
        """Layout as data: ``[{"name", "kind", "ref", "unit"}]`` (for policy sidecars and docs)."""
        return [{"name": n, "kind": k, "ref": r, "unit": u} for (n, k, r), u in zip(self.terms, self.units)]


_ONE_DOF = (2, 3)  # mjJNT_SLIDE, mjJNT_HINGE


class _Kinematics:
    """Forward kinematics on a private copy of the model (positions only, mj_kinematics)."""

    def __init__(self, model, joint_names, sites):
        import mujoco

        if model is None:
            raise ValueError("site observation terms need the MuJoCo model")
        self._mj = mujoco
        self.model = model.__copy__() if hasattr(model, "__copy__") else model
        self.data = mujoco.MjData(self.model)
        adr = []
        for name in joint_names:
            jid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise KeyError(f"joint {name!r} not in the MuJoCo model")
            if int(self.model.jnt_type[jid]) not in _ONE_DOF:
                raise ValueError(f"joint {name!r} is not a hinge or slide joint")
            adr.append(self.model.jnt_qposadr[jid])
        self._qadr = np.asarray(adr, dtype=np.intp)
        ids = []
        for s in sites:
            sid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, s)
            if sid < 0:
                raise KeyError(f"site {s!r} not in the MuJoCo model")
            ids.append(sid)
        self._sid = np.asarray(ids, dtype=np.intp)
        self._qpos, self._site_xpos = self.data.qpos, self.data.site_xpos  # cached views
        self._sid_list = ids

    def site(self, q: np.ndarray, k: int) -> np.ndarray:
        """Position of site ``k`` (a new array)."""
        self._qpos[self._qadr] = q
        self._mj.mj_kinematics(self.model, self.data)
        return self._site_xpos[self._sid_list[k]].copy()

    def sites(self, q: np.ndarray) -> np.ndarray:
        self._qpos[self._qadr] = q
        self._mj.mj_kinematics(self.model, self.data)
        return self._site_xpos[self._sid]
