"""A run folder that cannot lie: one process at a time, the same inputs on every resume, the whole run's cost."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import WNIDS, image_stack, write_arrays, write_images
from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.errors import UserError
from tta_bench.records import RunFolder
from tta_bench.vocabulary import CONFIG, INPUTS, PREDICTIONS, SUMMARY

ROOT = Path(__file__).resolve().parents[1]


def _run(cfg) -> dict:
    return engine.run(cfg, progress=False, log=lambda *_: None)


@pytest.mark.slow
def test_a_second_process_on_the_same_folder_is_refused_and_named(tmp_path, tiny_config):
    cfg = tiny_config()
    first = RunFolder.open(cfg.out, cfg)
    try:
        with pytest.raises(UserError, match=r"in use by process \d+ on .*another --out"):
            RunFolder.open(cfg.out, cfg)
        other = subprocess.run([sys.executable, "-c", f"""
import sys
from tta_bench.config import RunConfig
from tta_bench.records import RunFolder
from tta_bench.errors import UserError
try:
    RunFolder.open({cfg.out!r}, RunConfig(**{cfg.to_dict()!r}))
except UserError as exc:
    print(exc); sys.exit(3)
"""], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert other.returncode == 3 and "in use by process" in other.stdout
    finally:
        first.release()
    RunFolder.open(cfg.out, cfg).release()  # released: the next run takes it


@pytest.mark.slow
def test_a_killed_runs_lock_does_not_block(tmp_path, tiny_config):
    cfg = tiny_config()
    script = f"""
import os
from tta_bench.config import RunConfig
from tta_bench.records import RunFolder
RunFolder.open({cfg.out!r}, RunConfig(**{cfg.to_dict()!r}))
os._exit(0)  # dies holding the lock, as a SIGKILL would leave it
"""
    assert subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=120).returncode == 0
    RunFolder.open(cfg.out, cfg).release()


@pytest.mark.slow
def test_an_immediate_rerun_after_kill_9_with_decoding_workers_resumes(tmp_path):
    """DataLoader workers outlive a killed parent by seconds: they must not hold the folder's lock."""
    write_images(tmp_path / "val", {w: 60 for w in WNIDS}, size=8)
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "run_bench.py"), "--suite", "imagenet", "--data-root", str(tmp_path / "val"),
               "--allow-partial", "--teacher", "tiny", "--batch-size", "1", "--workers", "2", "--device", "cpu",
               "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / PREDICTIONS).exists() and (out / PREDICTIONS).read_bytes().count(b"\n") >= 5:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / SUMMARY).exists(), "the kill must land mid-run"
    # at once, while the killed run's workers may still live (they notice a dead parent within 5 s)
    RunFolder.open(out, RunConfig.from_dict(json.loads((out / CONFIG).read_text()))).release()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / SUMMARY).read_text())["splits"]["imagenet"]["n"] == 180


