"""Pure command safety filter: finite checks, state plausibility, timestamps, stale-sensor watchdog, clamp, rate limit,
latched e-stop. Pure numpy (no ROS, no torch), so it is tested on its own and every command path can share it.

Usage in a node (``now_s`` is a steady clock, e.g. ``time.monotonic()``, never the ROS clock: a watchdog on sim time
stops firing when the sim clock freezes)::

    safety = SafetyFilter(profile)
    # /joint_states callback
    safety.on_joint_state(msg.name, msg.position, msg.velocity, msg.effort, stamp_s, time.monotonic(),
                          clock_s=node_clock_now_s)
    # control timer
    command, status = safety.filter(policy_action, time.monotonic(), out=command_buffer)

Behaviour (details and time bounds in docs/safety.md):

* A joint-state message is *rejected* (counted, never used) when a profile joint is missing, a field has the wrong
  length, a value is non-finite, the state is impossible (position beyond limits + ``position_margin``, speed above
  ``velocity_factor`` x ``velocity_max``), or its stamp is non-finite, repeated/backwards, older than ``max_age_s`` or
  from the future (the last two need ``clock_s``, the receipt time on the stamp's clock). Non-finite, impossible and
  missing-joint messages are *faults*: the next ``filter`` call returns the safe command. Malformed messages (array
  lengths that do not match ``names``, values that are not numbers) and bad stamps are only rejected, like a lost
  message: the last accepted state stays in use until the watchdog below turns a run of them into a fault.
* No accepted message for ``sensor_timeout_s`` of steady time -> fault (stale sensor).
* After any fault, normal operation resumes only after ``recover_after`` consecutive accepted messages.
* ``filter``: e-stop latched, fault, non-finite or malformed command -> safe command; otherwise clamp to the command
  limits, then limit the change to ``max_command_rate`` x dt (dt capped at one control period).
* Safe command by interface: effort -> zero, or ``-damping_gain x velocity`` (``safe_command: damping``) from a fresh
  measurement only; position -> hold the last accepted measured position; velocity -> zero. Always clamped to limits.
* ``estop(reason)`` latches until ``reset()``; nothing else clears it.
* Robots with an IMU (``profile.imu_site``): ``on_imu`` checks each orientation / angular velocity sample. A
  non-finite or malformed sample (not a unit quaternion within 10 %) is a fault; no accepted IMU sample for
  ``sensor_timeout_s`` is a fault (stale IMU), and normal operation resumes only with a fresh IMU sample too. A base
  tilt beyond ``fall_tilt`` [rad] from upright latches the e-stop (a fall; the node also trips its persistent
  latch). ``imu_orientation`` (w, x, y, z) and ``imu_angular_velocity`` hold the last accepted sample.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = ("OK", "WARN", "ERROR")

COUNTERS = (
    "messages", "accepted", "rejected_nonfinite", "rejected_impossible", "rejected_missing_joint",
    "rejected_malformed", "rejected_backwards", "rejected_old", "rejected_future", "stale_events",
    "commands", "commands_nonfinite", "commands_malformed", "commands_clamped", "commands_rate_limited",
    "safe_commands", "estops", "clock_backwards",
    "imu_messages", "imu_accepted", "imu_rejected_nonfinite", "imu_rejected_malformed", "imu_stale_events", "falls",
)


class SafetyStatus(NamedTuple):
    """Result of one ``filter`` call.

    ``level`` is OK/WARN/ERROR (0/1/2, diagnostic_msgs levels), ``mode`` one of ``normal``, ``waiting`` (no valid
    sensor data yet), ``fault`` (sensor fault, recovering), ``estop``; ``safe`` is True when the safe command was
    output; ``message`` says why.
    """

    level: int
    mode: str
    safe: bool
    clamped: bool
    rate_limited: bool
    message: str


class SafetyFilter:
    """Safety filter for one robot profile (see module docstring).

    Shapes: joint arrays follow ``profile.joints`` (n_joints); commands follow ``profile.command_joints`` (n_cmd).
    Units: the robot's (rad or m, rad/s or m/s; command units of ``profile.command_interface``); times in seconds.
    Not thread-safe: call ``on_joint_state`` / ``filter`` / ``estop`` from one thread (a single-threaded executor) or
    under one lock.
    """

    def __init__(self, profile, *, max_age_s: float | None = None, future_tolerance_s: float | None = None,
                 imu: bool | None = None):
        """``max_age_s``/``future_tolerance_s`` [s] bound ``clock_s - stamp_s``; both default to sensor_timeout_s.
        ``imu``: require IMU samples (``on_imu``) for normal operation; default: when the profile has an imu_site.
        """
        if not profile.command_min or not profile.command_max:
            raise ValueError(f"robot profile {profile.name!r} has no command limits (load it with load_profile)")
        self.profile = profile
        lim = profile.safety
        self.limits = lim
        self.interface = profile.command_interface
        self.joint_names = tuple(j.name for j in profile.joints)
        self.command_joints = tuple(profile.command_joints)
        self.n_joints = len(self.joint_names)
        self.n_cmd = len(self.command_joints)
        self.max_age_s = lim.sensor_timeout_s if max_age_s is None else float(max_age_s)
        self.future_tolerance_s = lim.sensor_timeout_s if future_tolerance_s is None else float(future_tolerance_s)
        self.cmd_min = np.asarray(profile.command_min, dtype=np.float64)
        self.cmd_max = np.asarray(profile.command_max, dtype=np.float64)
        pos_min = np.array([j.position_min for j in profile.joints], dtype=np.float64)
        pos_max = np.array([j.position_max for j in profile.joints], dtype=np.float64)
        self._pos_lo = pos_min - lim.position_margin  # -inf stays -inf for continuous joints
        self._pos_hi = pos_max + lim.position_margin
        self._vel_max = lim.velocity_factor * np.array([j.velocity_max for j in profile.joints], dtype=np.float64)
        self._cmd_idx = np.array([self.joint_names.index(c) for c in self.command_joints], dtype=np.intp)
        self._max_step_dt = profile.control_period_s
        # Preallocated state (the hot path writes into these).
        self.position = np.zeros(self.n_joints)
        """Last accepted measured positions, profile joint order [rad or m]."""
        self.velocity = np.zeros(self.n_joints)
        """Last accepted measured velocities, profile joint order [rad/s or m/s]."""
        self._pos_buf = np.zeros(self.n_joints)
        self._vel_buf = np.zeros(self.n_joints)
        self._eff_buf = np.zeros(self.n_joints)
        self._bad = np.zeros(self.n_joints, dtype=bool)
        self._cmd_vals = [0.0] * self.n_cmd
        self._prev = [0.0] * self.n_cmd
        """Last output command (plain floats): the rate limit's reference."""
        self._cmd_lo, self._cmd_hi = self.cmd_min.tolist(), self.cmd_max.tolist()
        self._names_key: tuple = ()
        self._names_idx = np.zeros(self.n_joints, dtype=np.intp)
        # Plain-float copies for the per-message fast path.
        self._idx = [0] * self.n_joints
        self._lo, self._hi = self._pos_lo.tolist(), self._pos_hi.tolist()
        self._vmax = self._vel_max.tolist()
        self._plist, self._vlist = [0.0] * self.n_joints, [0.0] * self.n_joints
        self._names_missing: list[str] = []
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.requires_imu = bool(profile.imu_site) if imu is None else bool(imu)
        self.imu_orientation = np.array([1.0, 0.0, 0.0, 0.0])
        """Last accepted IMU orientation, unit quaternion w, x, y, z (IMU frame -> world)."""
        self.imu_angular_velocity = np.zeros(3)
        """Last accepted IMU angular velocity, IMU frame [rad/s]."""
        self.tilt = 0.0
        """Base tilt from upright of the last accepted IMU orientation [rad]."""
        self._cos_fall = math.cos(lim.fall_tilt) if lim.fall_tilt < math.pi else -math.inf
        self._imu_rx_s = -math.inf
        self._has_state = False
        self._last_stamp = -math.inf
        self._last_rx_s = -math.inf
        self._last_filter_s: float | None = None
        self._has_output = False
        self._streak = 0
        self._mode = "waiting"
        self._fault = "waiting for the first joint states"
        self._estop_reason: str | None = None
        self._last_reject = ""
        self._last_status = SafetyStatus(ERROR, "waiting", True, False, False, self._fault)

    # ------------------------------------------------------------------ sensor side

    def on_joint_state(self, names, positions, velocities, efforts=None, stamp_s: float = 0.0,
                       now_s: float = 0.0, *, clock_s: float | None = None) -> bool:
        """Check one ``/joint_states`` message; return True if accepted.

        ``names``: joint names of the message (any order, extra joints ignored); ``positions``/``velocities``
        (and ``efforts`` if non-empty): same length as ``names``. ``stamp_s`` [s]: the message header stamp;
        ``now_s`` [s]: receipt time on the steady clock; ``clock_s`` [s]: receipt time on the stamp's clock (the
        node's ROS clock) - enables the old/future checks.

        One function on purpose: it runs on every ``/joint_states`` message (about 1.6 us for the cart-pole), where
        each extra Python call would add about 0.05 us; the fast path keeps the limits in locals for the same reason.
        """
        self.counts["messages"] += 1
        # ---- timestamps (rejected and counted; the watchdog turns a run of rejections into a fault)
        stamp_s = float(stamp_s)
        if not math.isfinite(stamp_s):
            return self._reject("rejected_malformed", f"non-finite header stamp {stamp_s}", fault=False)
        if stamp_s <= self._last_stamp:
            return self._reject("rejected_backwards",
                                f"stamp {stamp_s:.6f} s not after last accepted {self._last_stamp:.6f} s", fault=False)
        if clock_s is not None:
            age = float(clock_s) - stamp_s
            if age > self.max_age_s:
                return self._reject("rejected_old", f"stamp {age:.4f} s old (max {self.max_age_s} s)", fault=False)
            if -age > self.future_tolerance_s:
                return self._reject("rejected_future", f"stamp {-age:.4f} s in the future "
                                    f"(tolerance {self.future_tolerance_s} s)", fault=False)
        # ---- map by name (cached while the message layout does not change). A missing joint is a fault (the driver
        # lost a joint); a message whose arrays do not match its names says nothing about the robot, so it is
        # dropped like a lost message (ros2_controllers' joint_trajectory_controller likewise drops a trajectory
        # whose point arrays do not match its joint_names and keeps running) and the watchdog bounds how long the
        # last accepted state is used if no good message follows.
        key = tuple(names)
        if key != self._names_key:
            self._map_names(key)
        if self._names_missing:
            return self._reject("rejected_missing_joint", f"joint_states lacks joint(s) {self._names_missing}")
        n = len(key)
        for field, values in (("position", positions), ("velocity", velocities)):
            if len(values) != n:
                return self._reject("rejected_malformed", f"{field} has {len(values)} values for {n} names",
                                    fault=False)
        has_effort = efforts is not None and len(efforts) > 0
        if has_effort and len(efforts) != n:
            return self._reject("rejected_malformed", f"effort has {len(efforts)} values for {n} names",
                                fault=False)
        # ---- fast path: plain float loop (a few joints: cheaper than a dozen numpy calls); any doubt -> slow path
        idx, lo, hi, vmax, pbuf, vbuf = self._idx, self._lo, self._hi, self._vmax, self._plist, self._vlist
        isfinite = math.isfinite
        try:
            for k in range(self.n_joints):
                i = idx[k]
                p = float(positions[i])
                v = float(velocities[i])
                if not (lo[k] <= p <= hi[k] and -vmax[k] <= v <= vmax[k] and isfinite(p)) or \
                        (has_effort and not isfinite(float(efforts[i]))):
                    break
                pbuf[k] = p
                vbuf[k] = v
            else:
                k = -1
        except (TypeError, ValueError):
            k = 0
        if k >= 0:
            rejected = self._check_values(positions, velocities, efforts, has_effort)
            if rejected is not None:
                return rejected
            pbuf[:] = self._pos_buf.tolist()
            vbuf[:] = self._vel_buf.tolist()
        # ---- accepted
        self.position[:] = pbuf
        self.velocity[:] = vbuf
        self._has_state = True
        self._last_stamp = stamp_s
        self._last_rx_s = float(now_s)
        self.counts["accepted"] += 1
        self._streak += 1
        if self._mode in ("waiting", "fault") and self._streak >= self.limits.recover_after:
            if self.requires_imu and now_s - self._imu_rx_s > self.limits.sensor_timeout_s:
                if self._mode == "waiting" or "IMU" not in self._fault:
                    self._fault = ("waiting for the first IMU sample" if self._imu_rx_s == -math.inf else
                                   f"IMU stale for {now_s - self._imu_rx_s:.4f} s "
                                   f"(timeout {self.limits.sensor_timeout_s} s)")
                return True
            self._mode = "normal"
            self._fault = ""
        return True

    def on_imu(self, orientation_wxyz, angular_velocity, now_s: float) -> bool:
        """Check one IMU sample: orientation quaternion (w, x, y, z; IMU frame -> world) and angular velocity (IMU
        frame [rad/s]) received at ``now_s`` (steady clock). Returns True if accepted. Non-finite or malformed ->
        fault; tilt beyond ``fall_tilt`` -> e-stop latched (the sample is still accepted: it is a true measurement).
        """
        c = self.counts
        c["imu_messages"] += 1
        try:
            w, x, y, z = (float(v) for v in orientation_wxyz)
            gx, gy, gz = (float(v) for v in angular_velocity)
        except (TypeError, ValueError) as exc:
            return self._reject("imu_rejected_malformed", f"IMU sample is not 4 + 3 numbers ({exc})")
        isfinite = math.isfinite
        if not (isfinite(w) and isfinite(x) and isfinite(y) and isfinite(z)):
            return self._reject("imu_rejected_nonfinite", f"non-finite IMU orientation {[w, x, y, z]}")
        if not (isfinite(gx) and isfinite(gy) and isfinite(gz)):
            return self._reject("imu_rejected_nonfinite", f"non-finite IMU angular velocity {[gx, gy, gz]}")
        norm = math.sqrt(w * w + x * x + y * y + z * z)
        if not 0.9 <= norm <= 1.1:
            return self._reject("imu_rejected_malformed", f"IMU orientation {[w, x, y, z]} is not a unit quaternion "
                                f"(norm {norm:.4g})")
        q = self.imu_orientation
        q[0], q[1], q[2], q[3] = w / norm, x / norm, y / norm, z / norm
        g = self.imu_angular_velocity
        g[0], g[1], g[2] = gx, gy, gz
        cos_tilt = 1.0 - 2.0 * (q[1] * q[1] + q[2] * q[2])  # body z axis . world z
        self.tilt = math.acos(min(1.0, max(-1.0, cos_tilt)))
        self._imu_rx_s = float(now_s)
        c["imu_accepted"] += 1
        if cos_tilt < self._cos_fall and self._estop_reason is None:
            c["falls"] += 1
            self.estop(f"fall detected: base tilt {self.tilt:.3f} rad beyond fall_tilt {self.limits.fall_tilt} rad")
        return True

    def _check_values(self, positions, velocities, efforts, has_effort: bool) -> bool | None:
        """Slow path with the exact diagnosis: rejection (False) naming field and joint, or None if all is well."""
        try:
            np.take(np.asarray(positions, dtype=np.float64), self._names_idx, out=self._pos_buf)
            np.take(np.asarray(velocities, dtype=np.float64), self._names_idx, out=self._vel_buf)
            if has_effort:
                np.take(np.asarray(efforts, dtype=np.float64), self._names_idx, out=self._eff_buf)
        except (TypeError, ValueError) as exc:
            return self._reject("rejected_malformed", f"joint_states values are not numbers ({exc})", fault=False)
        # ---- finite
        for field, buf, used in (("position", self._pos_buf, True), ("velocity", self._vel_buf, True),
                                 ("effort", self._eff_buf, has_effort)):
            if used and not np.isfinite(buf, out=self._bad).all():
                i = int(np.argmin(self._bad))
                return self._reject("rejected_nonfinite",
                                    f"non-finite {field} {buf[i]} for joint {self.joint_names[i]!r}")
        # ---- plausible
        np.less(self._pos_buf, self._pos_lo, out=self._bad)
        np.logical_or(self._bad, np.greater(self._pos_buf, self._pos_hi), out=self._bad)
        if self._bad.any():
            i = int(np.argmax(self._bad))
            j = self.profile.joints[i]
            return self._reject("rejected_impossible", f"position {self._pos_buf[i]:.4g} of joint {j.name!r} beyond "
                                f"limits [{j.position_min}, {j.position_max}] + margin {self.limits.position_margin}")
        np.greater(np.abs(self._vel_buf), self._vel_max, out=self._bad)
        if self._bad.any():
            i = int(np.argmax(self._bad))
            return self._reject("rejected_impossible", f"velocity {self._vel_buf[i]:.4g} of joint "
                                f"{self.joint_names[i]!r} above {self._vel_max[i]:.4g} "
                                f"({self.limits.velocity_factor} x velocity_max)")
        return None

    def _map_names(self, key: tuple) -> None:
        pos = {name: i for i, name in enumerate(key)}
        self._names_missing = [n for n in self.joint_names if n not in pos]
        if not self._names_missing:
            self._idx = [pos[n] for n in self.joint_names]
            self._names_idx[:] = self._idx
        self._names_key = key

    def _reject(self, counter: str, message: str, fault: bool = True) -> bool:
        self.counts[counter] += 1
        self._streak = 0
        self._last_reject = f"{counter}: {message}"
        if fault:
            self._enter_fault(message)
        return False

    def _enter_fault(self, message: str) -> None:
        self._streak = 0
        self._fault = message
        if self._mode != "estop":
            self._mode = "fault" if self._has_state or self._mode == "normal" else "waiting"

    # ------------------------------------------------------------------ command side

    def filter(self, command, now_s: float, *, out: np.ndarray | None = None) -> tuple[np.ndarray, SafetyStatus]:
        """Return the command to send (float64 [n_cmd], robot units) and its status.

        ``command``: the policy / controller output [n_cmd] (or [1, n_cmd]) in robot units; ``now_s`` [s] steady
        clock. ``out``: optional preallocated float64 [n_cmd] buffer to write into (returned).
        """
        c = self.counts
        c["commands"] += 1
        now_s = float(now_s)
        dt = 0.0 if self._last_filter_s is None else now_s - self._last_filter_s
        if dt < 0 or not math.isfinite(now_s):
            c["clock_backwards"] += 1
            self._enter_fault(f"steady clock went backwards by {-dt:.6f} s")
            dt = 0.0
        else:
            self._last_filter_s = now_s
        # ---- watchdog (steady clock)
        if self._mode == "normal" and now_s - self._last_rx_s > self.limits.sensor_timeout_s:
            c["stale_events"] += 1
            self._enter_fault(f"joint_states stale for {now_s - self._last_rx_s:.4f} s "
                              f"(timeout {self.limits.sensor_timeout_s} s)")
        if self.requires_imu and self._mode == "normal" and now_s - self._imu_rx_s > self.limits.sensor_timeout_s:
            c["imu_stale_events"] += 1
            self._enter_fault(f"IMU stale for {now_s - self._imu_rx_s:.4f} s "
                              f"(timeout {self.limits.sensor_timeout_s} s)")
        if out is None:
            out = np.empty(self.n_cmd)
        if self._estop_reason is not None:
            return self._safe(out, now_s, ERROR, "estop", f"e-stop latched: {self._estop_reason}")
        if self._mode != "normal":
            return self._safe(out, now_s, ERROR, self._mode, f"{self._mode}: {self._fault}")
        # ---- plain-float loop over the few commands: check all, clamp, rate limit against the last output
        cmd = command.reshape(-1) if isinstance(command, np.ndarray) else command
        try:
            n = len(cmd)
        except TypeError:
            n = -1
        if n != self.n_cmd:
            c["commands_malformed"] += 1
            return self._safe(out, now_s, ERROR, "normal", f"command has {n if n >= 0 else 'no'} values, "
                              f"expected {self.n_cmd} for {list(self.command_joints)}")
        vals, prev, lo, hi = self._cmd_vals, self._prev, self._cmd_lo, self._cmd_hi
        try:
            for k in range(n):
                vals[k] = float(cmd[k])
        except (TypeError, ValueError):
            c["commands_malformed"] += 1
            return self._safe(out, now_s, ERROR, "normal", "command is not numeric")
        isfinite = math.isfinite
        for v in vals:
            if not isfinite(v):
                c["commands_nonfinite"] += 1
                bad = [j for j, x in zip(self.command_joints, vals) if not isfinite(x)]
                return self._safe(out, now_s, ERROR, "normal", f"non-finite command for {bad}")
        if not self._has_output:  # the first command ramps from the fallback (a position robot: where it is)
            self._prev[:] = self.safe_command(now_s, out=out).tolist()
            self._has_output = True
        rate = self.limits.max_command_rate
        step = rate * min(dt, self._max_step_dt) if rate < math.inf else math.inf
        clamped = rate_limited = False
        for k in range(n):
            v = vals[k]
            u = lo[k] if v < lo[k] else (hi[k] if v > hi[k] else v)
            clamped = clamped or u != v
            d = u - prev[k]
            if d > step or d < -step:
                rate_limited = True
                u = prev[k] + (step if d > 0 else -step)
                u = lo[k] if u < lo[k] else (hi[k] if u > hi[k] else u)
            prev[k] = u
        out[:] = prev
        c["commands_clamped"] += clamped
        c["commands_rate_limited"] += rate_limited
        level = WARN if (clamped or rate_limited) else OK
        msg = "clamped to command limits" if clamped else ("rate limited" if rate_limited else "ok")
        self._last_status = SafetyStatus(level, "normal", False, clamped, rate_limited, msg)
        return out, self._last_status

    def safe_command(self, now_s: float, out: np.ndarray | None = None) -> np.ndarray:
        """The fallback command for the profile's interface [n_cmd], clamped to the command limits."""
        out = np.empty(self.n_cmd) if out is None else out
        if self.interface == "position":
            if self._has_state:
                np.take(self.position, self._cmd_idx, out=out)
            else:  # nothing measured yet: no position is known to be safe; hold the middle of the range
                np.add(self.cmd_min, self.cmd_max, out=out)
                out *= 0.5
                out[~np.isfinite(out)] = 0.0
        elif self.interface == "effort" and self.limits.safe_command == "damping" and \
                now_s - self._last_rx_s <= self.limits.sensor_timeout_s:
            # Damping only from a fresh velocity; a stale one would be a constant push.
            np.take(self.velocity, self._cmd_idx, out=out)
            out *= -self.limits.damping_gain
        else:
            out[:] = 0.0
        np.clip(out, self.cmd_min, self.cmd_max, out=out)
        return out

    def _safe(self, out, now_s, level, mode, message) -> tuple[np.ndarray, SafetyStatus]:
        self.safe_command(now_s, out=out)
        self.counts["safe_commands"] += 1
        self._prev[:] = out.tolist()  # leaving the fallback ramps from here under the rate limit
        self._has_output = True
        self._last_status = SafetyStatus(level, mode, True, False, False, message)
        return out, self._last_status

    # ------------------------------------------------------------------ e-stop

    def estop(self, reason: str = "e-stop requested") -> None:
        """Latch the e-stop: every ``filter`` call returns the safe command until ``reset()``."""
        if self._estop_reason is None:
            self.counts["estops"] += 1
            self._estop_reason = str(reason)

    def reset(self) -> None:
        """Clear a latched e-stop. Normal operation then needs ``recover_after`` fresh accepted messages."""
        if self._estop_reason is not None:
            self._estop_reason = None
            self._streak = 0
            self._fault = "e-stop reset: waiting for fresh joint states"
            self._mode = "fault" if self._has_state else "waiting"

    @property
    def last_rejection(self) -> str:
        """Why the last rejected message (joint states or IMU) was rejected ("" if none since the last
        ``diagnostics``).
        """
        return self._last_reject

    @property
    def estopped(self) -> bool:
        return self._estop_reason is not None

    @property
    def mode(self) -> str:
        return "estop" if self._estop_reason is not None else self._mode

    # ------------------------------------------------------------------ diagnostics

    def diagnostics(self) -> dict:
        """Status for ``/diagnostics``: ``level`` (OK/WARN/ERROR), ``message``, ``mode`` and ``values`` (counters)."""
        st = self._last_status
        level = st.level
        message = st.message
        if self.mode != "normal":
            level = ERROR
            message = f"e-stop latched: {self._estop_reason}" if self.estopped else f"{self._mode}: {self._fault}"
        elif self._last_reject and level == OK:
            level, message = WARN, f"last rejected message: {self._last_reject}"
        last_reject, self._last_reject = self._last_reject, ""  # WARN once per rejection burst
        values = {k: str(v) for k, v in self.counts.items()}
        values["mode"] = self.mode
        values["last_rejected"] = last_reject
        return {"level": LEVEL_NAMES[level], "message": message, "mode": self.mode, "values": values}
