"""Shared plumbing of the rclpy node shells: parameters with descriptions and validation, steady timers, main().

Exit codes of every node: 0 clean stop (SIGINT / SIGTERM), 1 fault while running (unhandled exception in a
callback: the node's ``fail_safe()`` publishes a final safe command first), 2 refused to start (bad parameter,
bad model, missing file: the message names what was wrong).

``--help`` (or ``-h``) before ``--ros-args`` prints every parameter of the node (type, default, accepted values,
description) and exits 0 without starting ROS: ``run_node`` runs the node's parameter declarations against a
``ParameterCatalog``, a reader that records each declaration and returns its default, so the help and the running
node read the same declarations.
"""

from __future__ import annotations

import dataclasses
import difflib
import gc
import inspect
import math
import os
import re
import signal
import sys
import textwrap
import traceback
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from robot_rl.core.config import ConfigError, from_parameters, parameter_specs

T = TypeVar("T")
EXIT_OK, EXIT_FAULT, EXIT_REFUSED = 0, 1, 2


class StartupError(Exception):
    """The node cannot start (bad parameter, bad model, missing file); the message says what and where."""


class ParamReader:
    """Declare ROS parameters with descriptions and read them with type checks and validation.

    Every parameter is declared with ``dynamic_typing`` so a launch file writing ``1`` for a float parameter is
    accepted; the type is checked here and a wrong one becomes a ``StartupError`` naming the parameter.
    """

    def __init__(self, node: Node | None):
        self.node = node
        self.values: dict[str, Any] = {}

    def _declare(self, name: str, kind: str, default: Any, description: str, constraints: str = "") -> Any:
        """Declare parameter ``name`` (``kind``: its type in words, for ``--help``) and return its value."""
        desc = ParameterDescriptor(description=description, additional_constraints=constraints, dynamic_typing=True)
        value = self.node.declare_parameter(name, default, desc).value
        return value

    def config(self, defaults: T, *, exclude: Collection[str] = ()) -> T:
        """Declare every leaf field of the config dataclass ``defaults`` as a parameter and return the config the
        parameter values make.

        Names, descriptions and accepted values come from the schema (``robot_rl.core.config.parameter_specs``:
        nested sections as dotted names, ``mpc.horizon``; the description is the docstring under the field); each
        default is the field's value in ``defaults`` (e.g. a config YAML). The values are checked like a YAML file
        (types, choices, finite numbers, the dataclasses' own checks); a bad one is a ``StartupError`` naming the
        parameter(s).
        """
        specs = parameter_specs(defaults, exclude=exclude)
        values = {s.name: self._declare(s.name, _kind(s.default), s.default, s.description, s.constraints)
                  for s in specs}
        try:
            config = from_parameters(type(defaults), values)
        except ConfigError as exc:
            raise StartupError(_parameter_error(exc, values)) from None
        self.values.update(values)
        return config

    def float(self, name: str, default: float, description: str, *, min_value: float | None = None,
              max_value: float | None = None, strict_min: bool = False) -> float:
        bounds = [f"{'>' if strict_min else '>='} {min_value}"] if min_value is not None else []
        bounds += [f"<= {max_value}"] if max_value is not None else []
        raw = self._declare(name, "double", float(default), description, ", ".join(bounds))
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise StartupError(f"parameter {name!r}: expected a number, got {raw!r}")
        value = float(raw)
        if not math.isfinite(value):
            raise StartupError(f"parameter {name!r}: must be finite, got {value}")
        if min_value is not None and (value < min_value or (strict_min and value == min_value)):
            raise StartupError(f"parameter {name!r}: must be {'>' if strict_min else '>='} {min_value}, got {value}")
        if max_value is not None and value > max_value:
            raise StartupError(f"parameter {name!r}: must be <= {max_value}, got {value}")
        self.values[name] = value
        return value

    def int(self, name: str, default: int, description: str, *, min_value: int | None = None,
            max_value: int | None = None) -> int:
        bounds = [f">= {min_value}"] if min_value is not None else []
        bounds += [f"<= {max_value}"] if max_value is not None else []
        raw = self._declare(name, "integer", int(default), description, ", ".join(bounds))
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise StartupError(f"parameter {name!r}: expected an integer, got {raw!r}")
        if min_value is not None and raw < min_value:
            raise StartupError(f"parameter {name!r}: must be >= {min_value}, got {raw}")
        if max_value is not None and raw > max_value:
            raise StartupError(f"parameter {name!r}: must be <= {max_value}, got {raw}")
        self.values[name] = raw
        return raw

    def bool(self, name: str, default: bool, description: str) -> bool:
        raw = self._declare(name, "bool", bool(default), description)
        if not isinstance(raw, bool):
            raise StartupError(f"parameter {name!r}: expected true or false, got {raw!r}")
        self.values[name] = raw
        return raw

    def str(self, name: str, default: str, description: str, *, choices: Sequence[str] | None = None) -> str:
        raw = self._declare(name, "string", str(default), description,
                            f"one of {list(choices)}" if choices is not None else "")
        if not isinstance(raw, str):
            raise StartupError(f"parameter {name!r}: expected a string, got {raw!r}")
        if choices is not None and raw not in choices:
            raise StartupError(f"parameter {name!r}: must be one of {list(choices)}, got {raw!r}")
        self.values[name] = raw
        return raw

    def floats(self, name: str, default: Sequence[float], description: str, *, length: int | None = None
               ) -> list[float]:
        raw = self._declare(name, "double array", [float(v) for v in default], description,
                            f"{length} values" if length is not None else "")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = [raw]
        if not isinstance(raw, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                     for v in raw):
            raise StartupError(f"parameter {name!r}: expected a list of numbers, got {raw!r}")
        values = [float(v) for v in raw]
        if not all(math.isfinite(v) for v in values):
            raise StartupError(f"parameter {name!r}: values must be finite, got {values}")
        if length is not None and len(values) != length:
            raise StartupError(f"parameter {name!r}: expected {length} values, got {len(values)}")
        self.values[name] = values
        return values


