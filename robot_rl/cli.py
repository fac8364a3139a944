"""The ``robot-rl`` command.

Each subcommand lives in its own module under ``robot_rl/commands/`` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are discovered automatically and imported lazily
(only the chosen subcommand's imports run, so ``robot-rl launch`` never imports torch).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import robot_rl.commands as _commands_pkg

ORDER = ("train", "evaluate", "export", "collect", "replay", "launch", "deploy", "demo", "bench", "sweep")


def _discover() -> dict[str, tuple[str, str]]:
    """Name -> (module, one-line help), read without importing (help comes from the module's HELP constant)."""
    found = {}
    for info in pkgutil.iter_modules(_commands_pkg.__path__):
        if info.name.startswith("_"):
            continue
        path = Path(_commands_pkg.__path__[0]) / f"{info.name}.py"
        help_text = ""
        try:
            tree = ast.parse(path.read_text())
            for node in tree.body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HELP" for t in node.targets):
                    help_text = ast.literal_eval(node.value)
        except (OSError, SyntaxError, ValueError):
            pass
        found[info.name.replace("_", "-")] = (f"robot_rl.commands.{info.name}", help_text)
    return dict(sorted(found.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else 99, kv[0])))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-rl",
        description="robot_rl: train in MuJoCo, export to ONNX, deploy through ROS 2, replay logged robot data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from robot_rl import __version__

    parser.add_argument("--version", action="version", version=f"robot_rl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _discover().items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _discover()
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=chosen if chosen in commands else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    from robot_rl.core.config import ConfigError

    try:
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"robot-rl {args.command}: config error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"robot-rl {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robot-rl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
