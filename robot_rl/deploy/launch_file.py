"""Parse the subset of ROS 2 YAML launch files that ``robot-rl launch`` runs (no rclpy, no ``launch`` package).

The same files run under ``ros2 launch robot_rl <file>`` on a full ROS 2 install. Supported (see docs/launch.md):

- ``arg``: ``name``, ``default``, ``description``.
- ``node``: ``pkg``, ``exec``, ``name``, ``namespace``, ``param`` (``name``/``value`` items and ``from:`` parameter
  files), ``remap`` (``from``/``to``), ``args`` (extra command-line words), ``output``, ``if`` / ``unless``.
- substitutions in any string: ``$(var X)``, ``$(env X [default])``, ``$(find-pkg-share robot_rl)``; nesting works.

Everything else is an error that names the file and the entry, so a file never half-runs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robot_rl.core.config import ConfigError, load_yaml

PACKAGE = "robot_rl"
ARG_KEYS = {"name", "default", "description"}
NODE_KEYS = {"pkg", "exec", "name", "namespace", "param", "remap", "args", "output", "if", "unless"}


class LaunchError(ConfigError):
    """A launch file is malformed or a substitution cannot be resolved (message names file and entry)."""


@dataclass(frozen=True)
class LaunchArg:
    """A declared launch argument."""

    name: str
    default: str | None
    """Default value; None means the argument is required (``name:=value`` on the command line)."""
    description: str = ""


@dataclass(frozen=True)
class NodeAction:
    """One node to start, with every substitution already resolved."""

    pkg: str
    exec: str
    name: str
    namespace: str = ""
    params: tuple[tuple[str, Any], ...] = ()
    """Inline parameters ``(name, value)``; values keep their YAML type (int, float, bool, str, list)."""
    param_files: tuple[str, ...] = ()
    """ROS 2 parameter files (``--params-file``), in the order given."""
    remaps: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()

    def ros_args(self) -> list[str]:
        """Command-line words after the executable: extra args, then ``--ros-args`` like ``ros2 launch`` passes."""
        out = list(self.args) + ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            out += ["-r", f"__ns:={'/' + self.namespace.strip('/')}"]
        for path in self.param_files:
            out += ["--params-file", path]
        for pname, value in self.params:
            out += ["-p", f"{pname}:={param_literal(value)}"]
        for src, dst in self.remaps:
            out += ["-r", f"{src}:={dst}"]
        return out


@dataclass(frozen=True)
class LaunchDescription:
    """A parsed launch file: declared arguments, their resolved values, and the nodes to start."""

    path: Path
    args: tuple[LaunchArg, ...]
    values: dict[str, str]
    nodes: tuple[NodeAction, ...] = field(default=())


def param_literal(value: Any) -> str:
    """Render a parameter value for ``-p name:=value`` (rcl parses it as YAML, so types survive)."""
    if isinstance(value, str):
        # A substituted string is passed as is (rcl reads "0.002" as a double, like ros2 launch does), except
        # where YAML would read it as nothing or as a structure.
        if value == "" or value.strip() != value or value[0] in "[{&*!|>'\"%@`#":
            return yaml.safe_dump(value, default_style="'").strip().removesuffix("...").strip()
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _find_closing(text: str, start: int, where: str) -> int:
    """Index of the ``)`` closing the ``$(`` whose ``(`` is at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise LaunchError(f"{where}: unclosed substitution in {text!r}")


def substitute(text: str, values: dict[str, str], env: dict[str, str], where: str) -> str:
    """Resolve ``$(var X)``, ``$(env X [default])`` and ``$(find-pkg-share robot_rl)`` in ``text``."""
    out, i = [], 0
    while True:
        j = text.find("$(", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        end = _find_closing(text, j + 1, where)
        inner = substitute(text[j + 2:end], values, env, where)
        out.append(_resolve_one(inner, values, env, where))
        i = end + 1


def _resolve_one(expr: str, values: dict[str, str], env: dict[str, str], where: str) -> str:
    words = shlex.split(expr)
    if not words:
        raise LaunchError(f"{where}: empty substitution $()")
    kind, rest = words[0], words[1:]
    if kind == "var":
        if len(rest) != 1:
            raise LaunchError(f"{where}: $(var NAME) takes one name, got {expr!r}")
        if rest[0] not in values:
            raise LaunchError(f"{where}: $(var {rest[0]}) names no declared arg; declared: {sorted(values)}")
        return values[rest[0]]
    if kind == "env":
        if len(rest) not in (1, 2):
            raise LaunchError(f"{where}: $(env NAME [default]) takes 1 or 2 words, got {expr!r}")
        if rest[0] in env:
            return env[rest[0]]
        if len(rest) == 2:
            return rest[1]
        raise LaunchError(f"{where}: environment variable {rest[0]!r} is not set and $(env) gives no default")
    if kind == "find-pkg-share":
        if rest != [PACKAGE]:
            raise LaunchError(f"{where}: $(find-pkg-share) knows only package {PACKAGE!r} here, got {rest}")
        return str(package_share())
    raise LaunchError(f"{where}: unsupported substitution $({kind} ...); supported: var, env, find-pkg-share")


def package_share() -> Path:
    """Share directory of this package (checkout root, pip or colcon share), via ``robot_rl.core.assets``."""
    from robot_rl.core.assets import find_asset

    return find_asset("hardware").parent


def _as_text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise LaunchError(f"{where}: expected a scalar, got {type(value).__name__}")


def _truthy(value: str, where: str) -> bool:
    low = value.strip().lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise LaunchError(f"{where}: condition must be true/false/1/0, got {value!r}")


def parse_cli_args(words: list[str]) -> dict[str, str]:
    """``["model:=x", "rate:=500"]`` -> ``{"model": "x", "rate": "500"}``; anything else is an error."""
    out = {}
    for w in words:
        name, sep, value = w.partition(":=")
        if not sep or not name:
            raise LaunchError(f"launch argument {w!r} is not of the form name:=value")
        out[name] = value
    return out


def load_launch(path: str | Path, cli_values: dict[str, str] | None = None,
                env: dict[str, str] | None = None) -> LaunchDescription:
    """Parse a YAML launch file, bind arguments (CLI over defaults) and resolve every substitution."""
    import os

    path = Path(path)
    env = dict(os.environ if env is None else env)
    cli_values = dict(cli_values or {})
    raw = load_yaml(path)
    src = str(path)
    if not isinstance(raw, dict) or set(raw) != {"launch"} or not isinstance(raw["launch"], list):
        raise LaunchError(f"{src}: top level must be a mapping with one key 'launch' holding a list")
    args: list[LaunchArg] = []
    values: dict[str, str] = {}
    nodes: list[NodeAction] = []
    for idx, entry in enumerate(raw["launch"]):
        where = f"{src}: launch[{idx}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise LaunchError(f"{where}: each entry must be a mapping with one action key (arg or node)")
        (kind, body), = entry.items()
        if not isinstance(body, dict):
            raise LaunchError(f"{where}.{kind}: expected a mapping, got {type(body).__name__}")
        if kind == "arg":
            arg = _parse_arg(body, values, env, f"{where}.arg")
            args.append(arg)
            if arg.name in cli_values:
                values[arg.name] = cli_values[arg.name]
            elif arg.default is not None:
                values[arg.name] = arg.default
            else:
                raise LaunchError(f"{where}.arg: argument {arg.name!r} is required (pass {arg.name}:=VALUE)"
                                  + (f" -- {arg.description}" if arg.description else ""))
        elif kind == "node":
            node = _parse_node(body, values, env, f"{where}.node")
            if node is not None:
                nodes.append(node)
        else:
            raise LaunchError(f"{where}: unsupported action {kind!r}; supported: arg, node")
    unknown = sorted(set(cli_values) - {a.name for a in args})
    if unknown:
        raise LaunchError(f"{src}: unknown launch argument(s) {unknown}; declared: {[a.name for a in args]}")
    names = [n.name for n in nodes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LaunchError(f"{src}: node names must be unique, repeated: {dup}")
    return LaunchDescription(path=path, args=tuple(args), values=values, nodes=tuple(nodes))


def _check_keys(body: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise LaunchError(f"{where}: unsupported key(s) {extra}; supported: {sorted(allowed)}")


def _parse_arg(body: dict, values: dict[str, str], env: dict[str, str], where: str) -> LaunchArg:
    _check_keys(body, ARG_KEYS, where)
    if "name" not in body:
        raise LaunchError(f"{where}: missing 'name'")
    name = _as_text(body["name"], f"{where}.name")
    default = None
    if "default" in body:
        default = substitute(_as_text(body["default"], f"{where}.default"), values, env, f"{where}.default")
    return LaunchArg(name=name, default=default, description=str(body.get("description", "")))


def _sub_value(value: Any, values: dict[str, str], env: dict[str, str], where: str) -> Any:
    """Substitute inside a parameter value; a string that was fully a substitution keeps the substituted text."""
    if isinstance(value, str):
        return substitute(value, values, env, where)
    if isinstance(value, list):
        return [_sub_value(v, values, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bool, int, float)):
        return value
    raise LaunchError(f"{where}: parameter values must be scalars or lists, got {type(value).__name__}")


def _parse_node(body: dict, values: dict[str, str], env: dict[str, str], where: str) -> NodeAction | None:
    _check_keys(body, NODE_KEYS, where)

    def text(key: str, default: str | None = None) -> str:
        if key not in body:
            if default is None:
                raise LaunchError(f"{where}: missing {key!r}")
            return default
        return substitute(_as_text(body[key], f"{where}.{key}"), values, env, f"{where}.{key}")

    if "if" in body and not _truthy(text("if"), f"{where}.if"):
        return None
    if "unless" in body and _truthy(text("unless"), f"{where}.unless"):
        return None
    pkg, exe = text("pkg"), text("exec")
    if pkg != PACKAGE:
        raise LaunchError(f"{where}: only package {PACKAGE!r} can be run here, got pkg {pkg!r}")
    params, files = [], []
    plist = body.get("param", [])
    if not isinstance(plist, list):
        raise LaunchError(f"{where}.param: expected a list")
    for i, p in enumerate(plist):
        pw = f"{where}.param[{i}]"
        if not isinstance(p, dict):
            raise LaunchError(f"{pw}: expected a mapping with name/value or from")
        if set(p) == {"from"}:
            fpath = substitute(_as_text(p["from"], pw), values, env, pw)
            if not Path(fpath).is_file():
                raise LaunchError(f"{pw}: parameter file {fpath!r} does not exist")
            files.append(fpath)
        elif set(p) == {"name", "value"}:
            params.append((_as_text(p["name"], f"{pw}.name"), _sub_value(p["value"], values, env, f"{pw}.value")))
        else:
            raise LaunchError(f"{pw}: expected keys name+value or from, got {sorted(p)}")
    remaps = []
    rlist = body.get("remap", [])
    if not isinstance(rlist, list):
        raise LaunchError(f"{where}.remap: expected a list")
    for i, r in enumerate(rlist):
        rw = f"{where}.remap[{i}]"
        if not isinstance(r, dict) or set(r) != {"from", "to"}:
            raise LaunchError(f"{rw}: expected keys from and to")
        remaps.append((substitute(_as_text(r["from"], rw), values, env, rw),
                       substitute(_as_text(r["to"], rw), values, env, rw)))
    extra = shlex.split(text("args", "")) if "args" in body else []
    return NodeAction(pkg=pkg, exec=exe, name=text("name", exe), namespace=text("namespace", ""),
                      params=tuple(params), param_files=tuple(files), remaps=tuple(remaps), args=tuple(extra))
