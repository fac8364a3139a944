"""Domain-randomization profiles: strict YAML schema (``sim/randomization/<name>.yaml``), see docs/randomization.md.

Every range is relative to the nominal model remembered when the env was built. Model terms compute
``value = nominal * scale + offset`` with ``scale ~ U(scale[0], scale[1])`` and ``offset ~ U(offset[0], offset[1])``
sampled independently per matched element. ``targets`` is ``"all"`` or a regular expression matched (fullmatch)
against the element names (bodies, geoms, joints or actuators depending on the term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from robot_rl.core.config import ConfigError, from_dict, load_yaml


def _check_range(name: str, rng: tuple, lo_min: float | None = None) -> None:
    # Fixed-length tuples are declared as tuple[float, ...] and checked here (see docs/randomization.md).
    if len(rng) != 2:
        raise ValueError(f"{name}: expected [low, high], got {len(rng)} values")
    if rng[0] > rng[1]:
        raise ValueError(f"{name}: lower bound {rng[0]} > upper bound {rng[1]}")
    if lo_min is not None and rng[0] < lo_min:
        raise ValueError(f"{name}: lower bound {rng[0]} < {lo_min}")


def _check_mode(mode: str, interval_steps: int) -> None:
    if mode == "interval" and interval_steps < 1:
        raise ValueError(f"interval_steps must be >= 1 when mode is 'interval', got {interval_steps}")
    if mode == "reset" and interval_steps != 0:
        raise ValueError(f"interval_steps {interval_steps} given but mode is 'reset' (set mode: interval)")


@dataclass(frozen=True)
class ModelTerm:
    """A model parameter randomized as ``nominal * scale + offset`` per matched element."""

    targets: str = "all"
    """``"all"`` or a regex (fullmatch) on element names."""
    scale: tuple[float, ...] = (1.0, 1.0)
    """Multiplicative factor range [-] (>= 0)."""
    offset: tuple[float, ...] = (0.0, 0.0)
    """Additive range in the parameter's units (kg, N s/m, kg m^2, N, ...)."""
    mode: Literal["reset", "interval"] = "reset"
    """Resample at every reset, or also every ``interval_steps`` control steps."""
    interval_steps: int = 0
    """Control steps between resamples in ``interval`` mode (0 in ``reset`` mode)."""

    def __post_init__(self):
        _check_range("scale", self.scale, 0.0)
        _check_range("offset", self.offset)
        _check_mode(self.mode, self.interval_steps)


@dataclass(frozen=True)
class ComTerm:
    """Center-of-mass offset of matched bodies: each axis ``+= U(-max_offset_m, max_offset_m)``."""

    targets: str = "all"
    """``"all"`` or a regex (fullmatch) on body names."""
    max_offset_m: float = 0.0
    """Largest offset per axis [m]."""
    mode: Literal["reset", "interval"] = "reset"
    interval_steps: int = 0

    def __post_init__(self):
        if self.max_offset_m < 0:
            raise ValueError(f"max_offset_m must be >= 0, got {self.max_offset_m}")
        _check_mode(self.mode, self.interval_steps)


@dataclass(frozen=True)
class LatencyTerm:
    """Action delay in control steps, sampled uniformly per episode (integers, inclusive)."""

    steps: tuple[int, ...] = (0, 0)
    """Range of delays [control steps]."""

    def __post_init__(self):
        _check_range("steps", self.steps, 0)
        if self.steps[1] > 50:
            raise ValueError(f"steps: upper bound {self.steps[1]} > 50 control steps is not a latency")


@dataclass(frozen=True)
class ObservationNoiseTerm:
    """Sensor noise on measured joints: per-step white noise plus a per-episode bias (Gaussian std)."""

    position_std: float = 0.0
    """White noise on joint positions [rad or m] (dm_control tasks: on every flat observation entry)."""
    velocity_std: float = 0.0
    """White noise on joint velocities [rad/s or m/s]."""
    position_bias_std: float = 0.0
    """Per-episode bias on joint positions [rad or m] (dm_control tasks: on every entry)."""
    velocity_bias_std: float = 0.0
    """Per-episode bias on joint velocities [rad/s or m/s]."""

    def __post_init__(self):
        for k in ("position_std", "velocity_std", "position_bias_std", "velocity_bias_std"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)}")


@dataclass(frozen=True)
class ActionNoiseTerm:
    """White Gaussian noise on the normalized action (then clipped to [-1, 1])."""

    std: float = 0.0
    """Standard deviation [normalized action units]."""

    def __post_init__(self):
        if self.std < 0:
            raise ValueError(f"std must be >= 0, got {self.std}")