def test_the_holders_command_line_is_named_in_full(tmp_path, tiny_config, monkeypatch):
    out = tmp_path.joinpath(*["deep"] * 70, "conc1")  # a command line far beyond 300 characters
    cfg = tiny_config(out=str(out))
    argv = ["run_bench.py", "--suite", "imagenet", "--data-root", str(tmp_path / "val"), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    first = RunFolder.open(cfg.out, cfg)
    try:
        with pytest.raises(UserError) as refused:
            RunFolder.open(cfg.out, cfg)
    finally:
        first.release()
    assert f"--out {out};" in str(refused.value)


@pytest.mark.slow
def test_a_dead_recorded_holder_is_named_as_dead(tmp_path, tiny_config):
    cfg = tiny_config()
    RunFolder.open(cfg.out, cfg).release()
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = Path(cfg.out) / ".lock"
    lock.write_text(f"process {dead.pid} on {socket.gethostname()} since 2026-01-01 00:00:00: run_bench.py\n")
    holder = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, os, sys, time
fd = os.open({str(lock)!r}, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"in use by process {holder.pid} \(the recorded holder, process "
                                            rf"{dead.pid} .* is no longer running\)"):
            RunFolder.open(cfg.out, cfg)
    finally:
        holder.kill()
        holder.wait()


def test_changed_inputs_stop_a_resume_and_name_what_changed(tmp_path, tiny_config):
    write_images(tmp_path / "val", {w: 2 for w in WNIDS})
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a {}.\n")
    cfg = tiny_config(suite="imagenet", data_root=str(tmp_path / "val"), allow_partial=True, teacher="tiny-clip",
                      prompts=str(prompts))
    _run(cfg)
    prompts.write_text("a blurry photo of a {}.\n")
    with pytest.raises(UserError, match="prompts changed since"):
        _run(cfg)
    prompts.write_text("a photo of a {}.\n")
    write_images(tmp_path / "val", {"n01443537": 3})  # more images in a class folder between two starts
    with pytest.raises(UserError, match="stream changed since"):
        _run(cfg)
    inputs = json.loads((Path(cfg.out) / INPUTS).read_text())
    assert set(inputs) == {"stream", "data", "precision", "weights", "head", "prompts"}
    cfg.overwrite = True
    assert _run(cfg)["data"]["n_samples"] == 2 * len(WNIDS) + 1  # --overwrite starts afresh on the new inputs


def _interrupted(cfg) -> None:
    """A run killed half-way: half its predictions on disk, no summary."""
    _run(cfg)
    path = Path(cfg.out) / PREDICTIONS
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:len(lines) // 2]))
    (Path(cfg.out) / SUMMARY).unlink()


def test_images_edited_in_place_between_a_kill_and_the_rerun_stop_the_resume(tmp_path, tiny_config):
    paths = write_images(tmp_path / "val", {w: 2 for w in WNIDS})
    cfg = tiny_config(suite="imagenet", data_root=str(tmp_path / "val"), allow_partial=True)
    _interrupted(cfg)
    first = json.loads((Path(cfg.out) / INPUTS).read_text())["data"]
    _run(cfg)  # unchanged: resumes, and the fingerprints stay the same
    assert json.loads((Path(cfg.out) / INPUTS).read_text())["data"] == first
    (Path(cfg.out) / SUMMARY).unlink()
    write_images(tmp_path / "other", {w: 2 for w in WNIDS}, size=48)  # set B under set A's names
    for path in paths:
        path.write_bytes((tmp_path / "other" / path.relative_to(tmp_path / "val")).read_bytes())
    with pytest.raises(UserError, match=r"the samples of split\(s\) imagenet \(file sizes and modification times\) "
                                        "changed since"):
        _run(cfg)


def test_an_images_npy_swapped_between_a_kill_and_the_rerun_stops_the_resume(tmp_path, tiny_config):
    write_arrays(tmp_path / "cifar", {"images": image_stack(8)}, [0, 1, 2, 3] * 2)
    cfg = tiny_config(suite="cifar10", data_root=str(tmp_path / "cifar"), allow_partial=True)
    _interrupted(cfg)
    write_arrays(tmp_path / "cifar", {"images": image_stack(8, offset=100)}, [0, 1, 2, 3] * 2)
    with pytest.raises(UserError, match=r"split\(s\) cifar10 \(array content\) changed since"):
        _run(cfg)


def test_a_swapped_checkpoint_stops_a_resume(tmp_path, tiny_config):
    import torch

    from tta_bench.teachers import build_teacher

    weights = tmp_path / "tiny.th"
    torch.save(build_teacher("tiny", num_classes=1000).model.state_dict(), weights)
    write_images(tmp_path / "val", {w: 2 for w in WNIDS})
    cfg = tiny_config(suite="imagenet", data_root=str(tmp_path / "val"), allow_partial=True, weights=str(weights))
    _run(cfg)
    state = torch.load(weights, weights_only=True)
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, weights)
    with pytest.raises(UserError, match="weights changed since"):
        _run(cfg)


def test_a_resume_keeps_the_cost_of_the_sessions_before_it(tmp_path, tiny_config):
    write_images(tmp_path / "val", {w: 4 for w in WNIDS})
    cfg = tiny_config(suite="imagenet", data_root=str(tmp_path / "val"), allow_partial=True)
    first = _run(cfg)["cost"]
    assert first["samples"] == 12 and first["seconds"] > 0
    (Path(cfg.out) / SUMMARY).unlink()  # killed after its last prediction, before the summary
    again = _run(cfg)["cost"]
    assert again["samples"] == 12 and again["seconds"] >= first["seconds"] and again["seconds_per_sample"] > 0
