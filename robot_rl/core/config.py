"""Strict YAML -> frozen dataclass loading.

``yaml.safe_load`` alone accepts duplicate keys (last one wins), ``no``/``off`` as False, ``3.10`` as 3.1 and
``.nan``.  This loader rejects what matters for robot configs and names the file and key path of every error:

* duplicate keys, python tags / unknown tags, files over ``MAX_CONFIG_BYTES``;
* unknown keys, missing required keys, wrong types (``bool`` is not an ``int``; a float where a string is expected
  is an error rather than a silent ``3.1``);
* non-finite numbers (``.nan``, ``.inf``) unless a field opts in with ``metadata={"allow_nonfinite": True}``;
* YAML 1.1 booleans (``yes``/``no``/``on``/``off``) are refused: only ``true``/``false`` are booleans.

Usage::

    cfg = load_config(SacConfig, "config/sac_pendulum.yaml", overrides=["algo.batch_size=512"])

The same schema gives flat parameters (``parameter_specs``: one per leaf field, nested sections as dotted names such
as ``mpc.horizon``, described by the docstring under the field) and takes them back (``from_parameters``, with the
same checks): the ROS nodes declare their parameters this way (``robot_rl.nodes._common.ParamReader.config``).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import math
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a config larger than this is almost certainly not a config

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, with the file and dotted key path that caused it."""

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None):
        self.source = source
        self.key_path = path
        self.message = message
        where = ": ".join(p for p in (source, path) if p)
        super().__init__(f"{where}: {message}" if where else message)


# --------------------------------------------------------------------------- YAML layer

_BOOL_WORDS = re.compile(r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|y|Y|n|N)$")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and YAML 1.1 yes/no/on/off booleans."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(
                None, None, f"unsupported mapping key {key!r}", key_node.start_mark
            )
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


def _construct_bool(loader: _StrictLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_scalar(node)
    if _BOOL_WORDS.match(str(value)):
        raise yaml.constructor.ConstructorError(
            None, None, f"ambiguous YAML 1.1 boolean {value!r}: write true/false (or quote it)", node.start_mark
        )
    return yaml.SafeLoader.construct_yaml_bool(loader, node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def load_yaml(path: str | Path) -> Any:
    """Parse one YAML file strictly. Errors are ``ConfigError`` naming the file and line."""
    path = Path(path)
    src = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror or exc}", source=src) from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"file is {size} bytes, larger than the {MAX_CONFIG_BYTES}-byte limit", source=src)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", source=src) from None
    return parse_yaml(text, source=src)


def parse_yaml(text: str, *, source: str = "<string>") -> Any:
    """Parse YAML text strictly (see module docstring)."""
    if len(text.encode("utf-8", errors="replace")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"text larger than the {MAX_CONFIG_BYTES}-byte limit", source=source)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{problem} ({where})", source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from None
    except RecursionError:
        raise ConfigError("YAML nesting too deep", source=source) from None


# --------------------------------------------------------------------------- dataclass layer


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _convert(value: Any, tp: Any, path: str, source: str | None, field: dataclasses.Field | None = None) -> Any:
    def fail(msg: str) -> ConfigError:
        return ConfigError(msg, source=source, path=path)

    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _convert(value, opt, path, source, field)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise fail(f"expected {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) for a in allowed):
            raise fail(f"expected one of {list(allowed)}, got {_describe(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, path, source)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(f"expected bool (true/false), got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and math.isfinite(value):
                return int(value)
            raise fail(f"expected int, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"expected float, got {_describe(value)}")
        value = float(value)
        allow = bool(field and field.metadata.get("allow_nonfinite"))
        if not math.isfinite(value) and not allow:
            raise fail(f"expected a finite float, got {value}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise fail(f"expected str, got {_describe(value)} (quote it in YAML if it is meant as text)")
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise fail(f"expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]", source, field) for i, v in enumerate(value))
        if len(args) != len(value):
            raise fail(f"expected a list of {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, f"{path}[{i}]", source, field) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict or tp is dict:
        args = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise fail(f"expected a mapping, got {_describe(value)}")
        out = {}
        for k, v in value.items():
            key = _convert(k, args[0], f"{path}.{k}" if path else str(k), source)
            out[key] = _convert(v, args[1], f"{path}.{k}" if path else str(k), source, field)
        return types.MappingProxyType(out)
    raise fail(f"unsupported field type {_type_name(tp)}")


def _build_dataclass(cls: type[T], raw: Any, path: str, source: str | None) -> T:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping for {cls.__name__}, got {_describe(raw)}", source=source, path=path)
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = unknown[0]
        close = [n for n in fields if n.lower().startswith(str(key).lower()[:3])]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown key {key!r}{hint}; allowed: {sorted(fields)}",
            source=source,
            path=f"{path}.{key}" if path else str(key),
        )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], sub, source, f)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError("required key is missing", source=source, path=sub)
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc), source=source, path=path or None) from None
    return obj


