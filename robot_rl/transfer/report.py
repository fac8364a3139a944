"""The transfer report: per-model summary (return retention against the nominal model, failures, the ROS-vs-Python
gap, latency, agreement), per-sample tables, plots, ``report.md``, ``summary.json`` and ``per_sample.csv``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np


def _stats(x) -> dict:
    x = np.asarray([v for v in x if v is not None and math.isfinite(v)], dtype=np.float64)
    if not len(x):
        return {"mean": math.nan, "std": math.nan, "median": math.nan, "worst": math.nan, "n": 0}
    return {"mean": float(x.mean()), "std": float(x.std()), "median": float(np.median(x)), "worst": float(x.min()),
            "n": int(len(x))}


def summarize(entry: dict) -> dict:
    """Summary of one model's rows (``run_transfer``'s ``models[i]``)."""
    nominal = _stats([r["return"] for r in entry["nominal"]])
    ref = nominal["mean"]
    py = entry["python"]
    out = {"label": entry["label"], "nominal_return": nominal,
           "python_return": _stats([r["return"] for r in py]),
           "python_retention": _stats([r["return"] / ref for r in py]) if ref else _stats([]),
           "nominal_limit_hits": sum(r["limit_hit"] for r in entry["nominal"]),
           "python_failures": {"terminated": sum(r["terminated"] for r in py),
                               "limit_hit": sum(r["limit_hit"] for r in py),
                               "physics_error": sum(r["physics_error"] for r in py)}}
    ros = [r for r in entry["ros"] if "error" not in r]
    if entry["ros"]:
        by_seed = {r["seed"]: r["return"] for r in py}
        gaps = [r["return"] - by_seed[r["seed"]] for r in ros]
        out.update({
            "ros_return": _stats([r["return"] for r in ros]),
            "ros_retention": _stats([r["return"] / ref for r in ros]) if ref else _stats([]),
            "ros_minus_python": {**_stats(gaps), "max_abs": float(np.max(np.abs(gaps))) if gaps else math.nan},
            "ros_failures": {"runs_without_result": len(entry["ros"]) - len(ros),
                             "short_runs": sum(r["short"] for r in ros),
                             "limit_hit": sum(r["limit_hit"] for r in ros),
                             "with_safety_fallbacks": sum(r["safe_commands"] > 0 for r in ros),
                             "with_command_timeouts": sum(r["timeouts"] > 0 for r in ros),
                             "with_nonfinite_commands": sum(r["nonfinite_commands"] > 0 for r in ros),
                             "with_diagnostics_errors": sum(r["diagnostics_errors"] > 0 for r in ros),
                             "monitor_alarms": sum(bool(r.get("monitor_alarm")) for r in ros)},
            "latency_p50_ms_median": _stats([r["latency_p50_ms"] for r in ros])["median"],
            "latency_p99_ms_max": float(np.nanmax([r["latency_p99_ms"] for r in ros])) if ros else math.nan,
            "agreement_commands": sum(r["agreement_commands"] for r in ros),
            "safety_fallback_commands": sum(r["safety_fallback_commands"] for r in ros),
            "safety_changed_commands": sum(r.get("safety_changed_commands", 0) for r in ros),
            "unmatched_commands": sum(r["unmatched_commands"] for r in ros),
            "agreement_max": float(np.nanmax([r["agreement_max"] for r in ros] + [-np.inf])) if ros else math.nan,
        })
    out["export_parity_max"] = entry.get("parity", {}).get("max_abs_diff")
    return out


def _fmt(v, spec=".1f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec) if isinstance(v, (float, np.floating)) else str(v)


def _summary_rows(summaries: list[dict], ros: bool) -> list[tuple[str, list[str]]]:
    def ms(d, key, spec=".1f"):
        s = d[key]
        return f"{_fmt(s['mean'], spec)} +- {_fmt(s['std'], spec)} (worst {_fmt(s['worst'], spec)})"

    rows = [("nominal model return", [ms(s, "nominal_return") for s in summaries]),
            ("nominal model: episodes with joint-limit hits", [str(s["nominal_limit_hits"]) for s in summaries]),
            ("reality return, Python env", [ms(s, "python_return") for s in summaries]),
            ("retention (reality / nominal mean), Python env", [ms(s, "python_retention", ".2f") for s in summaries]),
            ("Python env: early terminations / joint-limit hits / physics errors",
             [" / ".join(str(v) for v in s["python_failures"].values()) for s in summaries])]
    if ros:
        rows += [("reality return, ROS 2 loop", [ms(s, "ros_return") for s in summaries]),
                 ("retention, ROS 2 loop", [ms(s, "ros_retention", ".2f") for s in summaries]),
                 ("ROS minus Python return (max \\|gap\\|)",
                  [f"{_fmt(s['ros_minus_python']['mean'])} (max {_fmt(s['ros_minus_python']['max_abs'])})"
                   for s in summaries]),
                 ("ROS runs: joint-limit hits / with safety fallbacks / with command timeouts",
                  [f"{s['ros_failures']['limit_hit']} / {s['ros_failures']['with_safety_fallbacks']} / "
                   f"{s['ros_failures']['with_command_timeouts']}" for s in summaries]),
                 ("ROS runs: non-finite commands / diagnostics errors / short or failed runs",
                  [f"{s['ros_failures']['with_nonfinite_commands']} / {s['ros_failures']['with_diagnostics_errors']}"
                   f" / {s['ros_failures']['short_runs'] + s['ros_failures']['runs_without_result']}"
                   for s in summaries]),
                 ("ROS runs: dynamics monitor alarms (with --monitor)",
                  [str(s["ros_failures"]["monitor_alarms"]) for s in summaries]),
                 ("sensor -> command latency: median p50 / max p99 [ms]",
                  [f"{_fmt(s['latency_p50_ms_median'], '.2f')} / {_fmt(s['latency_p99_ms_max'], '.2f')}"
                   for s in summaries]),
                 ("commands sent vs the ONNX policy on the logged joint states: compared, max \\|diff\\| / safety "
                  "fallbacks / clamped or rate-limited / unmatched",
                  [f"{s['agreement_commands']}, {_fmt(s['agreement_max'], '.2g')} / {s['safety_fallback_commands']} / "
                   f"{s['safety_changed_commands']} / {s['unmatched_commands']}" for s in summaries])]
    rows.append(("export parity torch vs ONNX, max \\|diff\\| (policy.json)",
                 [_fmt(s["export_parity_max"], ".2g") for s in summaries]))
    return rows


def _plots(results: dict, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    files = {}
    ros = results["settings"]["ros"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for k, entry in enumerate(results["models"]):
        c = colors[k % len(colors)]
        dx = 0.12 * k  # models side by side at each seed
        seeds = [r["seed"] + dx for r in entry["python"]]
        ax.plot(seeds, [r["return"] for r in entry["python"]], "o", color=c, label=f"{entry['label']}: Python env")
        if ros:
            rr = [r for r in entry["ros"] if "return" in r]
            ax.plot([r["seed"] + dx for r in rr], [r["return"] for r in rr], "x", color=c, ms=8,
                    label=f"{entry['label']}: ROS 2 loop")
        ax.axhline(np.mean([r["return"] for r in entry["nominal"]]), color=c, ls="--", lw=1,
                   label=f"{entry['label']}: nominal mean")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("reality sample seed")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "returns_per_sample.png", dpi=80)
    plt.close(fig)
    files["returns"] = "returns_per_sample.png"
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(results["models"]) * (2 if ros else 1), 3.5))
    data, names = [], []
    for entry in results["models"]:
        ref = np.mean([r["return"] for r in entry["nominal"]])
        data.append([r["return"] / ref for r in entry["python"]])
        names.append(f"{entry['label']}\nPython")
        if ros:
            data.append([r["return"] / ref for r in entry["ros"] if "return" in r])
            names.append(f"{entry['label']}\nROS 2")
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names, fontsize=7)
    ax.axhline(1.0, color="k", ls=":", lw=1)
    ax.set_ylabel("return / nominal mean")
    fig.tight_layout()
    fig.savefig(out / "retention.png", dpi=80)
    plt.close(fig)
    files["retention"] = "retention.png"
    if ros:
        fig, ax = plt.subplots(figsize=(4.5, 4.2))
        lo, hi = math.inf, -math.inf
        for k, entry in enumerate(results["models"]):
            by_seed = {r["seed"]: r["return"] for r in entry["python"]}
            rr = [r for r in entry["ros"] if "return" in r]
            x, y = [by_seed[r["seed"]] for r in rr], [r["return"] for r in rr]
            ax.plot(x, y, "o", color=colors[k % len(colors)], label=entry["label"])
            if x:
                lo, hi = min(lo, *x, *y), max(hi, *x, *y)
        if math.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.set_xlabel("return, Python env")
        ax.set_ylabel("return, ROS 2 loop")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "ros_vs_python.png", dpi=80)
        plt.close(fig)
        files["ros_vs_python"] = "ros_vs_python.png"
    return files


def _per_sample_csv(results: dict, path: Path) -> None:
    keys = sorted({k for e in results["models"] for r in e["python"] for k in r["sample"]})
    ros_keys = ("return", "steps", "limit_hit", "safe_commands", "timeouts", "nonfinite_commands", "monitor_alarm",
                "latency_p50_ms", "latency_p99_ms", "agreement_commands", "agreement_max",
                "safety_fallback_commands", "safety_changed_commands", "unmatched_commands", "error")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "seed", "nominal_return", "python_return", "python_length", "python_terminated",
                    "python_limit_hit", *[f"ros_{k}" for k in ros_keys], *keys])
        for e in results["models"]:
            ros = {r["seed"]: r for r in e["ros"]}
            for nom, py in zip(e["nominal"], e["python"]):
                r = ros.get(py["seed"], {})
                w.writerow([e["label"], py["seed"], nom["return"], py["return"], py["length"], py["terminated"],
                            py["limit_hit"], *[r.get(k, "") for k in ros_keys],
                            *[py["sample"].get(k, "") for k in keys]])


def write_report(results: dict, out: Path) -> Path:
    """report.md (with plots), summary.json and per_sample.csv in ``out``; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    st = results["settings"]
    summaries = [summarize(e) for e in results["models"]]
    files = _plots(results, out)
    _per_sample_csv(results, out / "per_sample.csv")
    (out / "summary.json").write_text(json.dumps({"settings": st, "summaries": summaries, "models": results["models"]},
                                                 indent=1, default=float) + "\n")
    labels = [s["label"] for s in summaries]
    lines = ["# Transfer report", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}: task `{st['env_id']}`, robot `{st['profile']}`, "
             f"{st['samples']} samples of randomization `{st['randomization']}` (seeds {st['seeds'][0]}.."
             f"{st['seeds'][-1]}), " + (f"each in the Python env and through the ROS 2 loop (sim_robot + "
                                         f"policy_node, trigger `{st['trigger']}`, + recorder over DDS on loopback)."
                                         if st["ros"] else "in the Python env only."), "",
             "Retention is a sample's return divided by the mean return of the same policy on the nominal model from "
             "the same initial states; a ROS run's return is sim_robot's task reward of the true state over the "
             "Python episode's number of control steps.", "",
             "| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    lines += [f"| {name} | " + " | ".join(vals) + " |" for name, vals in _summary_rows(summaries, st["ros"])]
    lines += ["", f"![returns per sample]({files['returns']})", "", f"![retention]({files['retention']})", ""]
    if "ros_vs_python" in files:
        lines += [f"![ROS vs Python]({files['ros_vs_python']})", ""]
    for e in results["models"]:
        lines += [f"## {e['label']} (`{e['model_dir']}`)", "",
                  "| seed | nominal | Python | ROS 2 | ROS - Python | failures |", "|---|---|---|---|---|---|"]
        ros = {r["seed"]: r for r in e["ros"]}
        for nom, py in zip(e["nominal"], e["python"]):
            r = ros.get(py["seed"])
            fail = [w for w, bad in (("terminated early", py["terminated"]), ("limit (Python)", py["limit_hit"]),
                                     ("physics error", py["physics_error"])) if bad]
            ros_ret, gap = "-", "-"
            if r is not None and "error" in r:
                fail.append(f"ROS run failed: {r['error']}")
            elif r is not None:
                ros_ret, gap = _fmt(r["return"]), _fmt(r["return"] - py["return"])
                fail += [w for w, bad in (("limit (ROS)", r["limit_hit"]),
                                          (f"{r['safe_commands']} safety fallbacks", r["safe_commands"] > 0),
                                          (f"{r['timeouts']} command timeouts", r["timeouts"] > 0),
                                          ("monitor alarm", bool(r.get("monitor_alarm"))),
                                          (f"short run ({r['steps']} steps)", r["short"])) if bad]
            lines.append(f"| {py['seed']} | {_fmt(nom['return'])} | {_fmt(py['return'])} | {ros_ret} | {gap} | "
                         f"{', '.join(fail) or '-'} |")
        lines.append("")
    lines += ["Per-sample values, with each sample's randomization parameters: [per_sample.csv](per_sample.csv); "
              "everything as JSON: [summary.json](summary.json).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
