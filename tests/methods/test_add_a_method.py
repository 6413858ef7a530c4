"""The README's "Add a method" example, taken from the README itself and run: one file, one registry line."""
import re
from pathlib import Path

import torch

from tests.methods.conftest import CPU, images, teacher
from tta_bench import engine
from tta_bench.methods import METHODS, build_method
from tta_bench.methods.base import Batch

README = Path(__file__).resolve().parents[2] / "README.md"


def example_blocks() -> list[str]:
    section = README.read_text().split("### Add a method", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_example_registers_and_runs_through_the_engine(monkeypatch, cifar_run):
    method_file, registry_line = example_blocks()
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))  # registered for this test only
    namespace: dict = {}
    exec(method_file, namespace)  # noqa: S102 - the README's own example
    exec(registry_line, {"METHODS": METHODS, "FlipAverage": namespace["FlipAverage"]})  # noqa: S102
    assert "flip_average" in METHODS and METHODS.entry("flip_average").help

    t, x = teacher("tiny"), images(4, 32)
    out = build_method("flip_average", t, {}, CPU).predict(Batch(x, list(range(4))))
    torch.testing.assert_close(out.logits, (t(x) + t(x.flip(-1))) / 2)
    summary = engine.run(cifar_run(method="flip_average"), progress=False, log=lambda *_: None)
    assert summary["method"] == "flip_average" and summary["data"]["n_samples"] == 8
