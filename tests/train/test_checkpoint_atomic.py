"""Checkpoint atomicity: kill -9 inside a write, disk full, corrupt and missing files."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from robot_rl.train import checkpoint as ckpt
from robot_rl.train.checkpoint import CheckpointError, capture_rng, load_checkpoint, restore_rng, save_atomic


def payload(value: float, n: int = 4) -> dict:
    return {"format_version": ckpt.FORMAT_VERSION, "w": torch.full((n,), value), "step": int(value)}


def test_round_trip_and_rng_restore(tmp_path):
    torch.manual_seed(3)
    state = capture_rng()
    expected = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    save_atomic(tmp_path / "c.pt", {**payload(1.0), "rng": state})
    loaded = load_checkpoint(tmp_path / "c.pt")
    restore_rng(loaded["rng"])
    got = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    torch.testing.assert_close(got[0], expected[0])
    assert got[1:] == expected[1:]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_kill_9_during_write_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "latest.pt"
    save_atomic(path, payload(1.0))
    # A child process starts writing a large checkpoint to the same path and is SIGKILLed mid-write.
    script = textwrap.dedent(f"""
        import os, sys, torch
        from robot_rl.train import checkpoint as ckpt
        real_fsync = os.fsync
        def slow_fsync(fd):
            print("writing", flush=True)
            import time; time.sleep(30)
        os.fsync = slow_fsync
        ckpt.save_atomic({str(path)!r}, {{"format_version": ckpt.FORMAT_VERSION, "w": torch.zeros(2_000_000)}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"  # temp file written, not yet synced / replaced
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".latest.pt.tmp")]
        assert temps, "the child should be inside save_atomic with its temp file open"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["w"], torch.full((4,), 1.0))


def test_disk_full_leaves_previous_checkpoint_and_says_why(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_atomic(path, payload(1.0))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt.torch, "save", full)
    with pytest.raises(CheckpointError, match=r"latest\.pt.*No space left on device.*unchanged"):
        save_atomic(path, payload(2.0))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]


def test_fsync_io_error_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_atomic(path, payload(1.0))

    def broken(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(ckpt.os, "fsync", broken)
    with pytest.raises(CheckpointError, match="Input/output error"):
        save_atomic(path, payload(2.0))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1


def test_truncated_missing_and_foreign_files_name_path_and_reason(tmp_path):
    path = tmp_path / "c.pt"
    save_atomic(path, payload(1.0, n=10000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c\.pt.*truncated, corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"nope\.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a robot_rl checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": ckpt.FORMAT_VERSION, "obj": time.struct_time}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)


def test_training_run_stops_cleanly_on_disk_full_and_resumes(tmp_path, monkeypatch):
    import json

    from train_tiny_configs import SAC_TINY, tiny

    from robot_rl.train.runner import train

    run = tmp_path / "run"
    real_save = torch.save

    def save_until_disk_full(obj, f, *args, **kwargs):
        if (run / "checkpoints" / "latest.pt").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save_until_disk_full)
    cfg = tiny(SAC_TINY, "train.total_steps=400", "train.checkpoint_every_steps=200", "train.eval_every_steps=0")
    with pytest.raises(CheckpointError, match="No space left on device"):
        train(cfg, run)
    monkeypatch.undo()
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["learner"]["env_steps"] == 200
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    info = train(cfg, run, resume=True)
    assert info["status"] == "complete" and info["env_steps"] == 400
