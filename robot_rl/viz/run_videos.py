"""Videos of runs for the CLI: ``robot-rl replay --video`` (logged vs re-simulated) and ``robot-rl evaluate --video``.

Replay: the left half is the logged run (joint positions of the imported episode, ``infos["joint_positions"]``);
the right half is an OPEN-LOOP re-simulation: MuJoCo (nominal model, no randomization) is put in the first logged
state of the episode and then driven only by the logged commands, step after step, never corrected by the log. Its
drift from the logged run over time is the sim-to-real gap made visible (the one-step predictions of ``--resim``'s
report stay close by construction). One frame per logged control step, played at ``1 / control period``.

Legged robots (``legged_replay_video``): a floating base cannot be restored from a log, so the left half is the
logged run (IMU orientation, measured joints, the base position where the log has it, e.g. sim_robot's true base
state, else fixed) and the right half the nominal simulation walking the same velocity commands with the policy
(``robot_rl.data.legged_gap.simulate_like``).

Evaluate: evaluation episodes with the run's policy, captioned with episode, step and running return, played at
``1 / control_dt``.

Both raise ``robot_rl.viz.video.RenderUnavailable`` (one-line install hint) when no headless GL backend exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from robot_rl.viz.video import episode_frames, side_by_side_frames, write_video


def default_camera(model) -> int:
    """The model's first camera (every robot_rl task defines one), else the free camera (-1)."""
    return 0 if model.ncam else -1


def open_loop_resim(env, episode) -> np.ndarray:
    """Joint positions ``(T+1, n_joints)`` of the sim started in the episode's first logged state and driven by its
    logged normalized actions ``(T, n_act)``, open loop. Goal-conditioned tasks keep the episode's first goal.

    After a physics error the remaining steps repeat the last valid state (the divergence then shows as a freeze).
    """
    u = env.unwrapped
    q_log, qd_log = episode.infos["joint_positions"], episode.infos["joint_velocities"]
    obs = episode.observations
    goal = np.asarray(obs["desired_goal"][0], dtype=np.float64) if isinstance(obs, dict) else None
    u.randomization_enabled = False  # nominal model: the video shows the sim as it is
    env.reset(seed=0)  # step bookkeeping; the state is overwritten next
    u.set_joint_state(q_log[0], qd_log[0], goal)
    q = np.empty((len(episode.actions) + 1, q_log.shape[1]))
    q[0] = q_log[0]
    failed = False
    for k, a in enumerate(np.asarray(episode.actions, dtype=np.float64)):
        if not failed:
            _, _, _, _, info = env.step(a)
            failed = bool(info.get("physics_error", False))
        q[k + 1] = q[k] if failed else u.measured_joints()[0]
    return q


def replay_video(env, episodes, path: str | Path, *, height: int = 240, width: int = 320,
                 max_episodes: int | None = None) -> tuple[Path, int, float]:
    """Render logged (left) vs open-loop re-simulated (right) runs of ``episodes`` into ``path`` (.mp4 / .gif).

    ``episodes``: imported episodes with ``infos["joint_positions"]`` / ``["joint_velocities"]`` ``(T+1, n)``.
    Frames are ``(height, 2 * width, 3)``; fps is ``1 / median logged control period``. Returns (written path,
    frame count, fps).
    """
    u = env.unwrapped
    eps = list(episodes)[:max_episodes]
    missing = [i for i, e in enumerate(eps) if "joint_positions" not in e.infos or "joint_velocities" not in e.infos]
    if missing:
        raise ValueError(f"episode(s) {missing} have no joint_positions/joint_velocities infos: nothing to replay")
    frames: list[np.ndarray] = []
    dts = []
    for i, ep in enumerate(eps):
        q_sim = open_loop_resim(env, ep)
        t = np.asarray(ep.time_s, dtype=np.float64)
        dts.append(np.diff(t))
        labels = (f"logged (episode {i + 1}/{len(eps)})", "re-simulated open loop")
        frames += side_by_side_frames(u.model, u.qpos_from_joints(ep.infos["joint_positions"]),
                                      u.qpos_from_joints(q_sim), labels=labels, height=height, width=width,
                                      camera=default_camera(u.model), times_s=t - t[0])
    dt = float(np.median(np.concatenate(dts))) if dts and np.concatenate(dts).size else float(u.control_dt)
    fps = 1.0 / dt
    return write_video(frames, path, fps=fps), len(frames), fps


