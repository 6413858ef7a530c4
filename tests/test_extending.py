"""The documented "Extending" examples (docs/extending.md), run as shown: a method, a teacher, a suite, a metric and
a stream setting, each its file's code plus its registry line, then a real run through the engine."""
from __future__ import annotations

import json
import sys
import types
from typing import Literal

import numpy as np
import pytest
import torch
import yaml

from conftest import WNIDS, write_images
from readme import blocks
from tta_bench import choices, config, engine, metrics, stream
from tta_bench.cli import main
from tta_bench.config import RunConfig
from tta_bench.data import suites
from tta_bench.errors import UserError
from tta_bench.methods import METHODS
from tta_bench.records import read_records
from tta_bench.report import table_command
from tta_bench.report.recompute import metrics_command
from tta_bench.teachers import TEACHERS, build_teacher
from tta_bench.vocabulary import METRICS, PREDICTIONS

RUN = dict(num_workers=0, device="cpu", batch_size=4)


def _install(monkeypatch: pytest.MonkeyPatch, module: str, code: str) -> types.ModuleType:
    """The README's file as the module its registry line names (sys.modules restored after the test)."""
    mod = types.ModuleType(module)
    mod.__package__ = module.rpartition(".")[0]
    monkeypatch.setitem(sys.modules, module, mod)
    exec(compile(code, f"README:{module}", "exec"), mod.__dict__)
    return mod


def _register(registry, line: str, name: str) -> None:
    """The README's registry line, run as written (the ``registries`` fixture removes its entry after the test)."""
    exec(line, {registry.kind.upper() + "S": registry})
    assert name in registry


def test_add_a_method(monkeypatch, tmp_path, registries):
    code, line = blocks("Add a method", "python")
    module = _install(monkeypatch, "tta_bench.methods.flip", code)
    _register(METHODS, line, "flip")
    assert METHODS.get("flip") is module.Flip and module.Flip.name == "flip"
    cfg = RunConfig(suite="demo", method="flip", teacher="tiny", corruptions=["fog"], out=str(tmp_path / "run"),
                    method_options={"reset": "episodic"}, **{**RUN, "batch_size": 2})
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["method"] == "flip" and summary["splits"]["fog-5"]["n"] == 4
    assert summary["cost"]["teacher_forwards"] == 8 and summary["cost"]["adaptation_steps"] == 2  # 2 views, 2 batches
    assert summary["method_options"]["mirror"] == 0.5 and summary["method_options"]["optimizer"] == "adam"
    # under --reset episodic every batch is predicted by the initial model (BN on batch statistics), before its own
    # update: computed here independently, batch by batch in stream order
    p = engine.prepare(cfg)
    teacher = build_teacher("tiny").eval()
    teacher.set_classes(p.suite.space, p.suite.classes)
    for layer in teacher.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.train()
            layer.track_running_stats = False
    split = p.suite.splits[0]
    expected = {}
    for batch in p.stream.batches(2):
        ids = [split.source.ids[p.stream.items[i].pos] for i in batch]
        x = torch.stack([teacher.transform(split.source.load(p.stream.items[i].pos)) for i in batch])
        with torch.no_grad():
            expected |= dict(zip(ids, ((teacher(x) + teacher(x.flip(3))) / 2).argmax(1).tolist()))
    got = {r["id"]: r["pred"] for r in read_records(tmp_path / "run" / PREDICTIONS)}
    assert got == {i: p.suite.classes[k] for i, k in expected.items()}
    # its options are checked before anything runs
    with pytest.raises(UserError, match="flip option mirror must be a finite number <= 1, got 2.0"):
        engine.prepare(RunConfig(suite="demo", method="flip", teacher="tiny", method_options={"mirror": 2}))