def _kind(value: Any) -> str:
    """ROS parameter type of ``value`` in words (``--help``)."""
    if isinstance(value, (list, tuple)):
        inner = {_kind(v) for v in value}
        return f"{inner.pop()} array" if len(inner) == 1 else "array"
    return {bool: "bool", int: "integer", float: "double", str: "string"}.get(type(value), type(value).__name__)


@dataclasses.dataclass(frozen=True)
class ParameterInfo:
    """One declared parameter, as ``--help`` shows it."""

    name: str
    kind: str
    """Type in words: ``string``, ``integer``, ``double``, ``bool``, ``double array``."""
    default: Any
    description: str
    constraints: str
    """Accepted values in words (``>= 0.0``, ``one of ['timer', 'sensor']``); empty: any value of the type."""


class ParameterCatalog(ParamReader):
    """A ``ParamReader`` without a node: records every declaration and returns its default, so a node's declaration
    code runs unchanged to list its parameters (``--help``) without rclpy, topics or files.
    """

    def __init__(self):
        super().__init__(None)
        self.declared: list[ParameterInfo] = []

    def _declare(self, name: str, kind: str, default: Any, description: str, constraints: str = "") -> Any:
        self.declared.append(ParameterInfo(name, kind, default, description, constraints))
        return default


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(list(value)) if isinstance(value, tuple) else str(value)


def help_text(name: str, doc: str | None, parameters: Sequence[ParameterInfo]) -> str:
    """The ``--help`` text of node ``name``: usage, the module docstring, every parameter, exit codes."""
    out = [f"usage: {name} [-h] [--ros-args [-p NAME:=VALUE ...] [--params-file FILE] [-r FROM:=TO ...]]", ""]
    if doc:
        out += [inspect.cleandoc(doc), ""]
    out.append(f"parameters ({len(parameters)}; set with --ros-args -p NAME:=VALUE or a parameter file):")
    for info in parameters:
        # the schema's words for a plain type (``integer``, ``true or false``) say no more than the type
        plain = info.constraints in ("", info.kind, "string", "integer", "true or false")
        accepted = "" if plain else f"; {info.constraints}"
        out.append(f"  {info.name} ({info.kind}, default {_default_text(info.default)}{accepted})")
        out += textwrap.wrap(info.description or "(no description)", width=100, initial_indent=" " * 6,
                             subsequent_indent=" " * 6, break_on_hyphens=False)
    out += ["", f"exit codes: {EXIT_OK} clean stop (SIGINT / SIGTERM), {EXIT_FAULT} fault while running (the final "
            "safe command is", f"published first), {EXIT_REFUSED} refused to start (the message names the cause)"]
    return "\n".join(out)


