"""Does it walk? Velocity-tracking error and falls of a legged policy on held-out reality samples.

Each reality sample (``LocomotionRandomization.named("reality")``: friction, PD gains, payload, centre of mass,
joint friction, encoder offsets, latency, IMU noise and bias, pushes) runs one episode per command with the command
held; after ``settle_s`` the mean absolute error of the forward velocity and of the yaw rate is recorded. A fall
ends that episode (and counts). ``robot-rl evaluate --tracking`` and bench/bench_go2.py print this report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

DEFAULT_COMMANDS = ((0.3, 0.0, 0.0), (0.5, 0.0, 0.0), (0.8, 0.0, 0.0), (0.4, 0.0, 0.5), (0.4, 0.0, -0.5),
                    (0.0, 0.0, 0.0))
"""Forward speeds across [0.3, 0.8] m/s, turning at +-0.5 rad/s while walking, and standing still."""


def tracking_report(policy: Callable[[np.ndarray], np.ndarray], env_id: str, *,
                    commands: Sequence[Sequence[float]] = DEFAULT_COMMANDS, samples: int = 20,
                    seconds: float = 20.0, settle_s: float = 2.0, randomization="reality", seed: int = 10**9,
                    progress: bool = False) -> dict:
    """Run ``policy`` (raw float32 obs ``(N, n_obs)`` -> actions ``(N, n_act)``) for ``seconds`` per command on
    ``samples`` reality samples (one env each, all at once). Returns per-command rows (``command``,
    ``vx_mae`` [m/s], ``yaw_rate_mae`` [rad/s], ``vy_mae``, ``height_mean``: base height [m], ``falls``) and totals
    (``falls``, ``episodes``, ``samples_without_fall``, worst tracking errors of the moving commands).
    """
    from robot_rl.envs import task_spec
    from robot_rl.envs.locomotion import LocomotionRandomization, LocomotionVecEnv

    rz = randomization
    if isinstance(rz, str):
        rz = LocomotionRandomization.named(rz)
    if rz is not None and rz.variants < samples:
        from dataclasses import replace

        rz = replace(rz, variants=samples)
    env = LocomotionVecEnv(task_spec(env_id), samples, seed=seed, randomization=rz)
    env.pin_variants(np.arange(samples) % len(env._variants))
    steps = int(round(seconds / env.dt))
    settle = int(round(settle_s / env.dt))
    rows, fell_any = [], np.zeros(samples, dtype=bool)
    try:
        for c in commands:
            obs, _ = env.reset(seed=seed)
            env.set_command(c)
            alive = np.ones(samples, dtype=bool)
            err = np.zeros((samples, 3))
            height = np.zeros(samples)
            count = np.zeros(samples)
            for t in range(steps):
                obs, _, term, _, _ = env.step(policy(obs))
                alive &= ~term
                if t >= settle:
                    b = env.base_state()
                    e = np.abs(np.stack([b["lin_vel"][:, 0] - c[0], b["lin_vel"][:, 1] - c[1],
                                         b["yaw_rate"] - c[2]], axis=1))
                    err[alive] += e[alive]
                    height[alive] += b["position"][alive, 2]
                    count[alive] += 1
            fell = ~alive
            fell_any |= fell
            ok = count > 0
            mean = err[ok] / count[ok, None] if ok.any() else np.full((1, 3), np.nan)
            rows.append({"command": [float(x) for x in c], "vx_mae": float(np.mean(mean[:, 0])),
                         "vy_mae": float(np.mean(mean[:, 1])), "yaw_rate_mae": float(np.mean(mean[:, 2])),
                         "height_mean": float(np.mean(height[ok] / count[ok])) if ok.any() else float("nan"),
                         "falls": int(fell.sum())})
            if progress:
                r = rows[-1]
                print(f"  command {r['command']}: vx MAE {r['vx_mae']:.3f} m/s, yaw-rate MAE "
                      f"{r['yaw_rate_mae']:.3f} rad/s, base height {r['height_mean']:.3f} m, falls "
                      f"{r['falls']}/{samples}", flush=True)
    finally:
        env.close()
    return {"rows": rows, "samples": samples, "seconds": seconds, "episodes": samples * len(commands),
            "falls": int(sum(r["falls"] for r in rows)), "samples_without_fall": int((~fell_any).sum()),
            "worst_vx_mae": float(max((r["vx_mae"] for r in rows if any(r["command"])), default=float("nan"))),
            "worst_yaw_rate_mae": float(max(r["yaw_rate_mae"] for r in rows if r["command"][2] != 0.0)
                                        if any(r["command"][2] != 0.0 for r in rows) else float("nan"))}


def torch_policy(module) -> Callable[[np.ndarray], np.ndarray]:
    """A ``LoadedPolicy.module`` (torch) as a numpy batch policy."""
    import torch

    def run(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.as_tensor(np.asarray(obs, dtype=np.float32))).numpy()

    return run
