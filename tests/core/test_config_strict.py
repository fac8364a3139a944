"""Strict YAML config loading: every class of bad input gives a ConfigError naming file and key path."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import pytest

from robot_rl.core.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    config_hash,
    dump_yaml,
    from_dict,
    from_parameters,
    load_config,
    parameter_specs,
    parse_yaml,
)


@dataclass(frozen=True)
class Inner:
    lr: float = 3e-4
    """Learning rate."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes."""
    window: tuple[float, int] = (0.5, 3)
    """A fixed-length pair of different types."""


@dataclass(frozen=True)
class Outer:
    name: str
    steps: int = 10
    use_gpu: bool = False
    mode: Literal["a", "b"] = "a"
    limit: float = field(default=math.inf, metadata={"allow_nonfinite": True})
    inner: Inner = Inner()
    seed: int | None = None

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


def write(tmp_path, text, name="exp.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_valid_config_roundtrips(tmp_path):
    p = write(tmp_path, "name: x\nsteps: 5\ninner:\n  lr: 0.001\n  hidden: [64, 64]\n  window: [1, 2]\nlimit: .inf\n")
    cfg = load_config(Outer, p)
    assert cfg == Outer(name="x", steps=5, inner=Inner(lr=0.001, hidden=(64, 64), window=(1.0, 2)), limit=math.inf)
    again = load_config(Outer, write(tmp_path, dump_yaml(cfg), "again.yaml"))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\nstepz: 3\n", "stepz"),  # unknown key
        ("name: x\ninner:\n  lrr: 1\n", "inner.lrr"),  # unknown nested key
        ("name: x\nname: y\n", "duplicate key 'name'"),  # duplicate key
        ("name: x\nsteps: ten\n", "steps: expected int"),  # wrong type
        ("name: x\nsteps: true\n", "steps: expected int"),  # bool is not int
        ("name: 3.10\n", "name: expected str"),  # 3.10 would silently become 3.1
        ("name: x\nuse_gpu: no\n", "ambiguous YAML 1.1 boolean"),  # yes/no booleans refused
        ("name: x\ninner:\n  lr: .nan\n", "inner.lr: expected a finite float"),  # non-finite
        ("name: x\ninner:\n  lr: -.inf\n", "inner.lr: expected a finite float"),
        ("name: x\nmode: c\n", "mode: expected one of"),
        ("name: x\ninner:\n  hidden: [64, big]\n", "inner.hidden[1]: expected int"),
        ("name: x\ninner:\n  window: [0.1, 0.2]\n", "inner.window[1]: expected int"),
        ("name: x\ninner:\n  window: [0.1]\n", "inner.window: expected a list of 2 items"),
        ("steps: 3\n", "name: required key is missing"),
        ("name: x\nsteps: -1\n", "steps must be >= 0"),  # __post_init__ validation
        ("name: !!python/object/apply:os.system ['echo pwned']\n", "could not determine a constructor"),
        ("name: x\n  bad indent: [\n", "line"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_yaml_names_file_and_key(tmp_path, text, fragment):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(Outer, p)
    msg = str(info.value)
    assert str(p) in msg
    assert fragment in msg


def test_python_tag_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"
    p = write(tmp_path, f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        load_config(Outer, p)
    assert not marker.exists()


def test_huge_file_refused(tmp_path):
    p = write(tmp_path, "name: x\n" + "#" * (MAX_CONFIG_BYTES + 10) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(Outer, p)


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_overrides_are_typed_and_checked(tmp_path):
    p = write(tmp_path, "name: x\n")
    cfg = load_config(Outer, p, overrides=["inner.lr=0.01", "steps=7", "inner.hidden=[32]"])
    assert cfg.inner.lr == 0.01 and cfg.steps == 7 and cfg.inner.hidden == (32,)
    with pytest.raises(ConfigError, match="inner.lr: expected float"):
        load_config(Outer, p, overrides=["inner.lr=fast"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(Outer, p, overrides=["inner.lr"])
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(Outer, p, overrides=["nope=1"])


@pytest.mark.parametrize(("overrides", "where"), [
    (["nope=1"], "--set nope=1: nope: unknown key"),  # a key the file never had
    (["nope.deeper=1"], "--set nope.deeper=1: nope: unknown key"),  # a section the override created
    (["inner.nope=1"], "--set inner.nope=1: inner.nope: unknown key"),
    (["inner.lr=fast"], "--set inner.lr=fast: inner.lr: expected float"),
    (["inner.hidden=[1, x]"], "--set inner.hidden=[1, x]: inner.hidden[1]: expected int"),
    (["steps=1", "steps=-1"], "with --set steps=-1: steps must be >= 0"),  # the one in effect; top-level check
    (["name.x=1"], "--set name.x=1: cannot set name.x: 'name' is not a mapping"),
])
def test_override_errors_name_the_set_argument(tmp_path, overrides, where):
    p = write(tmp_path, "name: x\ninner:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, p, overrides=overrides)
    assert where in str(info.value)
    if "with --set" not in where:
        assert str(p) not in str(info.value)


def test_file_errors_still_name_the_file(tmp_path):
    p = write(tmp_path, "name: x\ninner:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: inner.lr: expected float"):
        load_config(Outer, p, overrides=["steps=3", "inner.hidden=[8]"])


def test_fuzzed_yaml_never_raises_anything_but_config_error():
    """Random byte soups and structure mutations: only ConfigError, never another exception type."""
    import random

    rng = random.Random(0)
    base = "name: x\nsteps: 5\ninner:\n  lr: 0.001\n  hidden: [64, 64]\n"
    alphabet = list(":-[]{}!&*#|>'\"%@`\n\t ,.?0123456789abcxyz") + ["!!python/name:os.system", "<<: *a", "&a"]
    for _ in range(400):
        chars = list(base)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(chars) + 1)
            if rng.random() < 0.5 and chars:
                del chars[min(pos, len(chars) - 1)]
            else:
                chars.insert(pos, rng.choice(alphabet))
        text = "".join(chars)
        try:
            from_dict(Outer, parse_yaml(text, source="fuzz"), source="fuzz")
        except ConfigError:
            pass


@dataclass(frozen=True)
class Section:
    gain: float = 2.0
    """Gain [N m s/rad]."""
    modes: tuple[str, ...] = ("a",)
    """Modes, in order."""
    budget_s: float = field(default=math.inf, metadata={"allow_nonfinite": True})
    """Budget [s]."""

    def __post_init__(self):
        if self.gain <= 0:
            raise ValueError(f"gain must be > 0, got {self.gain}")


@dataclass(frozen=True)
class Node:
    robot: str
    """Robot profile."""
    kind: Literal["x", "y"] = "x"
    """Kind of thing."""
    section: Section = Section()


def test_flat_parameters_follow_the_schema():
    cfg = Node(robot="arm", section=Section(gain=3.0, modes=("a", "b")))
    specs = parameter_specs(cfg)
    assert [(s.name, s.default, s.description, s.constraints) for s in specs] == [
        ("robot", "arm", "Robot profile.", "string"),
        ("kind", "x", "Kind of thing.", "one of ['x', 'y']"),
        ("section.gain", 3.0, "Gain [N m s/rad].", "finite number"),
        ("section.modes", ["a", "b"], "Modes, in order.", "list of string"),
        ("section.budget_s", math.inf, "Budget [s].", "number (.inf allowed)"),
    ]
    values = {s.name: s.default for s in specs}
    assert from_parameters(Node, values) == cfg
    # ints for floats and tuples for lists are accepted, as ROS hands them over
    assert from_parameters(Node, {**values, "section.gain": 4, "section.modes": ("b",)}).section == Section(4.0, ("b",))
    left = parameter_specs(cfg, exclude=("section.modes", "kind"))
    assert [s.name for s in left] == ["robot", "section.gain", "section.budget_s"]
    assert from_parameters(Node, {s.name: s.default for s in left}).section.modes == ("a",)  # the field default


@pytest.mark.parametrize("name, value, key_path, message", [
    ("kind", "z", "kind", "expected one of ['x', 'y'], got str 'z'"),
    ("section.gain", "fast", "section.gain", "expected float, got str 'fast'"),
    ("section.gain", math.nan, "section.gain", "expected a finite float, got nan"),
    ("section.gain", 0.0, "section", "gain must be > 0, got 0.0"),
    ("section.modes", [1], "section.modes[0]", "expected str, got int 1 (quote it in YAML if it is meant as text)"),
])
def test_flat_parameter_errors_name_the_parameter(name, value, key_path, message):
    values = {s.name: s.default for s in parameter_specs(Node(robot="arm"))}
    with pytest.raises(ConfigError) as err:
        from_parameters(Node, {**values, name: value})
    assert (err.value.key_path, err.value.message) == (key_path, message)


def test_fields_without_a_flat_form_are_refused():
    with pytest.raises(TypeError, match=r"Outer.seed: int \| None cannot be a flat parameter"):
        parameter_specs(Outer(name="x"))
