"""A run folder that cannot lie: one process at a time, the same inputs on every resume, the whole run's cost."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import WNIDS, write_images
from tta_bench import engine
from tta_bench.errors import UserError
from tta_bench.records import RunFolder
from tta_bench.vocabulary import INPUTS, SUMMARY

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
    assert set(inputs) == {"stream", "precision", "weights", "head", "prompts"}
    cfg.overwrite = True
    assert _run(cfg)["data"]["n_samples"] == 2 * len(WNIDS) + 1  # --overwrite starts afresh on the new inputs


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
