"""Fixture run folders for the report tests: small summary.json files in the engine's schema."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from tta_bench.summary import Summary
from tta_bench.vocabulary import CONFIG, DEFAULT_SETTING, PREDICTIONS, SUMMARY


def make_summary(name: str, method: str, teacher: str | None, splits: dict, *, suite: str = "imagenet-c",
                 seed: int | None = 0, source: str = "published", subset: str = "full", seconds: float = 0.1,
                 options: dict | None = None) -> dict:
    """A summary.json as the engine writes it, with means computed from `splits`."""
    options = options or {}
    config = {"suite": suite, "method": method, "teacher": teacher, "source": source, "setting": DEFAULT_SETTING,
              "seed": seed, "subset": subset, "limit": None, "method_options": options, "out": f"/runs/{name}"}
    return Summary.of(
        copy.deepcopy(splits), run_name=name, suite=suite, method=method, teacher=teacher, source=source,
        data={"subset": subset, "generated": source == "generated", "partial": False, "n_samples": 100},
        setting={"name": DEFAULT_SETTING, "stream_hash": f"sha256-{name}"}, seed=seed, config=config,
        method_options=options, cost={"seconds": 10.0, "samples_per_second": 1 / seconds, "seconds_per_sample": seconds},
    ).to_dict()


def split(top1: float, **extra: float) -> dict:
    return {"n": 50, "top1": top1, "top5": min(100.0, top1 + 20), "failed": 0, "skipped": 0, **extra}


def fixture_summaries() -> list[dict]:
    """source (generated, limit-50, two severities), apm (teacher + agreement), tent with seeds 0 and 1."""
    return [
        make_summary("source-run", "source", "effnet-lite0", {
            "gaussian_noise-3": split(30.0), "gaussian_noise-5": split(10.0), "fog-3": split(40.0),
            "fog-5": split(20.0), "defocus_blur-5": split(15.0)},
            source="generated", subset="limit-50", seconds=0.01),
        make_summary("apm-run", "apm", "clip-vit-b16", {
            "gaussian_noise-5": split(24.0, teacher_top1=26.0, agreement=90.0),
            "defocus_blur-5": split(30.0, teacher_top1=31.0, agreement=92.5),
            "fog-5": split(40.0, teacher_top1=40.0, agreement=95.0)}, seconds=2.5),
        make_summary("tent-seed0", "tent", "resnet50", {
            "gaussian_noise-5": split(40.0), "defocus_blur-5": split(35.0), "fog-5": split(50.0)},
            seed=0, options={"lr": 0.001}, seconds=0.05),
        make_summary("tent-seed1", "tent", "resnet50", {
            "gaussian_noise-5": split(42.0), "defocus_blur-5": split(36.0), "fog-5": split(51.0)},
            seed=1, options={"lr": 0.001}, seconds=0.05),
    ]


def published_row() -> pd.DataFrame:
    return pd.DataFrame([{
        "method": "apm", "backbone": "clip-vit-l14", "suite": "imagenet-c", "split": "mean", "metric": "top1",
        "value": 50.3, "source": "APM Table 2", "verified": True, "note": ""}])


def write_runs(root: Path, summaries: list[dict]) -> list[Path]:
    """One run folder per summary under root (config.json + summary.json, as the engine leaves them)."""
    dirs = []
    for summary in summaries:
        run_dir = root / summary["run_name"]
        run_dir.mkdir(parents=True)
        (run_dir / CONFIG).write_text(json.dumps(summary["config"]))
        (run_dir / SUMMARY).write_text(json.dumps(summary))
        dirs.append(run_dir)
    return dirs


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    """results/runs/ with the fixture runs, one level of nesting to exercise the recursive loader."""
    root = tmp_path / "results" / "runs"
    write_runs(root / "imagenet-c", fixture_summaries())
    return root


def write_run(root: Path, name: str, method: str, correct: dict[str, list[bool]], *, seed: int = 0,
              online: bool = False, batch_size: int | None = None, subset: str = "full", shuffle: bool = False,
              failed: dict[str, int] | None = None, setting: str = DEFAULT_SETTING) -> Path:
    """A run folder as the engine leaves it, with per-sample predictions: split -> correctness of samples s0000,
    s0001, ... (label 1; the prediction 1 where right, else 0), in that order unless ``shuffle`` (a stream order
    drawn from the seed); the first ``failed[split]`` samples of a split failed (scored wrong); the summary is
    computed from the records."""
    rng = random.Random(seed)
    records, splits = [], {}
    for split, flags in correct.items():
        order = list(range(len(flags)))
        if shuffle:
            rng.shuffle(order)
        bad = (failed or {}).get(split, 0)
        for i in order:
            status = "failed" if i < bad else "ok"
            right = bool(flags[i]) and status == "ok"
            records.append({"split": split, "id": f"s{i:04d}", "label": 1, "pred": 1 if right else 0,
                            "top5": [1 if right else 0, 2, 3, 4, 5], "correct": right, "status": status})
        splits[split] = {"n": len(flags), "top1": 100.0 * sum(r["correct"] for r in records if r["split"] == split)
                         / len(flags), "top5": 100.0 * sum(1 for r in records if r["split"] == split and
                                                             r["status"] == "ok") / len(flags),
                         "failed": bad, "skipped": 0}
    options = {"reset": "online" if online else "episodic"}
    summary = make_summary(name, method, "resnet20", splits, suite="cifar10-c", seed=seed, subset=subset,
                           options=options)
    summary["config"] |= {"batch_size": batch_size, "limit": int(subset[6:]) if subset.startswith("limit-") else None}
    summary["setting"]["name"] = summary["config"]["setting"] = setting
    (run_dir,) = write_runs(root, [summary])
    (run_dir / PREDICTIONS).write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir
