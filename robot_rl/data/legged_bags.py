"""Legged-robot bags -> episodes: rebuild the walking policy's observation from what the robot logged.

A legged velocity-tracking policy (``robot_rl.envs.locomotion``) sees the IMU's angular velocity and orientation,
joint positions and velocities, its previous action, the velocity command and a gait clock
(``robot_rl.core.legged_obs``). ``import_legged_bag`` rebuilds that observation, with the same function, for every
command the policy node published, from the topics the recorder records:

* ``/<controller>/commands``: one step per command (its log time is the step's time); the action is the joint
  target normalized with the task's action map, ``(target - center) / half_range`` clipped to [-1, 1];
* ``/<node>/timing`` (``[seq, sensor_stamp_s, ...]``): the header stamp of the joint state the step used, so the step
  gets exactly that ``/joint_states`` sample (without timing: the last joint state logged before the command);
* ``/imu``: the sample whose header stamp the timing message names (its 7th value; bags from nodes that did not
  log it, or a stamp not in the bag: the last sample logged before that joint state, which is the wrong one when
  the node received the two in another order than the recorder);
* ``/<node>/velocity_command`` (``[vx, vy, yaw_rate, stale, gait_phase]``): the command and clock phase the policy saw
  (without it: ``/cmd_vel`` held as the node holds it, clipped to the task's range, zero after
  ``cmd_vel_timeout_s``, and the clock counted from the first command at the control period);
* the previous action: the previous command, normalized (so each segment's first command, whose previous action is
  unknown, only serves as the next step's previous action).

Episodes split where commands stop for longer than ``max_gap_s`` or data was lost to damage (as ``import_bag``); an
episode ends (terminated) where the IMU tilt passes the task's ``fall_tilt``, and the rest of that segment (the
e-stop holding the robot down) is not loaded. Rewards: the task's reward terms that read only measured inputs (IMU,
joints, efforts when logged, command, actions); terms that need the base velocity or the feet (not measured on a
robot) are left out and named in each episode's metadata (``reward_terms`` / ``reward_terms_unmeasured``); the sum
is not floored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.core.legged_obs import gravity_in_frame, locomotion_observation, moving
from robot_rl.data.bag_decode import F64_ARRAY, _decode, decode_joint_states
from robot_rl.data.bag_reader import read_bag
from robot_rl.data.bags import ImportSettings, _lost_ranges, _true_runs, _truncation, finish_report, keep_checked
from robot_rl.data.checks import EpisodeReport, LoadReport
from robot_rl.data.dataset import Episode

IMU = "sensor_msgs/msg/Imu"
TWIST = "geometry_msgs/msg/Twist"
_NS = 1_000_000_000
_STAMP_MATCH_NS = 100_000  # a timing message's float sensor stamp matches a message header within 0.1 ms
_TIMING_CHANGED, _TIMING_IMU_STAMP = 5, 6  # in a policy node's timing message: filter changed it, IMU header stamp
MEASURED_INPUTS = ("ang_vel", "gravity", "command", "moving", "joint_pos", "joint_vel", "joint_lower", "joint_upper",
                   "action", "last_action", "torque", "fell")
"""Locomotion reward inputs a robot measures (the rest, e.g. base velocity and foot forces, it does not)."""


def is_legged(env) -> bool:
    """True for a legged velocity-tracking env (``robot_rl.envs.locomotion_env.LocomotionEnv``)."""
    u = env.unwrapped
    return hasattr(u, "action_map") and hasattr(u, "set_command") and hasattr(u, "task")


def _imu(raw, topic, report, undecodable):
    """(log ns, header stamp ns, quaternion wxyz, angular velocity) of the finite IMU samples, in log order."""
    t, stamp, quat, gyro, bad = [], [], [], [], 0
    for t_ns, m in _decode(raw, topic, (IMU,), report, undecodable):
        o, w = m.orientation, m.angular_velocity
        q = np.array([o.w, o.x, o.y, o.z])
        g = np.array([w.x, w.y, w.z])
        if not (np.isfinite(q).all() and np.isfinite(g).all()) or np.linalg.norm(q) < 0.5:
            bad += 1
            continue
        t.append(t_ns)
        stamp.append(m.header.stamp.sec * _NS + m.header.stamp.nanosec)
        quat.append(q)
        gyro.append(g)
    if bad:
        report.notes.append(f"{topic}: {bad} sample(s) non-finite or without an orientation dropped")
    order = np.argsort(t, kind="stable")
    return (np.asarray(t, dtype=np.int64)[order], np.asarray(stamp, dtype=np.int64)[order],
            np.asarray(quat).reshape(-1, 4)[order], np.asarray(gyro).reshape(-1, 3)[order])


def _arrays(raw, topic, min_len, report, undecodable):
    """(log ns, rows) of a Float64MultiArray topic's messages with at least ``min_len`` entries."""
    items = [(t, np.asarray(m.data, dtype=np.float64)) for t, m in _decode(raw, topic, (F64_ARRAY,), report,
                                                                           undecodable) if len(m.data) >= min_len]
    items.sort(key=lambda x: x[0])
    return np.asarray([t for t, _ in items], dtype=np.int64), [d for _, d in items]


