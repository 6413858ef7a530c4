"""The documented "Extending" examples (docs/extending.md), run as shown: a method, a teacher and a suite, each its
file's code plus its registry line, then a real run through the engine."""
from __future__ import annotations

import sys
import types

import pytest
import torch
import yaml

from conftest import WNIDS, write_images
from readme import blocks
from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.data import suites
from tta_bench.methods import METHODS
from tta_bench.records import read_records
from tta_bench.teachers import TEACHERS, build_teacher
from tta_bench.vocabulary import PREDICTIONS

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
    summary = engine.run(RunConfig(suite="demo", method="flip", teacher="tiny", corruptions=["fog"],
                                   out=str(tmp_path / "run"), **RUN), progress=False, log=lambda *_: None)
    assert summary["method"] == "flip" and summary["splits"]["fog-5"]["n"] == 4
    assert summary["cost"]["teacher_forwards"] == 8  # two views per sample
    # its predictions are the mean of the two views' logits, computed here independently
    p = engine.prepare(RunConfig(suite="demo", teacher="tiny", corruptions=["fog"]))
    teacher = build_teacher("tiny").eval()
    teacher.set_classes(p.suite.space, p.suite.classes)
    split = p.suite.splits[0]
    images = torch.stack([teacher.transform(split.source.load(i)) for i in range(len(split.source))])
    with torch.no_grad():
        expected = ((teacher(images) + teacher(images.flip(3))) / 2).argmax(1).tolist()
    got = {r["id"]: r["pred"] for r in read_records(tmp_path / "run" / PREDICTIONS)}
    assert [got[i] for i in split.source.ids] == [p.suite.classes[k] for k in expected]
    assert METHODS.get("flip") is module.Flip


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
