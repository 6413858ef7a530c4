"""The engine's run folder (config.json, predictions.jsonl, summary.json), resume, and real-data accuracy."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED, WNIDS, independent_effnet_lite0, needs_shared
from tta_bench import engine
from tta_bench.choices import ResetMode
from tta_bench.methods import METHODS
from tta_bench.methods.base import Batch, Method, Output
from tta_bench.methods.options import Options
from tta_bench.errors import UserError
from tta_bench.vocabulary import CONFIG, PREDICTIONS, SUMMARY

RECORD_FIELDS = {"split": str, "id": str, "label": int, "pred": int, "top5": list, "correct": bool, "status": str}
SUMMARY_FIELDS = {"run_name", "suite", "method", "teacher", "source", "data", "setting", "splits", "mean_top1",
                  "mean_top5", "seed", "config", "method_options", "versions", "git_commit", "device", "cost"}
SPLIT_FIELDS = {"n", "top1", "top5", "failed", "skipped"}
COST_FIELDS = {"seconds", "samples_per_second", "seconds_per_sample", "peak_memory_mb", "teacher_forwards",
               "adaptation_steps", "flops_per_sample"}


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]


def _run(cfg, logs: list[str] | None = None) -> dict:
    return engine.run(cfg, progress=False, log=(logs.append if logs is not None else lambda *_: None))


def test_run_folder_holds_config_predictions_and_summary_in_the_documented_schema(imagenet_folder, tiny_config):
    cfg = tiny_config(suite="imagenet", data_root=str(imagenet_folder), allow_partial=True)
    summary = _run(cfg)
    out = Path(cfg.out)
    assert json.loads((out / CONFIG).read_text()) == cfg.to_dict()

    records = _records(out)
    assert len(records) == 6 and len({r["id"] for r in records}) == 6
    assert {r["id"] for r in records} == {f"{w}/img_{i:03d}.JPEG" for w in WNIDS for i in range(2)}
    for r in records:
        assert {k: type(r[k]) for k in RECORD_FIELDS} == RECORD_FIELDS
        assert r["split"] == "imagenet" and r["status"] == "ok"
        assert r["label"] == WNIDS.index(r["id"].split("/")[0])
        assert len(r["top5"]) == 5 and r["top5"][0] == r["pred"] and r["correct"] == (r["pred"] == r["label"])

    assert SUMMARY_FIELDS <= set(summary) and summary == json.loads((out / SUMMARY).read_text())
    assert (summary["suite"], summary["method"], summary["teacher"], summary["source"]) == \
        ("imagenet", "source", "tiny", "published")
    assert summary["run_name"] == out.name and summary["device"] == "cpu" and summary["seed"] == 0
    assert summary["data"] == {**summary["data"], "subset": "full", "generated": False, "partial": True,
                               "n_samples": 6}
    # an uncorrelated stream has no Dirichlet parameter; every stream records its domains' lengths and label shift
    assert set(summary["setting"]) == {"name", "stream_hash", "domain_lengths", "published_length", "label_shift"}
    assert summary["setting"]["name"] == "reset_each_shift"
    split = summary["splits"]["imagenet"]
    assert SPLIT_FIELDS <= set(split) and split["n"] == 6 and split["failed"] == split["skipped"] == 0
    assert split["top1"] == pytest.approx(100 * np.mean([r["correct"] for r in records]))
    assert split["top5"] == pytest.approx(100 * np.mean([r["label"] in r["top5"] for r in records]))
    assert summary["mean_top1"] == split["top1"] and summary["mean_top5"] == split["top5"]
    assert "teacher_mean_top1" not in summary  # APM-like methods only
    assert COST_FIELDS <= set(summary["cost"]) and summary["cost"]["teacher_forwards"] == 6
    assert summary["cost"]["adaptation_steps"] == 0 and summary["cost"]["seconds"] > 0
    assert summary["method_options"] == {"steps": 0, "lr": 0.0, "reset": "episodic"}
    assert {"python", "torch", "timm"} <= set(summary["versions"])


def test_a_second_run_of_the_same_config_reuses_the_finished_folder(imagenet_folder, tiny_config):
    cfg = tiny_config(suite="imagenet", data_root=str(imagenet_folder), allow_partial=True)
    first = _run(cfg)
    before = (Path(cfg.out) / PREDICTIONS).read_bytes()
    logs: list[str] = []
    assert _run(cfg, logs) == first
    assert any("complete; reusing its summary" in line for line in logs)
    assert (Path(cfg.out) / PREDICTIONS).read_bytes() == before


def test_an_interrupted_run_resumes_without_duplicates_or_a_torn_line(imagenet_folder, tiny_config):
    cfg = tiny_config(suite="imagenet", data_root=str(imagenet_folder), allow_partial=True, batch_size=2)
    first = _run(cfg)
    out = Path(cfg.out)
    complete = _records(out)
    lines = (out / PREDICTIONS).read_text().splitlines(keepends=True)
    (out / PREDICTIONS).write_text("".join(lines[:2]) + lines[2][:17])  # crash mid-write of line 3
    (out / SUMMARY).unlink()
    logs: list[str] = []
    resumed = _run(cfg, logs)
    assert any(re.search(r"4 samples to run.*\(2 already done\)", line) for line in logs)
    records = _records(out)
    assert sorted(records, key=lambda r: r["id"]) == sorted(complete, key=lambda r: r["id"])
    assert resumed["splits"] == first["splits"]


def test_a_run_folder_of_another_config_is_refused_unless_overwrite(imagenet_folder, tiny_config):
    cfg = tiny_config(suite="imagenet", data_root=str(imagenet_folder), allow_partial=True)
    _run(cfg)
    with pytest.raises(UserError, match=r"holds a run of another configuration \(differs in seed: 0 -> 1\)"):
        _run(tiny_config(suite="imagenet", data_root=str(imagenet_folder), allow_partial=True, seed=1))
    summary = _run(tiny_config(suite="imagenet", data_root=str(imagenet_folder), allow_partial=True, seed=1,
                               overwrite=True))
    assert summary["seed"] == 1 and json.loads((Path(cfg.out) / CONFIG).read_text())["seed"] == 1


def test_a_folder_left_by_a_run_that_failed_before_predicting_is_not_a_conflict(imagenet_folder, tiny_config):
    with pytest.raises(UserError, match="builds a CLIP text head; teacher tiny"):  # found once the teacher is built
        _run(tiny_config(suite="imagenet", data_root=str(imagenet_folder), allow_partial=True, prompts="ensemble"))
    assert (Path(tiny_config().out) / "config.json").exists()
    summary = _run(tiny_config(suite="imagenet", data_root=str(imagenet_folder), allow_partial=True))
    assert summary["splits"]["imagenet"]["n"] == 6


@needs_shared
def test_resnet20_reaches_90_percent_on_the_first_100_cifar10_test_images(tmp_path, tiny_config):
    cfg = tiny_config(suite="cifar10", data_root=str(SHARED / "cifar10-test-first100"), allow_partial=True,
                      teacher="cifar-resnet20", weights=str(SHARED / "weights" / "resnet20-12fca82f.th"),
                      batch_size=50)
    summary = _run(cfg)
    assert summary["splits"]["cifar10"]["n"] == 100 and summary["data"]["partial"]
    assert summary["mean_top1"] >= 90.0
    labels = np.load(SHARED / "cifar10-test-first100" / "labels.npy", allow_pickle=False)
    assert all(r["label"] == labels[int(r["id"])] for r in _records(Path(cfg.out)))


def _independent_effnet_lite0_predictions(root: Path, relpaths: list[str]) -> list[int]:
    """timm's efficientnet_lite0 fed the package's weights by tensor order, torchvision's standard eval
    transform: written here without tta_bench, so that it checks the teacher and the engine."""
    from PIL import Image
    from torchvision import transforms

    model = independent_effnet_lite0()
    transform = transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224),
        transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    batch = torch.stack([transform(Image.open(root / p).convert("RGB")) for p in relpaths])
    with torch.no_grad():
        return model(batch).argmax(1).tolist()


@needs_shared
def test_effnet_lite0_on_the_imagenet_sample_agrees_with_an_independent_evaluation(tiny_config):
    root = SHARED / "imagenet-sample"
    cfg = tiny_config(suite="imagenet", data_root=str(root), allow_partial=True, teacher="effnet-lite0",
                      limit=50, batch_size=25)
    summary = _run(cfg)
    assert summary["data"]["subset"] == "limit-50" and summary["splits"]["imagenet"]["n"] == 50
    records = sorted(_records(Path(cfg.out)), key=lambda r: r["id"])
    with open(root / "labels.csv") as f:
        truth = {row["path"]: int(row["class_index"]) for row in csv.DictReader(f)}
    assert [r["label"] for r in records] == [truth[r["id"]] for r in records]
    independent = _independent_effnet_lite0_predictions(root, [r["id"] for r in records])
    assert [r["pred"] for r in records] == independent
    expected_top1 = 100 * np.mean([p == truth[r["id"]] for p, r in zip(independent, records)])
    assert summary["mean_top1"] == pytest.approx(expected_top1)
    assert summary["mean_top1"] >= 50.0  # 68.8% over all 500 images


def test_methods_that_ask_for_it_get_each_full_decoded_image(tmp_path, tiny_config, monkeypatch):
    """Batch.raw: the picture as decoded (here 96 x 48 and 40 x 72), before the teacher's resize and centre crop, only
    for a method whose ``raw_images`` is set."""
    from PIL import Image

    from tta_bench.methods.source import Source
    from tta_bench.methods.zero import Zero

    root = tmp_path / "wide"
    pictures = []
    for k, (name, (w, h)) in enumerate({f"{WNIDS[1]}/a.png": (96, 48), f"{WNIDS[2]}/b.png": (40, 72)}.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)
        pictures.append(torch.from_numpy(pixels).permute(2, 0, 1))
    seen = {}
    for cls in (Zero, Source):
        original = cls.predict
        monkeypatch.setattr(cls, "predict", lambda self, batch, original=original: (
            seen.setdefault(self.name, (batch.images.shape, batch.raw)), original(self, batch))[1])
    for method, out in (("zero", "a"), ("source", "b")):
        _run(tiny_config(suite="imagenet-r", data_root=str(root), allow_partial=True, teacher="tiny-clip",
                         method=method, method_options={"n_views": 4} if method == "zero" else {}, batch_size=2,
                         out=str(tmp_path / out)))
    shape, raw = seen["zero"]
    assert shape == (2, 3, 64, 64)  # tiny-clip's input
    assert [r.dtype for r in raw] == [torch.uint8] * 2 and all(torch.equal(r, p) for r, p in zip(raw, pictures))
    assert seen["source"][1] is None


@dataclass
class _OnlineOptions(Options):
    reset: ResetMode = "online"


class _Counting(Method):
    """Records the engine's calls: "reset", or the size of the batch it predicts."""

    options_class = _OnlineOptions
    calls: list = []

    def reset(self) -> None:
        self.calls.append("reset")
        super().reset()

    def predict(self, batch: Batch) -> Output:
        self.calls.append(len(batch.images))
        return Output(self.teacher(batch.images))


@pytest.mark.parametrize("reset, expected", [
    ("online", ["reset", 2, 2, "reset", 2, 2]),  # at each domain start (reset_each_shift)
    ("episodic", ["reset", 2] * 4),  # before every batch
])
def test_the_engine_resets_where_the_setting_allows_and_before_every_batch_under_reset_episodic(
        tiny_config, registries, reset, expected):
    METHODS.register("counting", "test method")(_Counting)
    _Counting.calls = []
    _run(tiny_config(suite="demo", method="counting", corruptions=["fog", "snow"], batch_size=2,
                     method_options={"reset": reset}))
    assert _Counting.calls == expected