def _paired(t_cmd: np.ndarray, t_other: np.ndarray, window_ns: int) -> np.ndarray:
    """Index into ``t_other`` of the first message logged in ``[t_cmd, t_cmd + window)`` per command, or -1."""
    i = np.searchsorted(t_other, t_cmd, side="left")
    ok = i < len(t_other)
    ok[ok] &= t_other[i[ok]] < t_cmd[ok] + window_ns
    return np.where(ok, i, -1)


def import_legged_bag(path: str | Path, env, settings: ImportSettings | None = None, *, node: str = "policy_node",
                      cmd_vel_timeout_s: float = 0.5) -> tuple[list[Episode], LoadReport]:
    """Logged legged run -> episodes (module docstring); ``node``: the policy node's name (its topics)."""
    u = env.unwrapped
    profile, spec = u.profile, u.task
    s = settings or ImportSettings(control_period_s=profile.control_period_s, split="gap")
    dt_ns = int(round(s.control_period_s * _NS))
    raw = read_bag(path)
    report = LoadReport(str(path), damage=list(raw.damage), notes=list(raw.notes))
    undecodable: list[int] = []
    topics = profile.topics
    names = list(profile.joint_names)
    cidx = np.array([names.index(c) for c in profile.command_joints], dtype=np.intp)
    js_log, js_stamp, js_q, js_qd, js_eff = decode_joint_states(raw, topics.joint_states, names, report, undecodable)
    imu_log, imu_stamp, imu_quat, imu_gyro = _imu(raw, topics.imu, report, undecodable)
    t_cmd, cmds = _commands(raw, topics.commands, len(cidx), report, undecodable)
    t_tim, timing = _arrays(raw, f"/{node}/timing", 2, report, undecodable)
    t_vel, vel = _arrays(raw, f"/{node}/velocity_command", 4, report, undecodable)
    if len(js_log) == 0 or len(imu_log) == 0 or len(t_cmd) == 0:
        report.notes.append(f"no usable {topics.joint_states}, {topics.imu} or {topics.commands} messages: no "
                            "episodes")
        return [], report
    u_cmd = np.asarray(cmds).reshape(-1, len(cidx))
    t_cmd, u_cmd, ijs, imu_named, changed = _step_joint_states(t_cmd, u_cmd, t_tim, timing, js_log, js_stamp, dt_ns,
                                                               node, report)
    if len(t_cmd) == 0:
        report.notes.append("no commands to import")
        return [], report
    iimu = np.searchsorted(imu_log, js_log[np.maximum(ijs, 0)], side="right") - 1
    named = np.isfinite(imu_named)
    if named.any():
        iimu[named], found = _by_stamp(imu_stamp, np.round(imu_named[named] * _NS).astype(np.int64), iimu[named])
        if not found.all():
            report.notes.append(f"{int((~found).sum())} step(s): the IMU sample named by /{node}/timing is not in "
                                "the bag; the last one logged before the joint state is used")
    valid = (ijs >= 0) & (iimu >= 0)
    command, phase, paired = _velocity_and_phase(raw, t_cmd, t_vel, vel, spec, s, dt_ns, node, topics.cmd_vel,
                                                 cmd_vel_timeout_s, report, undecodable)
    if paired is not None:
        valid &= paired
    center, half = (np.asarray(x, dtype=np.float64) for x in u.action_map())
    actions = np.clip((u_cmd - center) / half, -1.0, 1.0)
    last = np.vstack([np.zeros((1, actions.shape[1])), actions[:-1]])
    ijs_c, iimu_c = np.maximum(ijs, 0), np.maximum(iimu, 0)
    q_all, qd_all = js_q[ijs_c], js_qd[ijs_c]
    grav = gravity_in_frame(imu_quat[iimu_c])
    standing = np.asarray(profile.standing_pose, dtype=np.float64)
    obs = locomotion_observation(imu_gyro[iimu_c], grav, q_all[:, cidx] - standing, qd_all[:, cidx], last, command,
                                 phase)
    t_ref = int(t_cmd[0])
    st = _Steps(t_cmd=t_cmd, tc=(t_cmd - t_ref) / _NS, t_ref=t_ref, cidx=cidx, standing=standing, obs=obs,
                u_cmd=u_cmd, actions=actions, last=last, command=command, q=q_all, qd=qd_all,
                eff=None if js_eff is None else js_eff[ijs_c], quat=imu_quat[iimu_c], gyro=imu_gyro[iimu_c],
                grav=grav, fell=-grav[:, 2] < np.cos(spec.fall_tilt), changed=changed | np.r_[False, changed[:-1]])
    lost = _lost_ranges(report, undecodable, t_ref)
    episodes = _segment_episodes(st, _segments(st.tc, valid, lost, s), lost, s, u, path, report)
    return finish_report(episodes, report)


