"""rosbag2 (MCAP / sqlite3) <-> episode datasets, with ``rosbags`` (no ROS install) and a damage-tolerant reader.

Topics (ros2_control forward-command convention, see docs/contracts.md):

* ``/joint_states`` sensor_msgs/JointState, mapped to the profile joint order by name (never by index);
* ``/<controller>/commands`` std_msgs/Float64MultiArray in robot command units, ``command_joints`` order;
* ``/goal`` std_msgs/Float64MultiArray (also read: geometry_msgs/PoseStamped, PointStamped, Point); the node's goal
  in use (``/policy_node/goal`` or ``/mpc_node/goal``) when recorded, else the goal messages it would accept.

Reading: ``robot_rl.data.bag_reader`` (``read_bag`` / ``walk_mcap``: every intact MCAP chunk, CRCs checked, every
record of a damaged uncompressed chunk that still frames, damage reported with its byte and time range). Decoding
(message types, ``decode_joint_states``, goals): ``robot_rl.data.bag_decode``, its names importable from here too.
``export_bag`` writes chunk CRCs (rosbags' own MCAP writer stores 0 = "no CRC") and small chunks, so damage costs
little. Bags from other writers without CRCs are still checked structurally (framing, CDR decoding, finite values);
a bit flip inside a float payload of such a bag cannot be detected.

Import (``import_bag``) resamples to the control period: joint states are interpolated linearly, commands held
(zero-order hold, the last command stamped at or before ``t_k + command_lookahead_s``), episodes split where a
topic is silent longer than ``max_gap_s``, where data was lost to damage (the parts load as truncated episodes), or
(``split="goal"``) where a new goal arrives. Observations are built by
the env's ``ObservationBuilder``, the same object the ROS policy node uses.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapWriter

from robot_rl.data.bag_decode import F64_ARRAY, JOINT_STATE, POSE, TYPESTORE, _decode, _goals, decode_joint_states
from robot_rl.data.bag_decode import GOAL_IN_USE_TOPICS as GOAL_IN_USE_TOPICS  # importable from here too
from robot_rl.data.bag_raw import RawMessages
from robot_rl.data.bag_reader import read_bag
from robot_rl.data.checks import EpisodeReport, LoadReport, check_episode
from robot_rl.data.dataset import Episode

_NS = 1_000_000_000


# --------------------------------------------------------------------------- writing


class CrcMcapWriter(McapWriter):
    """rosbags' MCAP storage writer, but storing each chunk's CRC-32 and closing chunks at ``CHUNK_BYTES``."""

    CHUNK_BYTES = 32 * 1024

    def write(self, connection, timestamp: int, data) -> None:
        super().write(connection, timestamp, data)
        if self.chunk.bio.tell() > self.CHUNK_BYTES:
            self.close_chunk()

    def close_chunk(self) -> None:
        # Patch the CRC into the record McapWriter just wrote (chunk body offset 24; MCAP spec: 0 = not set).
        crc = zlib.crc32(self.chunk.bio.getvalue())
        start = self.bio.tell()
        super().close_chunk()
        end = self.bio.tell()
        self.bio.seek(start + 9 + 24)
        self.bio.write(struct.pack("<I", crc))
        self.bio.seek(end)


def _stamp(t_ns: int):
    Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
    return Time(sec=int(t_ns // _NS), nanosec=int(t_ns % _NS))


def _f64_array(values) -> object:
    F64 = TYPESTORE.types[F64_ARRAY]
    Layout = TYPESTORE.types["std_msgs/msg/MultiArrayLayout"]
    return F64(layout=Layout(dim=[], data_offset=0), data=np.asarray(values, dtype=np.float64))


def action_to_command(actions: np.ndarray, profile) -> np.ndarray:
    """Normalized actions [-1, 1] -> robot command units (the env's linear map onto the command range)."""
    lo, hi = np.asarray(profile.command_min), np.asarray(profile.command_max)
    return (hi + lo) / 2.0 + (hi - lo) / 2.0 * np.asarray(actions, dtype=np.float64)


def command_to_action(commands: np.ndarray, profile) -> np.ndarray:
    """Robot command units -> normalized actions, clipped to [-1, 1] (inverse of ``action_to_command``)."""
    lo, hi = np.asarray(profile.command_min), np.asarray(profile.command_max)
    return np.clip((np.asarray(commands, dtype=np.float64) - (hi + lo) / 2.0) / ((hi - lo) / 2.0), -1.0, 1.0)


def _env_map(env, observations) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """``(center (T, n_act) or (n_act,), half_range, delta)`` of a position env's action map, the observed joints
    its ``action_reference()`` names (read from the flat ``observations``) added to the center for delta targets;
    None for envs without an action map.
    """
    u = env.unwrapped
    if not hasattr(u, "action_map"):
        return None
    center, half = (np.asarray(v, dtype=np.float64) for v in u.action_map())
    reference = u.action_reference() if hasattr(u, "action_reference") else None
    if reference is None:
        return center, half, False
    idx = [list(u.obs_names).index(n) for n in reference]
    return center + np.asarray(observations, dtype=np.float64)[:, idx], half, True


def env_actions(env, commands: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """Logged commands ``(T, n_act)`` [command units] -> ``env``'s normalized actions, clipped to [-1, 1]: a
    position env's ``action_map()`` (for delta targets, offsets from the observed joints its ``action_reference()``
    names, read from the flat ``observations`` ``(T, >= n_obs)`` the commands answered), else the profile's command
    range (``command_to_action``).
    """
    commands = np.asarray(commands, dtype=np.float64)
    m = _env_map(env, observations)
    if m is None:
        return command_to_action(commands, env.unwrapped.profile)
    return np.clip((commands - m[0]) / m[1], -1.0, 1.0)


def env_commands(env, actions: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """``env``'s normalized actions ``(T, n_act)`` -> the commands the robot is sent [command units], the inverse of
    ``env_actions`` (delta targets are clipped to the command limits, as the exported policy does).
    """
    actions = np.asarray(actions, dtype=np.float64)
    profile = env.unwrapped.profile
    m = _env_map(env, observations)
    if m is None:
        return action_to_command(actions, profile)
    center, half, delta = m
    cmd = center + half * actions
    return np.clip(cmd, profile.command_min, profile.command_max) if delta else cmd


def _goal_message(goal: np.ndarray, profile, stamp_ns: int) -> bytes:
    """The goal as the profile's goal topic carries it (CDR bytes): ``pose`` profiles a PoseStamped in the base
    frame (position = the goal), others a Float64MultiArray.
    """
    if getattr(profile.topics, "goal_type", "array") != "pose":
        return TYPESTORE.serialize_cdr(_f64_array(goal), F64_ARRAY)
    T = TYPESTORE.types
    msg = T["geometry_msgs/msg/PoseStamped"](
        header=T["std_msgs/msg/Header"](stamp=_stamp(stamp_ns), frame_id=profile.base_frame),
        pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=goal[0], y=goal[1], z=goal[2]),
                                         orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
    return TYPESTORE.serialize_cdr(msg, POSE)


def export_bag(episodes: list[Episode], path: str | Path, profile, *, env=None, storage: str = "mcap",
               goal_key: str = "desired_goal", start_time_s: float = 1.0e9, episode_gap_s: float = 1.0) -> Path:
    """Write episodes as a rosbag2 bag (one after the other on the bag clock, ``episode_gap_s`` apart).

    Needs ``episode.infos["joint_positions"]`` / ``["joint_velocities"]`` ``(T+1, n_joints)`` in profile joint
    order (``robot-rl collect`` stores them). Per step k: JointState stamped ``t_k``, then the command of action k
    stamped ``t_k`` (the policy's output for that state); the goal (Dict observations) at each episode start, in
    the profile's goal message type (PoseStamped in ``base_frame`` for ``topics.goal_type: pose``). ``env``: the
    env the episodes come from, whose action map turns actions into commands (``env_commands``: joint targets of
    position robots, delta ones added to the observed joints); without it, the profile's command range.
    """
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    writer = Writer(Path(path), version=9, storage_plugin=plugin)
    writer.STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: CrcMcapWriter}
    JointState = TYPESTORE.types[JOINT_STATE]
    Header = TYPESTORE.types["std_msgs/msg/Header"]
    names = list(profile.joint_names)
    with writer:
        c_js = writer.add_connection(profile.topics.joint_states, JOINT_STATE, typestore=TYPESTORE)
        c_cmd = writer.add_connection(profile.topics.commands, F64_ARRAY, typestore=TYPESTORE)
        pose_goal = getattr(profile.topics, "goal_type", "array") == "pose"
        c_goal = writer.add_connection(profile.topics.goal, POSE if pose_goal else F64_ARRAY, typestore=TYPESTORE)
        offset_ns = int(round(start_time_s * _NS))
        for i, ep in enumerate(episodes):
            if "joint_positions" not in ep.infos or "joint_velocities" not in ep.infos:
                raise ValueError(f"episode {i}: infos lack joint_positions/joint_velocities; cannot write joint states")
            q, qd = np.asarray(ep.infos["joint_positions"]), np.asarray(ep.infos["joint_velocities"])
            t = np.asarray(ep.time_s, dtype=np.float64)
            t_ns = offset_ns + np.round((t - t[0]) * _NS).astype(np.int64)
            if env is None:
                cmd = action_to_command(ep.actions, profile)
            else:
                from robot_rl.data.relabel import flat_observations

                cmd = env_commands(env, ep.actions, flat_observations(ep.observations)[:len(ep.actions)])
            if isinstance(ep.observations, dict) and goal_key in ep.observations:
                goal = np.asarray(ep.observations[goal_key][0], dtype=np.float64)
                writer.write(c_goal, int(t_ns[0]), _goal_message(goal, profile, int(t_ns[0])))
            for k in range(len(t)):
                msg = JointState(header=Header(stamp=_stamp(t_ns[k]), frame_id=""), name=names,
                                 position=q[k].astype(np.float64), velocity=qd[k].astype(np.float64),
                                 effort=np.zeros(0, dtype=np.float64))
                writer.write(c_js, int(t_ns[k]), TYPESTORE.serialize_cdr(msg, JOINT_STATE))
                if k < len(cmd):
                    writer.write(c_cmd, int(t_ns[k]), TYPESTORE.serialize_cdr(_f64_array(cmd[k]), F64_ARRAY))
            offset_ns = int(t_ns[-1]) + int(round(episode_gap_s * _NS))
    return Path(path)


# --------------------------------------------------------------------------- import: bag -> episodes


@dataclass(frozen=True)
class ImportSettings:
    """Time alignment and episode splitting of ``import_bag`` (all times in seconds)."""

    control_period_s: float
    """Resampling period: one transition per control period, starting at each episode's first joint state."""
    command_lookahead_s: float | None = None
    """Step k uses the last command stamped at or before ``t_k + lookahead`` (zero-order hold); None = half a
    period, which takes the command computed from the state at ``t_k`` even when it was stamped a little later."""
    max_gap_s: float | None = None
    """Longest silence of joint states or commands inside one episode; longer gaps split. None = 3 periods."""
    split: str = "goal"
    """``"gap"``: split at gaps only; ``"goal"``: also start a new episode at every goal message."""
    stamp: str = "header"
    """Joint-state time source: ``"header"`` (header.stamp, the sensor time) or ``"log"`` (bag receive time)."""
    min_steps: int = 2
    """Shorter segments are not episodes (reported, not loaded)."""

    def __post_init__(self):
        if not self.control_period_s > 0:
            raise ValueError(f"control_period_s must be > 0, got {self.control_period_s}")
        if self.split not in ("gap", "goal") or self.stamp not in ("header", "log"):
            raise ValueError(f"split must be gap|goal and stamp header|log, got {self.split!r}, {self.stamp!r}")

    @property
    def lookahead(self) -> float:
        return 0.5 * self.control_period_s if self.command_lookahead_s is None else self.command_lookahead_s

    @property
    def gap(self) -> float:
        return 3.0 * self.control_period_s if self.max_gap_s is None else self.max_gap_s


class JointStateTask:
    """Observation packing and reward of the env's task from measured joint states (the env's public state API:
    ``set_joint_state``, ``package_observation``, ``reward_for``).
    """

    def __init__(self, env):
        self.u = u = env.unwrapped
        self.builder = u.observation_builder
        self.dict_obs = hasattr(u.observation_space, "spaces")

    def set_state(self, q, qd, goal) -> None:
        """Put the sim in the state of measured joints ``q``, ``qd`` (profile order) with ``goal`` (or None)."""
        self.u.set_joint_state(q, qd, goal)

    def observe(self, q, qd, goal):
        obs = self.builder.build(q, qd, goal)
        if not self.dict_obs:
            return obs
        self.set_state(q, qd, goal)
        return self.u.package_observation(obs)

    def reward(self, q_next, qd_next, action, goal, last_action=None) -> float:
        self.set_state(q_next, qd_next, goal)
        return self.u.reward_for(action, last_action)


def import_bag(path: str | Path, env, settings: ImportSettings | None = None) -> tuple[list[Episode], LoadReport]:
    """Logged run -> episodes (obs from the env's ObservationBuilder, actions normalized, rewards from the task).
    Legged velocity-tracking envs have no ObservationBuilder: ``robot_rl.data.legged_bags.import_legged_bag``.

    Data lost to damage (a damaged range of the file, a message that does not decode) splits the recording there:
    no joint state is interpolated across lost data and no command is held across it, so the intact parts on either
    side load as (truncated) episodes, and the report names each truncated episode and the damage next to it.
    """
    u = env.unwrapped
    profile = u.profile
    s = settings or ImportSettings(control_period_s=u.control_dt)
    raw = read_bag(path)
    report = LoadReport(str(path), damage=list(raw.damage), notes=list(raw.notes))
    task = JointStateTask(env)
    lg = _logged(raw, task, profile, s, report)
    if lg is None:
        return [], report
    # ---- segment at gaps, goal messages and lost data (log times: the clock of the damage ranges)
    cuts = set((np.nonzero(np.diff(lg.t_js) > s.gap)[0] + 1).tolist())
    if s.split == "goal":
        cuts |= {int(i) for i in np.searchsorted(lg.t_js, lg.t_goal - s.lookahead) if 0 < i < len(lg.t_js)}
    for lo, hi, _what in lg.lost:  # a joint state may have been lost strictly between samples i-1 and i
        cuts |= set((np.nonzero((lg.log_js[1:] > lo) & (lg.log_js[:-1] < hi))[0] + 1).tolist())
    bounds = [0, *sorted(cuts), len(lg.t_js)]
    episodes: list[Episode] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        _segment_episodes(lg, a, b, task, profile, s, path, report, episodes)
    return finish_report(episodes, report)


@dataclass
class _Logged:
    """The streams ``import_bag`` resamples: times in seconds relative to the first joint state (``t_ref``, ns of the
    bag clock), joint states sorted and without repeated times, commands and goals in log order.
    """

    t_ref: int
    t_js: np.ndarray
    """Joint-state times (``ImportSettings.stamp``: header stamps or log times)."""
    log_js: np.ndarray
    """Their log times (the clock of the damage ranges)."""
    q_js: np.ndarray
    qd_js: np.ndarray
    t_cmd: np.ndarray
    u_cmd: np.ndarray
    t_goal: np.ndarray
    goals: list
    """``(log ns, goal)`` pairs (``_goals``)."""
    lost: list
    """``(lo, hi, what)`` of the data lost to damage (``_lost_ranges``)."""


def _logged(raw: RawMessages, task: JointStateTask, profile, s: ImportSettings, report: LoadReport) -> _Logged | None:
    """Decode the joint states, commands and goals of ``raw`` and put them on one clock; None (noted in the report)
    when there are no usable joint states or commands.
    """
    names = list(profile.joint_names)
    topics = profile.topics
    undecodable: list[int] = []
    js_log_all, js_stamp, q_all, qd_all, _eff = decode_joint_states(raw, topics.joint_states, names, report,
                                                                    undecodable, sort=False)
    js_t = list(js_stamp if s.stamp == "header" else js_log_all)
    js_log, js_q, js_qd = list(js_log_all), list(q_all), list(qd_all)
    cmds = [(t, np.asarray(m.data, dtype=np.float64))
            for t, m in _decode(raw, topics.commands, (F64_ARRAY,), report, undecodable)
            if len(m.data) == len(profile.command_joints) and np.isfinite(m.data).all()]
    goals = _goals(raw, topics.goal, task.u, profile, report, undecodable)
    if not js_t or not cmds:
        report.notes.append(f"no usable {topics.joint_states} or {topics.commands} messages: no episodes")
        return None
    order = np.argsort(js_t, kind="stable")
    t_js = np.asarray(js_t, dtype=np.int64)[order]
    keep = np.r_[True, np.diff(t_js) > 0]
    # Times relative to the first joint state, in seconds: absolute bag times (~1.7e9 s) in float64 keep only
    # ~0.2 us, which would perturb the resampling grid.
    t_ref = int(t_js[0])
    log_js = (np.asarray(js_log, dtype=np.int64)[order][keep] - t_ref) / _NS
    t_js, q_js, qd_js = (t_js[keep] - t_ref) / _NS, np.asarray(js_q)[order][keep], np.asarray(js_qd)[order][keep]
    cmds.sort(key=lambda x: x[0])
    t_cmd = np.asarray([c[0] - t_ref for c in cmds], dtype=np.float64) / _NS
    u_cmd = np.asarray([c[1] for c in cmds])
    goals.sort(key=lambda x: x[0])
    t_goal = np.asarray([g[0] - t_ref for g in goals], dtype=np.float64) / _NS
    lost = _lost_ranges(report, undecodable, t_ref)
    return _Logged(t_ref, t_js, log_js, q_js, qd_js, t_cmd, u_cmd, t_goal, goals, lost)


def _segment_episodes(lg: _Logged, a: int, b: int, task: JointStateTask, profile, s: ImportSettings, path,
                      report: LoadReport, episodes: list[Episode]) -> None:
    """Resample joint states ``[a, b)`` (one segment) to the control period and load each run of steps that hold a
    fresh command as an episode (reported; appended to ``episodes`` when it passes ``check_episode``).
    """
    t_js, t_cmd, t_ref, lost = lg.t_js, lg.t_cmd, lg.t_ref, lg.lost
    ta, tb = t_js[a], t_js[b - 1]
    dt = s.control_period_s
    grid = ta + dt * np.arange(int(np.floor((tb - ta) / dt + 1e-6)) + 1)
    # zero-order hold of commands: a step is fresh when it holds a command no older than the max gap and no
    # lost data lies between that command and the step (a newer command may have been lost there)
    j = np.searchsorted(t_cmd, grid[:-1] + s.lookahead, side="right") - 1
    held = t_cmd[np.maximum(j, 0)]
    fresh = (j >= 0) & (grid[:-1] + s.lookahead - held <= s.gap)
    for lo, hi, _what in lost:
        fresh &= ~((hi >= held) & (lo <= grid[:-1] + s.lookahead))
    runs = _true_runs(fresh)
    if not any(e - f >= s.min_steps for f, e in runs):
        n = max((e - f for f, e in runs), default=0)
        tr = ((t_ref + round(ta * _NS)) / _NS, (t_ref + round(tb * _NS)) / _NS)  # absolute bag time [s]
        report.episodes.append(EpisodeReport(f"segment t=[{tr[0]:.3f}, {tr[1]:.3f}] s", n, False, [
            f"only {n} step(s) with a fresh command (min_steps {s.min_steps})"], tr))
        return
    for first, stop in runs:
        n = stop - first
        tr = ((t_ref + round(grid[first] * _NS)) / _NS, (t_ref + round(grid[stop] * _NS)) / _NS)
        name = f"segment t=[{tr[0]:.3f}, {tr[1]:.3f}] s"
        if n < s.min_steps:
            report.episodes.append(EpisodeReport(name, n, False, [f"only {n} step(s) with a fresh command "
                                                                  f"(min_steps {s.min_steps})"], tr))
            continue
        ep = _episode(task, profile, grid[first:stop + 1], a, b, t_js, lg.q_js, lg.qd_js, lg.u_cmd[j[first:stop]],
                      lg.t_goal, lg.goals, s, t_ref, path, tr)
        if isinstance(ep, str):
            report.episodes.append(EpisodeReport(name, n, False, [ep], tr))
            continue
        keep_checked(ep, name, tr, _truncation(grid[first], grid[stop], lost, s, t_ref), task.u, report, episodes)


def keep_checked(ep: Episode, name: str, tr, truncated: list[str], env, report: LoadReport,
                 episodes: list[Episode]) -> None:
    """Mark ``ep`` truncated by damage (``truncated``: why), run ``check_episode`` against ``env``'s spaces, report it
    under ``name`` (time range ``tr``) and append it to ``episodes`` when it passes.
    """
    if truncated:
        ep.metadata["truncated_by_damage"] = truncated
    issues = check_episode(ep, env.observation_space, env.action_space)
    report.episodes.append(EpisodeReport(name, len(ep), not issues, issues or truncated, tr))
    if not issues:
        episodes.append(ep)


def finish_report(episodes: list[Episode], report: LoadReport) -> tuple[list[Episode], LoadReport]:
    if any(d.time_range_s is None for d in report.damage):
        report.notes.append("damage without a known time range: episodes next to it may be incomplete")
    return episodes, report


def _lost_ranges(report: LoadReport, undecodable: list[int], t_ref: int) -> list[tuple[float, float, str]]:
    """(lo, hi, what) [s, relative to ``t_ref``, log time] of every time range whose messages were lost."""
    out = []
    for d in report.damage:
        if d.time_range_ns is not None:
            lo, hi = d.time_range_ns
        elif d.time_range_s is not None:
            lo, hi = (round(t * _NS) for t in d.time_range_s)
        else:
            continue
        t = f"t=[{lo / _NS:.6f}, {hi / _NS:.6f}] s"
        what = f"damaged range {t} (bytes [{d.byte_range[0]}, {d.byte_range[1]}) of {d.file or report.source})"
        out.append(((lo - t_ref) / _NS, (hi - t_ref) / _NS, what))
    for t_ns in undecodable:
        out.append(((t_ns - t_ref) / _NS, (t_ns - t_ref) / _NS, f"undecodable message at t={t_ns / _NS:.6f} s"))
    return out


def _true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the maximal runs of True in a 1-d bool array."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


def _truncation(t_first: float, t_last: float, lost: list, s: ImportSettings, t_ref: int) -> list[str]:
    """Why an episode spanning [t_first, t_last] (relative s) is truncated: lost data within ``max_gap_s`` of its
    start or its end (the recording went on into data that was lost).
    """
    out, tol = [], 0.5 * s.control_period_s
    for lo, hi, what in lost:
        if lo >= t_first and lo <= t_last + s.gap and hi >= t_last - tol:
            out.append(f"truncated: ends at {what}")
        elif hi <= t_last and hi >= t_first - s.gap and lo <= t_first + tol:
            out.append(f"truncated: starts after {what}")
    return out


def _episode(task, profile, grid, a, b, t_js, q_js, qd_js, cmd, t_goal, goals, s, t_ref, path, tr) -> Episode | str:
    """One episode on ``grid`` (relative s, T + 1 points) from joint states ``[a, b)`` and the held commands ``cmd``
    (T rows); a string says why there is none.
    """
    n = len(grid) - 1
    goal = None
    if task.builder.goal_dim or task.dict_obs:
        g = np.searchsorted(t_goal, t_js[a] + s.lookahead, side="right") - 1
        if g < 0:
            return "no goal message before the segment"
        goal = goals[g][1]
    q = np.stack([np.interp(grid, t_js[a:b], q_js[a:b, i]) for i in range(q_js.shape[1])], axis=1)
    qd = np.stack([np.interp(grid, t_js[a:b], qd_js[a:b, i]) for i in range(qd_js.shape[1])], axis=1)
    obs_list = [task.observe(q[k], qd[k], goal) for k in range(n + 1)]
    observations = ({k: np.stack([o[k] for o in obs_list]) for k in obs_list[0]} if task.dict_obs
                    else np.stack(obs_list))
    flat = observations["observation"] if task.dict_obs else observations
    actions = env_actions(task.u, cmd, flat[:n]).astype(np.float32)
    rewards = np.asarray([task.reward(q[k + 1], qd[k + 1], actions[k], goal, actions[k - 1] if k else None)
                          for k in range(n)])
    return Episode(observations, actions, rewards, np.zeros(n, bool), np.r_[np.zeros(n - 1, bool), True],
                   grid + t_ref / _NS, {"joint_positions": q, "joint_velocities": qd},
                   {"source": str(path), "time_range_s": list(tr)})
