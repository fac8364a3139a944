"""An LQR balance controller as a linear observation -> command map (the deployable baseline for ROS tests/bench).

``lqr_gain`` linearizes the robot's MJCF about an equilibrium with ``mujoco.mjd_transitionFD`` (one control period =
``frame_skip`` physics steps, Jacobians chained) and solves the infinite-horizon discrete LQR
(``robot_rl.control.lqr.infinite_horizon``): ``u = K (x - x_eq)`` with ``x = [qpos, qvel]``. ``observation_gain``
re-expresses that law on an env observation made of ``pos`` / ``sin`` / ``cos`` / ``vel`` terms (small-angle:
``sin q ~ q`` about ``q = 0``, ``cos`` terms get weight 0), so a plain linear layer ``command = W obs`` implements it
and can be exported to ONNX like any policy (``robot_rl.export.lqr.write_lqr_artifact``, build time: torch).
"""

from __future__ import annotations

import numpy as np


def lqr_gain(profile, *, Q=None, R=None, qpos_eq=None) -> tuple[np.ndarray, float]:
    """Discrete LQR gain ``K [nu, nx]`` (``u = K x``, robot command units) and the control period [s].

    Args:
        profile: ``RobotProfile`` (MJCF, control period).
        Q: state weight ``[nx, nx]`` (default identity).
        R: control weight ``[nu, nu]`` (default 0.1 I).
        qpos_eq: equilibrium positions ``[nq]`` (default the model's ``qpos0``, e.g. cart-pole upright).

    """
    import mujoco

    from robot_rl.control.lqr import closed_loop_is_stable, infinite_horizon

    model = profile.load_model()
    data = mujoco.MjData(model)
    if qpos_eq is not None:
        data.qpos[:] = qpos_eq
    mujoco.mj_forward(model, data)
    frame_skip = max(1, round(profile.control_period_s / model.opt.timestep))
    nx, nu = 2 * model.nv, model.nu
    A1, B1 = np.zeros((nx, nx)), np.zeros((nx, nu))
    mujoco.mjd_transitionFD(model, data, 1e-6, True, A1, B1, None, None)
    A, B = np.eye(nx), np.zeros((nx, nu))
    for _ in range(frame_skip):  # x_{k+1} = A1 x_k + B1 u with u held: chain the substeps
        A, B = A1 @ A, A1 @ B + B1
    Q = np.eye(nx) if Q is None else np.asarray(Q, dtype=float)
    R = 0.1 * np.eye(nu) if R is None else np.asarray(R, dtype=float)
    K, _ = infinite_horizon(A, B, Q, R)
    if not closed_loop_is_stable(A, B, K):
        raise ValueError(f"LQR for {profile.name}: closed loop A + B K is not stable")
    return K, frame_skip * float(model.opt.timestep)


def observation_gain(K: np.ndarray, profile, obs_terms) -> np.ndarray:
    """``W [nu, n_obs]`` with ``W obs ~ K x`` for an observation of pos/sin/cos/vel terms of profile joints.

    ``obs_terms``: the env's ``(name, kind, ref)`` layout (``ObservationBuilder.terms``). Needs every dof measured.
    """
    import mujoco

    model = profile.load_model()
    nq = model.nq
    W = np.zeros((K.shape[0], len(obs_terms)))
    for i, (name, kind, ref) in enumerate(obs_terms):
        if kind == "cos":
            continue
        if kind not in ("pos", "sin", "vel"):
            raise ValueError(f"observation term {name!r} of kind {kind!r} has no linear LQR equivalent")
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, str(ref))
        if jid < 0:
            raise KeyError(f"observation term {name!r}: joint {ref!r} not in the MJCF")
        col = model.jnt_qposadr[jid] if kind in ("pos", "sin") else nq + model.jnt_dofadr[jid]
        W[:, i] = K[:, col]
    return W


def linear_policy_onnx(W: np.ndarray, path, *, bias: np.ndarray | None = None, opset: int = 17) -> None:
    """Write ``action = obs @ W.T + bias`` as ONNX: input ``obs`` float32 ``[batch, n_obs]``, output ``action``
    float32 ``[batch, n_act]`` (the policy artifact contract of docs/contracts.md).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    W = np.asarray(W, dtype=np.float32)
    n_act, n_obs = W.shape
    b = np.zeros(n_act, dtype=np.float32) if bias is None else np.asarray(bias, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["obs", "W", "b"], ["action"], transB=1)],
        "linear_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", n_obs])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", n_act])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="robot_rl.lqr")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