def wants_help(args: Sequence[str]) -> bool:
    """``-h`` / ``--help`` among the node's own arguments (``args[0]`` is the program; ROS arguments excluded)."""
    own = list(args[1:])
    if "--ros-args" in own:
        own = own[:own.index("--ros-args")]
    return "-h" in own or "--help" in own


def node_options(p: ParamReader) -> tuple[str, int]:
    """Declare the parameters every node shares; return (executor kind, SCHED_FIFO priority, 0 = normal)."""
    executor = p.str("executor", "events", "callback executor: events (rclpy's C++ EventsExecutor, the lowest "
                     "per-message overhead) or single (the classic SingleThreadedExecutor)", choices=EXECUTORS)
    priority = p.int("realtime_priority", 0, "SCHED_FIFO priority 1-98 of the node's process (as ros2_control's "
                     "thread_priority); 0: normal scheduling. Needs CAP_SYS_NICE or an rtprio limit; refused -> a "
                     "warning and normal scheduling", min_value=0, max_value=98)
    return executor, priority


def _parameter_error(exc: ConfigError, values: dict[str, Any]) -> str:
    """``parameter 'mpc.horizon': expected int, got ...``; a section's own check (``__post_init__``, which names
    fields without their section) is reported with the values of the parameters it mentions.
    """
    if exc.key_path in values:
        return f"parameter {exc.key_path!r}: {exc.message}"
    prefix = f"{exc.key_path}." if exc.key_path else ""
    words = set(re.findall(r"\w+", exc.message))
    named = [n for n in values if n.startswith(prefix) and "." not in n[len(prefix):] and n[len(prefix):] in words]
    where = ", ".join(f"{n}={values[n]!r}" for n in named) or f"section {exc.key_path or '(top level)'!r}"
    return f"parameters {where}: {exc.message}"


def undeclared_overrides(node: Node) -> dict[str, list[str]]:
    """Parameters given to the node (``-p``, parameter files) that it never declared, which rclpy ignores, each with
    the declared names it may have meant (same last word, ``horizon`` -> ``mpc.horizon``, or a close spelling).
    """
    # rclpy keeps the overrides privately (no public accessor); a wildcard parameter file may list some on purpose
    given = getattr(node, "_parameter_overrides", {})
    declared = list(node.list_parameters([], 0).names)
    out = {}
    for pname in sorted(given):
        if node.has_parameter(pname):
            continue
        close = [d for d in declared if d.rsplit(".", 1)[-1] == pname or d.rsplit(".", 1)[-1].endswith("_" + pname)]
        out[pname] = close or difflib.get_close_matches(pname, declared, n=2, cutoff=0.7)
    return out


def steady_clock() -> Clock:
    """A steady clock for timers: watchdogs keep firing when the ROS (sim) clock freezes."""
    return Clock(clock_type=ClockType.STEADY_TIME)


def stamp_to_s(stamp) -> float:
    """``builtin_interfaces/Time`` -> seconds (float)."""
    return stamp.sec + stamp.nanosec * 1e-9


EXECUTORS = ("events", "single")


def make_executor(kind: str, context=None) -> Executor:
    """An rclpy executor by name.

    ``events``: ``rclpy.experimental.EventsExecutor``, callbacks dispatched from C++ without rebuilding a wait set
    per spin (bench/results/ros_latency.md compares both at 500 Hz); ``single``: ``SingleThreadedExecutor``.
    """
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    if kind == "single":
        return SingleThreadedExecutor(context=context)
    raise ValueError(f"executor: expected one of {EXECUTORS}, got {kind!r}")


def set_realtime_priority(priority: int) -> str | None:
    """Switch every thread of this process to SCHED_FIFO at ``priority``; returns why not, or None when done.

    All threads, not only the caller: the middleware's receive threads (created at ``rclpy.init``) carry every
    message to the executor, and a starved receive thread delays the control step as much as a starved executor.
    Threads created later inherit the policy.
    """
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    try:
        for tid in tids:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError, AttributeError) as exc:
        return f"sched_setscheduler: {exc}"
    return None