def from_dict(cls: type[T], raw: Any, *, source: str | None = None) -> T:
    """Build dataclass ``cls`` from a parsed mapping, strictly."""
    return _build_dataclass(cls, raw, "", source)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value in YAML syntax) into (["a", "b", "c"], value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value", source="--set")
    key, _, val = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key", source="--set")
    return key.split("."), parse_yaml(val, source=f"--set {key}")


def apply_overrides(raw: dict, overrides: typing.Iterable[str]) -> dict:
    """Apply ``key.path=value`` overrides to a raw mapping (returns a new mapping)."""
    import copy

    raw = copy.deepcopy(raw) if raw else {}
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"cannot set {'.'.join(keys)}: {k!r} is not a mapping", source=f"--set {text}")
            node = nxt
        node[keys[-1]] = value
    return raw


def _in_mapping(raw: Any, keys: list[str]) -> bool:
    for k in keys:
        if not isinstance(raw, dict) or k not in raw:
            return False
        raw = raw[k]
    return True


@contextlib.contextmanager
def overrides_named(file_raw: Any, overrides: typing.Iterable[str]):
    """Report a ``ConfigError`` raised inside the block against the ``--set`` argument that caused it.

    ``file_raw`` is the mapping before the overrides. An error at a key an override set (or below it: a list item),
    or at a key that only exists because an override created it (``--set no_such.key=1`` -> unknown key
    ``no_such``), names ``--set <that argument>`` instead of the file, whose content is not at fault. A section's
    own check refusing a combination (error at ``mpc``, an override set ``mpc.horizon``) names both.
    """
    overrides = list(overrides)
    try:
        yield
    except ConfigError as exc:
        path = exc.key_path or ""
        inside, seen = [], set()
        for text in reversed(overrides):  # the last override of a key is the one in effect
            key = text.partition("=")[0].strip()
            if key in seen:
                continue
            seen.add(key)
            set_here = path == key or path.startswith((key + ".", key + "["))
            created = bool(path) and key.startswith(path + ".") and not _in_mapping(file_raw, path.split("."))
            if set_here or created:
                raise ConfigError(exc.message, source=f"--set {text}", path=exc.key_path) from None
            if key.startswith(path + ".") or not path:
                inside.append(text)
        if inside and exc.source:
            with_set = ", ".join(f"--set {t}" for t in reversed(inside))
            raise ConfigError(exc.message, source=f"{exc.source} with {with_set}", path=exc.key_path) from None
        raise


def load_config(cls: type[T], path: str | Path | None = None, *, overrides: typing.Iterable[str] = (),
                raw: dict | None = None) -> T:
    """Load dataclass ``cls`` from a YAML file (or ``raw`` mapping) with ``key=value`` overrides applied (an error
    caused by an override names the ``--set`` argument, not the file).
    """
    source = str(path) if path is not None else "<config>"
    if path is not None:
        raw = load_yaml(path)
    overrides = list(overrides)
    merged = apply_overrides(raw or {}, overrides)
    with overrides_named(raw, overrides):
        return _build_dataclass(cls, merged, "", source)


