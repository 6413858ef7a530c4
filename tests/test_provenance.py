"""summary.json says where, when and from what a run was made: command line, UTC time, dirty tree, host, the
teacher's weights hash, absolute data folder."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import torch

from conftest import WNIDS, write_images
from tta_bench import cli, engine
from tta_bench.config import RunConfig
from tta_bench.provenance import cpu_model, weights_sha256
from tta_bench.teachers import build_teacher


def test_summary_holds_the_provenance(tmp_path, monkeypatch):
    write_images(tmp_path / "val", {w: 1 for w in WNIDS})
    monkeypatch.chdir(tmp_path)
    argv = ["--suite", "imagenet", "--data-root", "val", "--allow-partial", "--teacher", "tiny", "--workers", "0",
            "--device", "cpu", "--no-progress", "--out", "run", "--method", "tent"]
    monkeypatch.setattr("sys.argv", ["run_bench.py", *argv])
    assert cli.main(argv) == 0
    summary = __import__("json").loads((tmp_path / "run" / "summary.json").read_text())
    prov = summary["provenance"]
    assert prov["command"] == ["run_bench.py", *argv]
    when = datetime.fromisoformat(prov["utc"])
    assert when.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - when) < timedelta(minutes=10)
    assert prov["git_dirty"] in (True, False, None)
    assert prov["host"]["cpu"] == cpu_model() and prov["host"]["cpu_count"] == os.cpu_count()
    assert prov["host"]["threads"] >= 1 and prov["host"]["gpu"] is None
    assert prov["teacher_sha256"] == weights_sha256(build_teacher("tiny"))  # before TENT changed its BatchNorm
    assert prov["memory_format"] == "channels_last"  # a CNN on the CPU
    assert summary["config"]["data_root"] == str(tmp_path / "val") == summary["data"]["root"]


def test_the_weights_hash_follows_the_weights():
    a, b = build_teacher("tiny"), build_teacher("tiny")
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b.classifier.bias[3] += 1e-6
    assert weights_sha256(a) != weights_sha256(b)
    c = build_teacher("tiny").to(memory_format=torch.channels_last)
    assert weights_sha256(c) == weights_sha256(a)  # the layout is not the weights


def test_engine_records_an_absolute_data_root_when_given_a_relative_one(tmp_path, monkeypatch):
    write_images(tmp_path / "val", {w: 1 for w in WNIDS})
    monkeypatch.chdir(tmp_path)
    summary = engine.run(RunConfig(suite="imagenet", data_root="val", allow_partial=True, teacher="tiny",
                                   num_workers=0, device="cpu", out="run"), progress=False, log=lambda *_: None)
    assert summary["data"]["root"] == str(tmp_path / "val")