@dataclass(frozen=True)
class PushTerm:
    """Random external pushes (``data.xfrc_applied``) on a random matched body at random intervals."""

    targets: str = "all"
    """``"all"`` or a regex (fullmatch) on body names."""
    max_force_n: float = 0.0
    """Largest force magnitude [N] (uniform magnitude, uniform direction)."""
    max_torque_nm: float = 0.0
    """Largest torque magnitude [N m]."""
    interval_steps: tuple[int, ...] = (50, 100)
    """Control steps between push starts (uniform, inclusive)."""
    duration_steps: int = 5
    """Control steps a push lasts."""

    def __post_init__(self):
        if self.max_force_n < 0 or self.max_torque_nm < 0:
            raise ValueError("max_force_n and max_torque_nm must be >= 0")
        _check_range("interval_steps", self.interval_steps, 1)
        if self.duration_steps < 1:
            raise ValueError(f"duration_steps must be >= 1, got {self.duration_steps}")


@dataclass(frozen=True)
class InitialStateTerm:
    """Extra spread of the task's initial state: uniform noise on hinge/slide joint positions and all velocities."""

    qpos: float = 0.0
    """Half-width of the uniform noise on hinge/slide positions [rad or m]."""
    qvel: float = 0.0
    """Half-width of the uniform noise on every velocity [rad/s or m/s]."""

    def __post_init__(self):
        if self.qpos < 0 or self.qvel < 0:
            raise ValueError("qpos and qvel half-widths must be >= 0")


@dataclass(frozen=True)
class RandomizationConfig:
    """A randomization profile; every term is optional (null = not randomized)."""

    body_mass: ModelTerm | None = None
    """Body masses [kg]; the body's inertia is scaled by the same factor (same shape, denser material)."""
    body_inertia: ModelTerm | None = None
    """Extra independent scale of body inertias (per body, all three principal moments) [kg m^2]."""
    com_offset: ComTerm | None = None
    friction: ModelTerm | None = None
    """Sliding friction coefficient of geoms [-]."""
    joint_damping: ModelTerm | None = None
    """Joint damping [N m s/rad or N s/m] (per dof of matched joints)."""
    armature: ModelTerm | None = None
    """Rotor inertia added to the dof [kg m^2 or kg]."""
    frictionloss: ModelTerm | None = None
    """Dry joint friction [N m or N] (nominal is often 0: use ``offset``)."""
    actuator_gain: ModelTerm | None = None
    """Motor strength: actuator gain (and position/velocity servo bias gains) scale [-]."""
    action_latency: LatencyTerm | None = None
    observation_noise: ObservationNoiseTerm | None = None
    action_noise: ActionNoiseTerm | None = None
    push: PushTerm | None = None
    initial_state: InitialStateTerm | None = None


def load_randomization(spec) -> RandomizationConfig | None:
    """None -> None; a ``RandomizationConfig`` as is; a dict; a name in ``sim/randomization/``; or a YAML path.

    A profile file may start from another one with ``base: <name or path>``: the base's terms are loaded first (its
    own ``base`` too), then each term the file names replaces the fields it gives, and ``term: null`` drops the term.
    """
    if spec is None or isinstance(spec, RandomizationConfig):
        return spec
    if isinstance(spec, dict):
        return from_dict(RandomizationConfig, spec, source="<randomization>")
    path = _profile_path(str(spec), None)
    return from_dict(RandomizationConfig, _profile_raw(path, ()), source=str(path))


MAX_BASE_DEPTH = 8
"""Longest chain of ``base:`` profiles (a guard against runaway chains; cycles are reported as such)."""


def _profile_path(text: str, referrer):
    from robot_rl.core.assets import find_asset

    rel = text if text.endswith((".yaml", ".yml")) else f"sim/randomization/{text}.yaml"
    try:
        return find_asset(rel).resolve()
    except FileNotFoundError as exc:
        where = f"{referrer}: base" if referrer is not None else rel
        raise ConfigError(str(exc), source=where) from None


def _profile_raw(path, chain: tuple) -> dict:
    """The profile at ``path`` as a plain mapping with its ``base`` chain merged in."""
    raw = load_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of terms, got {type(raw).__name__}", source=str(path))
    if "base" not in raw:
        return raw
    raw = dict(raw)
    base = raw.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"base: expected a profile name or path, got {base!r}", source=str(path))
    base_path = _profile_path(base, path)
    chain = (*chain, path)
    if base_path in chain:
        loop = " -> ".join(p.name for p in (*chain, base_path))
        raise ConfigError(f"base: profiles include each other ({loop})", source=str(path))
    if len(chain) > MAX_BASE_DEPTH:
        raise ConfigError(f"base: more than {MAX_BASE_DEPTH} profiles chained", source=str(path))
    merged = _profile_raw(base_path, chain)
    for term, value in raw.items():
        if value is None:
            merged.pop(term, None)
        elif isinstance(value, dict) and isinstance(merged.get(term), dict):
            merged[term] = {**merged[term], **value}
        else:
            merged[term] = value
    return merged