def test_add_a_teacher(monkeypatch, tmp_path, registries):
    code, line = blocks("Add a teacher", "python")
    _install(monkeypatch, "tta_bench.teachers.small_cnn", code)
    _register(TEACHERS, line, "small-cnn")
    teacher = build_teacher("small-cnn:8", num_classes=1000)
    weights = tmp_path / "small.pt"
    torch.save(teacher.model.state_dict(), weights)
    loaded = build_teacher("small-cnn:8", str(weights))
    assert all(torch.equal(a, b) for a, b in zip(teacher.model.state_dict().values(),
                                                 loaded.model.state_dict().values()))
    summary = engine.run(RunConfig(suite="demo", method="tent", teacher="small-cnn:8", weights=str(weights),
                                   corruptions=["fog"], out=str(tmp_path / "run"), **{**RUN, "batch_size": 2}),
                         progress=False, log=lambda *_: None)
    assert summary["teacher"] == "small-cnn:8" and summary["splits"]["fog-5"]["n"] == 4
    assert summary["cost"]["adaptation_steps"] == 2  # TENT adapted its BatchNorm: one update per batch


def test_add_a_suite(monkeypatch, tmp_path, registries):
    (text,) = blocks("Add a suite", "yaml")
    path = tmp_path / "suites" / "imagenet-val-subset.yaml"
    path.parent.mkdir()
    path.write_text(text)
    spec = suites._spec_from_yaml(path)  # what loading suites/ does for every file there
    suites.SUITES.register(spec.name, spec.description)(spec)
    write_images(tmp_path / "val", {w: 2 for w in WNIDS})
    summary = engine.run(RunConfig(suite="imagenet-val-subset", teacher="tiny", data_root=str(tmp_path / "val"),
                                   out=str(tmp_path / "run"), **RUN), progress=False, log=lambda *_: None)
    assert summary["splits"]["imagenet-val-subset"]["n"] == 6
    assert yaml.safe_load(text)["name"] == "imagenet-val-subset"


def test_add_a_metric(tmp_path):
    (code,) = blocks("Add a metric", "python")
    run = tmp_path / "run"
    engine.run(RunConfig(suite="demo", teacher="tiny", corruptions=["fog"], save_logits=True, out=str(run), **RUN),
               progress=False, log=lambda *_: None)
    exec(compile(code, "README:tta_bench/metrics.py", "exec"), dict(vars(metrics)))  # as if written in metrics.py
    try:
        metrics_command([str(run)], ("top1", "mce"))
        table = table_command([str(run)], "md", False, "mce")
    finally:
        del metrics.LOGIT_METRICS["mce"]
    value = json.loads((run / METRICS).read_text())["splits"]["fog-5"]["mce"]
    # the largest |accuracy - confidence| over 15 equal-width bins, computed here from the saved logits
    with np.load(run / "logits" / "fog-5.npz") as z:
        logits, classes = z["logits"].astype(np.float64), list(z["classes"])
    labels = np.array([classes.index(r["label"]) for r in read_records(run / PREDICTIONS)])
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    bins = np.minimum((probs.max(1) * 15 - 1e-9).astype(int), 14)
    gaps = [abs((probs.argmax(1) == labels)[bins == b].mean() - probs.max(1)[bins == b].mean()) for b in set(bins)]
    assert value == pytest.approx(100 * max(gaps)) and f"{value:.1f}" in table


def test_add_a_stream_setting(monkeypatch, tmp_path, capsys):
    define, line = blocks("Add a stream setting", "python")
    namespace = dict(vars(stream))  # as if written in stream.py
    # ... and its name added to choices.Setting, which the configuration checks
    monkeypatch.setitem(config.hints(), "setting", Literal[(*choices.SETTINGS, "reverse_shift")])
    exec(compile(define, "README:tta_bench/stream.py", "exec"), namespace)
    with stream.SETTINGS.scoped():  # the setting is gone after the test
        exec(line, namespace)
        base = dict(suite="demo", teacher="tiny", corruptions=["fog", "contrast", "snow"], **RUN)
        reverse = engine.run(RunConfig(**base, setting="reverse_shift", out=str(tmp_path / "reverse")), progress=False,
                             log=lambda *_: None)
        forward = engine.run(RunConfig(**base, out=str(tmp_path / "forward")), progress=False, log=lambda *_: None)
        order = [r["split"] for r in read_records(tmp_path / "reverse" / PREDICTIONS)]
        assert list(dict.fromkeys(order)) == ["snow-5", "contrast-5", "fog-5"]  # merged in stream order
        assert reverse["splits"] == forward["splits"]  # the frozen teacher: the same predictions in any order
        assert engine.prepare(RunConfig(**base, setting="reverse_shift")).stream.resets == {0, 4, 8}
        main(["list"])
        assert "reverse_shift" in capsys.readouterr().out