@dataclass
class _Steps:
    """One row per imported command of a legged log: the step's time, the policy's observation and action, and the
    measurements the step used (joint state and IMU sample; joints in profile order).
    """

    t_cmd: np.ndarray
    """The command's log time [ns]."""
    tc: np.ndarray
    """The same relative to ``t_ref`` [s]."""
    t_ref: int
    cidx: np.ndarray
    """Joint index of each command joint."""
    standing: np.ndarray
    """The standing pose (command joints): joint positions in the observation are offsets from it."""
    obs: np.ndarray
    u_cmd: np.ndarray
    """The joint targets commanded."""
    actions: np.ndarray
    """``u_cmd`` normalized with the task's action map, clipped to [-1, 1]."""
    last: np.ndarray
    """The previous row's action (zeros in the first row)."""
    command: np.ndarray
    """The velocity command the policy saw."""
    q: np.ndarray
    qd: np.ndarray
    eff: np.ndarray | None
    """Joint efforts, None when not every joint state logged them."""
    quat: np.ndarray
    gyro: np.ndarray
    grav: np.ndarray
    """Gravity direction in the IMU frame."""
    fell: np.ndarray
    """The IMU tilt is beyond the task's ``fall_tilt``."""
    changed: np.ndarray
    """The safety filter clamped or rate-limited this row's command or the previous one (the node's timing): the
    logged action, or the last action in the observation, is then not the policy's own (the node feeds the policy's
    unfiltered action back)."""


def _commands(raw, topic, n_cmd, report, undecodable):
    """(log ns, rows) of the commands with one finite value per command joint, in log order; the others are dropped
    and count as undecodable (lost: the next step's last action is unknown).
    """
    t_cmd, cmds = _arrays(raw, topic, n_cmd, report, undecodable)
    usable = np.asarray([len(c) == n_cmd and bool(np.isfinite(c).all()) for c in cmds], dtype=bool)
    if (~usable).any():
        report.notes.append(f"{topic}: {int((~usable).sum())} command(s) of the wrong length or not finite "
                            "dropped (episodes split there)")
        undecodable += t_cmd[~usable].tolist()  # lost like an undecodable message: the next step's last action
    return t_cmd[usable], [c for c, ok in zip(cmds, usable) if ok]