def run_node(name: str, factory: Callable[[], Node], argv: Sequence[str] | None = None, *,
             parameters: Callable[[ParamReader], Any]) -> int:
    """Init rclpy, build the node, spin until shutdown; map outcomes to exit codes (see module docstring).

    ``factory`` builds the node (raising ``StartupError`` to refuse). The node may define ``fail_safe()`` (called
    after an unhandled exception: publish the final safe command) and ``on_shutdown()`` (clean stop: flush, log
    statistics). ``parameters(reader)`` declares every parameter of the node (the node calls it too): with
    ``--help`` it runs against a ``ParameterCatalog`` and the help is printed instead of starting ROS.

    Run as the process's entry point (``argv`` None), a refusal ends the process with ``os._exit(2)`` once stdio is
    flushed and rclpy is shut down. The DDS participant is then seconds old and in full discovery; tearing it down in
    the interpreter's and the middleware's own finalizers crashed with SIGSEGV (exit -11 instead of 2) in 1 of 4 full
    test runs. Nothing else needs finalizing on that path: the node never ran.
    """
    code = _run_node(name, factory, argv, parameters)
    if code == EXIT_REFUSED and argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run_node(name: str, factory: Callable[[], Node], argv: Sequence[str] | None,
              parameters: Callable[[ParamReader], Any]) -> int:
    args = list(sys.argv if argv is None else argv)
    if wants_help(args):
        catalog = ParameterCatalog()
        try:
            parameters(catalog)
            node_options(catalog)
        except StartupError as exc:  # e.g. mpc_node's default config file missing from an install
            print(f"[{name}] cannot list the parameters: {exc}", file=sys.stderr, flush=True)
            return EXIT_REFUSED
        print(help_text(name, getattr(sys.modules.get(factory.__module__), "__doc__", None), catalog.declared))
        return EXIT_OK
    # Own signal handling: the context stays valid after SIGINT / SIGTERM so on_shutdown can still publish a
    # final command and close files; spin_once with a short timeout lets the flag be seen promptly.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop: list[int] = []

    def _on_signal(signum, _frame):
        stop.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    node = None
    try:
        try:
            node = factory()
        except StartupError as exc:
            print(f"[{name}] refusing to start: {exc}", file=sys.stderr, flush=True)
            return EXIT_REFUSED
        except Exception:  # noqa: BLE001 - an unexpected start-up failure is still a refusal, with its traceback
            print(f"[{name}] refusing to start:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            return EXIT_REFUSED
        try:
            kind, priority = node_options(ParamReader(node))
            executor = make_executor(kind)
        except StartupError as exc:
            print(f"[{name}] refusing to start: {exc}", file=sys.stderr, flush=True)
            return EXIT_REFUSED
        for pname, close in undeclared_overrides(node).items():  # e.g. a renamed parameter in an old launch file
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            node.get_logger().warning(f"parameter {pname!r} is not a parameter of {name} and is ignored{hint}")
        if priority:
            problem = set_realtime_priority(priority)
            if problem:
                node.get_logger().warning(f"realtime_priority {priority} not applied ({problem}); normal scheduling")
            else:
                node.get_logger().info(f"running with SCHED_FIFO priority {priority}")
        # Objects alive after start-up never need scanning again: shorter, rarer GC pauses in the control loop.
        gc.collect()
        gc.freeze()
        executor.add_node(node)
        try:
            while not stop and rclpy.ok() and not getattr(node, "fatal_error", None):
                executor.spin_once(timeout_sec=0.05)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:  # noqa: BLE001 - any callback failure: safe command, then exit non-zero
            print(f"[{name}] unhandled exception, publishing the safe command and exiting:\n"
                  f"{traceback.format_exc()}", file=sys.stderr, flush=True)
            _call(node, "fail_safe", name)
            _call(node, "on_shutdown", name)
            return EXIT_FAULT
        failure = getattr(node, "fatal_error", None)
        if failure:
            print(f"[{name}] stopping after fault: {failure}", file=sys.stderr, flush=True)
            _call(node, "fail_safe", name)
            _call(node, "on_shutdown", name)
            return EXIT_FAULT
        _call(node, "on_shutdown", name)
        return EXIT_OK
    finally:
        if node is not None:
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - context may already be shut down
                pass
        if rclpy.ok():
            rclpy.try_shutdown()


def _call(node: Node, method: str, name: str) -> None:
    fn = getattr(node, method, None)
    if fn is None:
        return
    try:
        fn()
    except Exception:  # noqa: BLE001 - a failing hook must not hide the original outcome
        print(f"[{name}] {method} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
