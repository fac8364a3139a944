"""Offscreen videos with ``mujoco.Renderer``: evaluation episodes, and logged-vs-resimulated runs side by side.

Headless GL: ``robot_rl`` picks ``MUJOCO_GL=egl`` (GPU driver present) or ``osmesa`` (Debian's ``libosmesa6``)
before MuJoCo is imported. Without either, ``RenderUnavailable`` carries a one-line message saying what to install,
and everything that does not render still runs.

Encoding: imageio with its ffmpeg plugin (``imageio-ffmpeg`` ships an ffmpeg binary) for ``.mp4``; ``.gif`` via
Pillow as the fallback when ffmpeg is unavailable or a ``.gif`` path is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

INSTALL_HINT = (
    "headless rendering needs an OpenGL backend: install Debian's libosmesa6 (apt-get install libosmesa6) "
    "or run on a machine with an NVIDIA/EGL driver (MUJOCO_GL=egl)"
)


class RenderUnavailable(RuntimeError):
    """No headless GL backend could create a context (message says what to install)."""


def make_renderer(model, height: int = 240, width: int = 320):
    """``mujoco.Renderer`` for ``model`` or ``RenderUnavailable`` with an install hint (never a GL traceback)."""
    import mujoco

    # The offscreen framebuffer must be at least the frame size.
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as exc:  # noqa: BLE001 - GL failures come in many types (RuntimeError, AttributeError, ...)
        backend = os.environ.get("MUJOCO_GL", "(unset)")
        raise RenderUnavailable(f"{INSTALL_HINT} (MUJOCO_GL={backend}: {type(exc).__name__}: {exc})") from None


def caption(frame: np.ndarray, lines: Iterable[str]) -> np.ndarray:
    """Draw text lines in the top-left corner of an RGB frame ``[H, W, 3] uint8`` (returns a new array)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    y = 4
    for line in lines:
        # Dark outline so the text reads on light and dark scenes.
        for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            draw.text((6 + dx, y + dy), line, fill=(0, 0, 0))
        draw.text((6, y), line, fill=(255, 255, 255))
        y += 12
    return np.asarray(img)


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float) -> Path:
    """Encode RGB frames to ``path`` (.mp4 through ffmpeg, .gif through Pillow). Returns the written path.

    If ffmpeg cannot be used for an .mp4, writes ``<path>.gif`` instead and returns that path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    if path.suffix.lower() != ".gif":
        try:
            import imageio.v2 as imageio

            tmp = path.with_name(path.name + ".part" + path.suffix)
            # macro_block_size=1 keeps odd frame sizes; yuv420p plays everywhere.
            with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1,
                                    ffmpeg_params=["-pix_fmt", "yuv420p"], ffmpeg_log_level="error") as w:
                for f in frames:
                    w.append_data(f)
            os.replace(tmp, path)
            return path
        except Exception:  # noqa: BLE001 - fall back to GIF whatever went wrong with ffmpeg
            path = path.with_suffix(".gif")
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    tmp = path.with_name(path.name + ".part.gif")
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=max(int(1000 / fps), 20), loop=0)
    os.replace(tmp, path)
    return path


def read_video(path: str | Path) -> np.ndarray:
    """Decode a video written by ``write_video`` into ``[T, H, W, 3] uint8`` (used by tests and reports)."""
    import imageio.v2 as imageio

    path = Path(path)
    if path.suffix.lower() == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    with imageio.get_reader(path) as r:
        return np.stack([np.asarray(f) for f in r])


def episode_frames(env, act: Callable[[np.ndarray], np.ndarray], *, episodes: int = 1, seed: int = 0,
                   height: int = 240, width: int = 320, camera: int | str = -1,
                   max_steps: int | None = None) -> Iterator[np.ndarray]:
    """Run ``episodes`` episodes of a gymnasium MuJoCo env with ``act(obs) -> action`` and yield captioned frames.

    One frame per control step, so ``fps = 1 / env.unwrapped.control_dt`` plays in real time. The caption shows
    the episode, step and running return.
    """
    base = env.unwrapped
    # an env whose simulation model has no visual geometry (the legged envs) renders a visual copy in its state
    scene = getattr(base, "visual_scene", None) or (lambda: (base.model, base.data))
    renderer = make_renderer(scene()[0], height, width)
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            ret, step, done = 0.0, 0, False
            while not done:
                renderer.update_scene(scene()[1], camera=camera)
                yield caption(renderer.render(), [f"episode {ep + 1}/{episodes}  step {step}", f"return {ret:.1f}"])
                obs, reward, terminated, truncated, _ = env.step(act(obs))
                ret += float(reward)
                step += 1
                done = terminated or truncated or (max_steps is not None and step >= max_steps)
            renderer.update_scene(scene()[1], camera=camera)
            yield caption(renderer.render(), [f"episode {ep + 1}/{episodes}  step {step}", f"return {ret:.1f} (end)"])
    finally:
        renderer.close()


def side_by_side_frames(model, qpos_left: np.ndarray, qpos_right: np.ndarray, *, labels=("logged", "re-simulated"),
                        height: int = 240, width: int = 320, camera: int | str = -1,
                        times_s: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Render two joint-position trajectories ``[T, nq]`` of the same model next to each other.

    Used by ``robot-rl replay --video``: the logged run on the left, its re-simulation on the right, so the
    sim-to-real gap is visible.
    """
    import mujoco

    if qpos_left.shape != qpos_right.shape or qpos_left.ndim != 2 or qpos_left.shape[1] != model.nq:
        raise ValueError(f"expected two [T, {model.nq}] qpos arrays, got {qpos_left.shape} and {qpos_right.shape}")
    renderer = make_renderer(model, height, width)
    data = mujoco.MjData(model)
    try:
        for t in range(qpos_left.shape[0]):
            halves = []
            for label, qpos in zip(labels, (qpos_left[t], qpos_right[t])):
                data.qpos[:] = qpos
                mujoco.mj_forward(model, data)
                renderer.update_scene(data, camera=camera)
                stamp = f"t={times_s[t]:.2f}s" if times_s is not None else f"step {t}"
                halves.append(caption(renderer.render(), [label, stamp]))
            yield np.concatenate(halves, axis=1)
    finally:
        renderer.close()