def _by_stamp(header_ns: np.ndarray, stamps: np.ndarray, fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index, found)``: per stamp the message whose header stamp is within ``_STAMP_MATCH_NS`` of it (the nearest),
    else ``fallback``'s index (``found`` False).
    """
    order = np.argsort(header_ns, kind="stable")
    if len(order) < 2:
        return fallback.copy(), np.zeros(len(stamps), dtype=bool)
    j = np.clip(np.searchsorted(header_ns[order], stamps), 1, len(order) - 1)
    near = order[np.where(np.abs(header_ns[order][j - 1] - stamps) <= np.abs(header_ns[order][j] - stamps), j - 1, j)]
    found = np.abs(header_ns[near] - stamps) <= _STAMP_MATCH_NS
    return np.where(found, near, fallback), found


def _step_joint_states(t_cmd, u_cmd, t_tim, timing, js_log, js_stamp, dt_ns, node, report):
    """One step per command: ``(t_cmd, u_cmd, joint-state index, IMU header stamp [s], filter changed)`` per step.
    The node's timing message of the same step names the joint state it used (commands without one are skipped),
    whether the safety filter changed the command and, from a legged node, the IMU sample (NaN where not named);
    without timing messages, the last joint state logged before the command.
    """
    if not len(t_tim):
        report.notes.append(f"no /{node}/timing: each step uses the last joint state logged before its command")
        return (t_cmd, u_cmd, np.searchsorted(js_log, t_cmd, side="right") - 1, np.full(len(t_cmd), np.nan),
                np.zeros(len(t_cmd), dtype=bool))
    it = _paired(t_cmd, t_tim, dt_ns // 2)
    keep = it >= 0
    if (~keep).any():
        report.notes.append(f"{int((~keep).sum())} command(s) without a /{node}/timing message (e.g. the final "
                            "safe command at shutdown) skipped")
    t_cmd, u_cmd, it = t_cmd[keep], u_cmd[keep], it[keep]
    stamps = np.round(np.asarray([timing[i][1] for i in it]) * _NS).astype(np.int64)
    ijs, matched = _by_stamp(js_stamp, stamps, np.searchsorted(js_log, t_cmd, side="right") - 1)
    if (~matched).any():
        report.notes.append(f"{int((~matched).sum())} step(s): the joint state named by /{node}/timing is not in "
                            "the bag; the last one logged before the command is used")
    imu_named = np.asarray([timing[i][_TIMING_IMU_STAMP] if len(timing[i]) > _TIMING_IMU_STAMP else np.nan
                            for i in it], dtype=np.float64)
    changed = np.asarray([len(timing[i]) > _TIMING_CHANGED and timing[i][_TIMING_CHANGED] > 0 for i in it], dtype=bool)
    return t_cmd, u_cmd, ijs, imu_named, changed


def _velocity_and_phase(raw, t_cmd, t_vel, vel, spec, s, dt_ns, node, cmd_vel_topic, cmd_vel_timeout_s, report,
                        undecodable):
    """``(command (T, 3), gait phase (T,), paired)``: the velocity command and clock phase the policy saw, from the
    node's velocity_command messages (``paired``: the steps that have one), else ``/cmd_vel`` held as the node holds
    it and the clock counted from the first command (``paired`` None).
    """
    phase_step = spec.gait_hz * s.control_period_s
    steps_since_first = np.round((t_cmd - t_cmd[0]) / dt_ns)
    phase = (steps_since_first * phase_step) % 1.0
    command = np.zeros((len(t_cmd), 3))
    if len(t_vel):
        iv = _paired(t_cmd, t_vel, dt_ns // 2)
        for k in np.flatnonzero(iv >= 0):
            row = vel[iv[k]]
            command[k] = row[:3]
            if len(row) >= 5:
                phase[k] = row[4]
        if any(len(r) < 5 for r in vel):
            report.notes.append(f"/{node}/velocity_command without the gait phase (older node): the clock is "
                                "counted from the first command")
        return command, phase, iv >= 0
    twists = sorted((t, np.array([m.linear.x, m.linear.y, m.angular.z]))
                    for t, m in _decode(raw, cmd_vel_topic, (TWIST,), report, undecodable))
    report.notes.append(f"no /{node}/velocity_command: the command is {cmd_vel_topic} held "
                        f"{cmd_vel_timeout_s} s and the clock counted from the first command")
    if twists:
        tt = np.asarray([t for t, _ in twists], dtype=np.int64)
        iw = np.searchsorted(tt, t_cmd, side="right") - 1
        lo = np.array([spec.command_min_vx, -spec.command_max[1], -spec.command_max[2]])
        fresh = (iw >= 0) & (t_cmd - tt[np.maximum(iw, 0)] <= cmd_vel_timeout_s * _NS)
        vals = np.asarray([v for _, v in twists])[np.maximum(iw, 0)]
        command = np.where(fresh[:, None], np.clip(vals, lo, np.asarray(spec.command_max)), 0.0)
    return command, phase, None


def _segments(tc, valid, lost, s) -> list[tuple[int, int]]:
    """``[(first, stop), ...]``: runs of valid steps without a gap longer than ``max_gap_s`` or lost data inside."""
    cut = np.r_[False, np.diff(tc) > s.gap]
    for lo_t, hi_t, _what in lost:
        cut[1:] |= (tc[1:] > lo_t) & (tc[:-1] < hi_t)
    segments = []
    for f, e in _true_runs(valid):
        inner = [f, *(np.flatnonzero(cut[f + 1:e]) + f + 1).tolist(), e]
        segments += list(zip(inner[:-1], inner[1:]))
    return segments


def _segment_episodes(st: _Steps, segments, lost, s, u, path, report: LoadReport) -> list[Episode]:
    """The episodes of the segments that pass ``check_episode``, each ended where the robot fell; every segment is
    reported (kept or why not).
    """
    profile, spec = u.profile, u.task
    episodes: list[Episode] = []
    lower = np.array([profile.joint(c).position_min for c in profile.command_joints]) - st.standing
    upper = np.array([profile.joint(c).position_max for c in profile.command_joints]) - st.standing
    terms = [t for t in spec.reward if set(t.arguments) <= set(MEASURED_INPUTS)]
    if st.eff is None:
        terms = [t for t in terms if "torque" not in t.arguments]
    unmeasured = [t.name for t in spec.reward if t not in terms]
    t_ref, tc, fell = st.t_ref, st.tc, st.fell
    for a0, b in segments:
        a = a0 + 1  # the segment's first command only serves as the next step's last action (the one before it
        if b - a < 2:  # is unknown: before the recording, or lost)
            continue
        falls = np.flatnonzero(fell[a + 1:b])
        tr = ((t_ref + round(tc[a] * _NS)) / _NS, (t_ref + round(tc[b - 1] * _NS)) / _NS)
        name = f"segment t=[{tr[0]:.3f}, {tr[1]:.3f}] s"
        if fell[a]:
            report.episodes.append(EpisodeReport(name, b - a - 1, False, ["starts fallen (tilt beyond fall_tilt)"],
                                                 tr))
            continue
        terminated = bool(len(falls))
        if terminated:
            stop = a + 1 + int(falls[0]) + 1
            report.notes.append(f"{name}: the robot fell at t={(t_ref + round(tc[stop - 1] * _NS)) / _NS:.3f} s "
                                f"(IMU tilt beyond {spec.fall_tilt} rad); the rest of the segment is not loaded")
            b = stop
        n = b - a - 1
        if n < s.min_steps:
            report.episodes.append(EpisodeReport(name, n, False, [f"only {n} step(s) (min_steps {s.min_steps})"],
                                                 tr))
            continue
        ep = _episode(st, a, b, terminated, terms, lower, upper,
                      {"source": str(path), "time_range_s": list(tr), "reward_terms": [t.name for t in terms],
                       "reward_terms_unmeasured": unmeasured})
        keep_checked(ep, name, tr, _truncation(tc[a], tc[b - 1], lost, s, t_ref), u, report, episodes)
    return episodes


def _episode(st: _Steps, a: int, b: int, terminated: bool, terms, lower, upper, metadata: dict) -> Episode:
    """The episode of rows ``[a, b)`` (``b - a - 1`` steps; row ``a``'s action is the first step's last action) with
    the reward terms ``terms`` computed from the measured inputs.
    """
    n = b - a - 1
    cidx, standing = st.cidx, st.standing
    k = np.arange(a, b)
    inputs = {"ang_vel": st.gyro[k[1:]], "gravity": st.grav[k[1:]], "command": st.command[k[:-1]],
              "moving": moving(st.command[k[:-1]]).astype(np.float64), "joint_pos": st.q[k[1:]][:, cidx] - standing,
              "joint_vel": st.qd[k[1:]][:, cidx], "joint_lower": lower, "joint_upper": upper,
              "action": st.actions[k[:-1]], "last_action": st.last[k[:-1]], "fell": st.fell[k[1:]].astype(np.float64)}
    if st.eff is not None:
        inputs["torque"] = st.eff[k[1:]][:, cidx]
    rewards = np.zeros(n)
    for t in terms:
        rewards += t.weight * np.asarray(t.fn(**{x: inputs[x] for x in t.arguments}), dtype=np.float64)
    return Episode(st.obs[k], st.actions[k[:-1]].astype(np.float32), rewards,
                   np.r_[np.zeros(n - 1, bool), terminated], np.r_[np.zeros(n - 1, bool), not terminated],
                   st.t_cmd[k] / _NS,
                   {"joint_positions": st.q[k], "joint_velocities": st.qd[k], "imu_orientation": st.quat[k],
                    "imu_angular_velocity": st.gyro[k], "velocity_command": st.command[k],
                    "joint_targets": st.u_cmd[k], "filter_changed": st.changed[k]}, metadata)