def torch_act(module) -> Callable[[np.ndarray], np.ndarray]:
    """``obs (n_obs,) -> action (n_act,)`` from a ``load_policy`` module (deterministic, no grad)."""
    import torch

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.as_tensor(np.asarray(obs, dtype=np.float32)).unsqueeze(0))[0].numpy()

    return act


def evaluation_video(env, act: Callable[[np.ndarray], np.ndarray], path: str | Path, *, seed: int,
                     episodes: int = 1, height: int = 240, width: int = 320) -> tuple[Path, int, float]:
    """Render ``episodes`` episodes (env seeds ``seed, seed+1, ...``, as ``robot-rl evaluate`` uses them) of
    ``act`` in ``env`` into ``path``; fps = ``1 / control_dt``. Returns (written path, frame count, fps).
    """
    base = env.unwrapped
    dt = getattr(base, "control_dt", None) or getattr(base, "dt", None) or 1.0 / env.metadata.get("render_fps", 30)
    frames = list(episode_frames(env, act, episodes=episodes, seed=seed, height=height, width=width,
                                 camera=default_camera(base.model)))
    fps = 1.0 / float(dt)
    return write_video(frames, path, fps=fps), len(frames), fps


def evaluate_video_cli(pol, env_id: str, randomization, seed: int, episodes: int, path: str | Path) -> int:
    """``robot-rl evaluate --video``: render up to 3 evaluation episodes; prints what was written or the install
    hint to stderr (stdout stays the table / JSON; rendering unavailable is not an error). Returns 0.
    """
    import sys

    from robot_rl.scale.envs import make_env
    from robot_rl.viz.video import RenderUnavailable

    env = make_env(env_id, randomization=randomization, seed=seed)
    try:
        out, n, fps = evaluation_video(env, torch_act(pol.module), path, seed=seed, episodes=min(episodes, 3))
        print(f"video: {out} ({n} frames at {fps:.1f} fps)", file=sys.stderr)
    except RenderUnavailable as exc:
        print(f"robot-rl evaluate: no video: {exc}", file=sys.stderr)
    finally:
        env.close()
    return 0


def legged_replay_video(env, episode, sim_qpos: np.ndarray, path: str | Path, *, base_position=None,
                        stride: int = 10, height: int = 180, width: int = 240) -> tuple[Path, int, float]:
    """Logged legged run (left) beside ``sim_qpos`` ``(T+1, nq)`` of the visual model (right), every ``stride``-th
    control step. ``episode``: from ``robot_rl.data.legged_bags`` (``infos``: ``joint_positions``,
    ``imu_orientation``); ``base_position`` ``(T+1, 3)`` [m] or None (the base stays at its standing height).
    Returns (written path, frame count, fps).
    """
    model, _ = env.unwrapped.visual_scene()
    free = int(model.jnt_qposadr[0])
    joints = [int(model.jnt_qposadr[model.joint(j).id]) for j in env.unwrapped.profile.joint_names]
    t = np.asarray(episode.time_s, dtype=np.float64)
    logged = np.tile(model.qpos0, (len(t), 1))
    logged[:, free:free + 3] = model.qpos0[free:free + 3] if base_position is None else base_position
    logged[:, free + 3:free + 7] = episode.infos["imu_orientation"]
    logged[:, joints] = episode.infos["joint_positions"]
    n = min(len(logged), len(sim_qpos))
    labels = ("logged" + (" (base fixed)" if base_position is None else ""), "nominal sim, same commands")
    frames = side_by_side_frames(model, logged[:n:stride], np.asarray(sim_qpos)[:n:stride], labels=labels,
                                 height=height, width=width, camera="scene/track", times_s=t[:n:stride] - t[0])
    dt = float(np.median(np.diff(t))) * stride if len(t) > 1 else 0.2
    frames = list(frames)
    return write_video(frames, path, fps=1.0 / dt), len(frames), 1.0 / dt
