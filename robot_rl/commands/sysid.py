"""Identify physical parameters of the robot from a logged run (rosbag2) and re-centre a randomization profile.

    robot-rl sysid BAG --env robot_rl/CartpoleSwingup-v0 [--out sysid_out] [--params NAME[=LOW:HIGH] ...]

Re-simulates the log window by window (``--window`` control steps from each window's start state, with the logged
commands) and fits the parameters, and the start states, by least squares; the action latency (whole control
steps) is grid searched.
Parameter names are the keys of an env's randomization info: ``body_mass_scale/<body>``,
``joint_damping_offset/<joint>``, ``joint_damping_scale/<joint>``, ``armature_offset/<joint>``,
``frictionloss_offset/<joint>``, ``actuator_gain_scale/<actuator>``, ``action_latency_steps`` (e.g.
``action_latency_steps=0:5``). Default: the mass of every body not moved directly by a motor, every joint's
damping, every motor's gain, latency 0..3. Prints a table; writes ``sysid.json`` (estimates, std, errors before
and after) and ``randomization.yaml`` (``--base`` re-centred on the estimates) to ``--out``. See docs/sysid.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HELP = "identify masses, damping, motor gain and latency from a bag; write a re-centred randomization profile"


def add_arguments(p) -> None:
    p.add_argument("bag", type=Path, help="rosbag2 directory or .mcap file with joint states and commands")
    p.add_argument("--env", required=True, help="env id whose robot and MJCF were logged, e.g. "
                   "robot_rl/CartpoleSwingup-v0")
    p.add_argument("--out", type=Path, default=Path("sysid_out"),
                   help="output directory for sysid.json and randomization.yaml (default sysid_out)")
    p.add_argument("--params", nargs="+", default=None, metavar="NAME[=LOW:HIGH]",
                   help="parameters to fit (default: see above); bounds optional")
    p.add_argument("--window", type=int, default=25, help="control steps per re-simulated window (default 25)")
    p.add_argument("--smooth", type=int, default=7,
                   help="Savitzky-Golay width [samples] for the window start states, < 5 = raw (default 7)")
    p.add_argument("--base", default="default",
                   help="randomization profile whose spreads the re-centred profile keeps (name or YAML path, "
                        "'none' = only the fitted terms; default: default)")
    p.add_argument("--widen", action="store_true",
                   help="keep --base's ranges and extend them to cover the identified values, instead of moving "
                        "them onto the identified values (a policy trained on it keeps the robots it was trained "
                        "for)")
    p.add_argument("--no-fit-start", action="store_true",
                   help="start every window from the (smoothed) logged state instead of fitting the start states "
                        "too (faster; sensor noise in the start states then biases the estimates)")
    p.add_argument("--max-nfev", type=int, default=30,
                   help="least-squares iterations per latency value (default 30)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fail(msg: str) -> int:
    print(f"robot-rl sysid: {msg}", file=sys.stderr)
    return 2


def run(args) -> int:
    from robot_rl.envs import make
    from robot_rl.envs.randomization_config import load_randomization
    from robot_rl.sysid.fit import identify
    from robot_rl.sysid.logs import check_env, load_bag
    from robot_rl.sysid.params import default_specs, parse_param, validate_specs
    from robot_rl.sysid.report import format_table, recentred_profile, result_dict, write_json, write_profile

    if args.window < 2 or args.max_nfev < 1:
        return _fail(f"--window must be >= 2 and --max-nfev >= 1, got {args.window} and {args.max_nfev}")
    try:
        env = make(args.env)
    except (KeyError, ValueError) as exc:
        return _fail(f"--env {args.env!r}: {exc.args[0] if exc.args else exc}")
    base = None if args.base.lower() == "none" else args.base
    try:
        model, frame_skip, qadr, dadr = check_env(env)
        specs = [parse_param(t) for t in args.params] if args.params else default_specs(model)
        params, latency = validate_specs(model, specs)
        load_randomization(base)  # a bad --base fails before the fit (ConfigError: one line from robot-rl)
        log, load_notes = load_bag(args.bag, env)
        print(f"{args.bag}: {len(log.segments)} segment(s), {log.steps} control steps "
              f"({log.steps * env.unwrapped.control_dt:.1f} s); fitting {[p.name for p in params]}"
              + (f", latency {latency[0]}..{latency[1]}" if latency else ""))
        t0 = time.perf_counter()
        result = identify(model, frame_skip, qadr, dadr, log, params, latency, window=args.window,
                          smooth=args.smooth, max_nfev=args.max_nfev, fit_start=not args.no_fit_start,
                          progress=not args.no_progress)
        elapsed = time.perf_counter() - t0
        args.out.mkdir(parents=True, exist_ok=True)
        profile = recentred_profile(result, params, model, base, widen=args.widen)
        write_profile(profile, args.out / "randomization.yaml", model,
                      f"Randomization re-centred by `robot-rl sysid` on {args.bag} ({args.env}); base profile: "
                      f"{base or 'none'}{', widened' if args.widen else ''}.\nSee {args.out / 'sysid.json'} for the "
                      "estimates and their std.")
    except ValueError as exc:
        return _fail(str(exc))
    finally:
        env.close()
    report = result_dict(result, params, source=str(args.bag), env_id=args.env, base_profile=base, widen=args.widen,
                         steps=log.steps, fit_seconds=round(elapsed, 3), load_notes=load_notes,
                         profile=str(args.out / "randomization.yaml"))
    write_json(report, args.out / "sysid.json")
    print(format_table(result))
    print(f"fit took {elapsed:.1f} s; wrote {args.out / 'sysid.json'} and {args.out / 'randomization.yaml'}")
    return 0