def to_dict(obj: Any, *, for_hash: bool = False) -> Any:
    """Dataclass (possibly nested, with mapping proxies and tuples) -> plain YAML-able data. ``for_hash``: leave out
    the fields marked ``metadata={"hash": "unless_default"}`` that are at their default (``config_hash``).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if for_hash and f.metadata.get("hash") == "unless_default":
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                if value == default:
                    continue
            out[f.name] = to_dict(value, for_hash=for_hash)
        return out
    if isinstance(obj, (dict, types.MappingProxyType)):
        return {k: to_dict(v, for_hash=for_hash) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v, for_hash=for_hash) for v in obj]
    return obj


def dump_yaml(obj: Any) -> str:
    """Serialize a config dataclass to YAML text (round-trips through ``load_config``)."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def config_hash(obj: Any) -> str:
    """Stable sha256 of a config's content (used in sidecars and run directories). A field declared with
    ``metadata={"hash": "unless_default"}`` (an option added later whose default keeps the old behaviour) counts only
    when set to another value, so adding it leaves the hashes of existing configs, and of the models trained from
    them, unchanged.
    """
    import hashlib
    import json

    return hashlib.sha256(json.dumps(to_dict(obj, for_hash=True), sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- field docs and flat parameters


def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` from the string literal written under each annotated field of ``cls``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:] + [None]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """One leaf field of a config schema as a flat parameter."""

    name: str
    """Dotted key path (``planner``, ``mpc.horizon``): the parameter name and the YAML key path at once."""
    default: Any
    """The field's value in the config the specs were made from (``str``, ``int``, ``float``, ``bool`` or a list)."""
    description: str
    """The docstring under the field."""
    constraints: str
    """Accepted values in words (``integer``, ``one of ['ilqr', 'cem']``, ``list of float``)."""


def _constraint_text(tp: Any, field: dataclasses.Field) -> str:
    if get_origin(tp) is Literal:
        return f"one of {list(get_args(tp))}"
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_constraint_text(args[0], field)}"
        return f"list of {len(args)}: " + ", ".join(_constraint_text(a, field) for a in args)
    if tp is float:
        return "number (.inf allowed)" if field.metadata.get("allow_nonfinite") else "finite number"
    names = {bool: "true or false", int: "integer", str: "string"}
    if tp in names:
        return names[tp]
    raise TypeError(f"{_type_name(tp)} cannot be a flat parameter (str, int, float, bool, Literal or tuple only)")


def parameter_specs(config: Any, *, exclude: typing.Collection[str] = (), prefix: str = "") -> list[ParameterSpec]:
    """Every leaf field of the dataclass instance ``config`` as a flat parameter, in field order; nested dataclass
    sections become dotted names (``mpc.horizon``); the default is the field's value in ``config``. Names in
    ``exclude`` are left out (``from_parameters`` then gives those fields their dataclass default).

    Fields of other types (mappings, optional values, sections inside lists) have no flat form: ``TypeError``.
    """
    hints = get_type_hints(type(config))
    docs = field_docs(type(config))
    out: list[ParameterSpec] = []
    for f in dataclasses.fields(config):
        name, value, tp = f"{prefix}{f.name}", getattr(config, f.name), hints[f.name]
        if not f.init or name in exclude:
            continue
        if dataclasses.is_dataclass(tp):
            out.extend(parameter_specs(value, exclude=exclude, prefix=f"{name}."))
            continue
        try:
            constraints = _constraint_text(tp, f)
        except TypeError as exc:
            raise TypeError(f"{type(config).__name__}.{f.name}: {exc}") from None
        out.append(ParameterSpec(name, list(value) if isinstance(value, tuple) else value, docs.get(f.name, ""),
                                 constraints))
    return out


def from_parameters(cls: type[T], values: typing.Mapping[str, Any], *, source: str | None = None) -> T:
    """Build dataclass ``cls`` from flat ``{dotted name: value}`` parameters (``parameter_specs``' names), with the
    checks of a YAML file: the error's ``key_path`` is the parameter name (or the section whose ``__post_init__``
    refused the combination).
    """
    raw: dict = {}
    for name, value in values.items():
        keys = name.split(".")
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        # ROS hands array parameters over as array.array (or lists): the loader takes lists
        is_list = isinstance(value, typing.Iterable) and not isinstance(value, (str, bytes, typing.Mapping))
        node[keys[-1]] = list(value) if is_list else value
    return _build_dataclass(cls, raw, "", source)
