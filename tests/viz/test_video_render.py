"""Rendering: a short clip renders with the expected frame count and size; frames are not blank and change."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.viz import video

PENDULUM = """
<mujoco>
  <visual><global offwidth="640" offheight="480"/></visual>
  <worldbody>
    <light pos="0 0 3"/>
    <geom type="plane" size="2 2 .1" rgba=".3 .3 .35 1"/>
    <body pos="0 0 1.2">
      <joint name="hinge" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.6" size="0.05" rgba=".9 .4 .1 1"/>
    </body>
  </worldbody>
  <actuator><motor joint="hinge" ctrlrange="-1 1"/></actuator>
</mujoco>
"""


@pytest.fixture(scope="module")
def model():
    import mujoco

    m = mujoco.MjModel.from_xml_string(PENDULUM)
    try:
        r = video.make_renderer(m, 48, 64)
        r.close()
    except video.RenderUnavailable as exc:
        pytest.fail(f"rendering must work where make test runs (the Makefile installs libosmesa6): {exc}")
    return m


def test_side_by_side_clip_mp4_roundtrip(model, tmp_path):
    t = np.linspace(0, 2 * np.pi, 12)
    left = np.sin(t)[:, None]
    right = 0.5 * np.sin(t)[:, None]
    frames = list(video.side_by_side_frames(model, left, right, height=96, width=128))
    assert len(frames) == 12 and frames[0].shape == (96, 256, 3)
    out = video.write_video(frames, tmp_path / "clip.mp4", fps=10)
    assert out.suffix == ".mp4" and out.stat().st_size > 0
    back = video.read_video(out)
    assert back.shape == (12, 96, 256, 3)
    assert back.std() > 5.0  # not blank
    diffs = np.abs(back[1:].astype(float) - back[:-1].astype(float)).mean(axis=(1, 2, 3))
    assert (diffs > 0.1).sum() >= 8  # the pendulum moves between frames


def test_gif_fallback_and_caption(tmp_path):
    frames = [np.full((40, 60, 3), i * 20, np.uint8) for i in range(5)]
    frames = [video.caption(f, ["step"]) for f in frames]
    out = video.write_video(frames, tmp_path / "clip.gif", fps=5)
    back = video.read_video(out)
    assert back.shape == (5, 40, 60, 3)
    assert back[0, :15, :40].max() > back[0].min()  # caption pixels drawn


def test_bad_inputs_raise_clear_errors(model, tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        video.write_video([], tmp_path / "x.mp4", fps=10)
    with pytest.raises(ValueError, match=r"expected two \[T, 1\] qpos arrays"):
        list(video.side_by_side_frames(model, np.zeros((3, 2)), np.zeros((3, 2))))
