"""The engine's one hook for methods that need clean source images before the stream (EATA's Fisher)."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import WNIDS, write_images
from tests.methods.conftest import CPU, teacher
from tta_bench import engine
from tta_bench.errors import UserError
from tta_bench.methods.base import Batch, Method, Output


class NeedsSource(Method):
    def __init__(self, n: int) -> None:
        super().__init__(teacher("tiny"), None, CPU)  # type: ignore[arg-type]
        self.n, self.seen = n, []

    def source_samples(self) -> int:
        return self.n

    def prepare_source(self, batches) -> None:
        self.seen = [b for b in batches]

    def predict(self, batch: Batch) -> Output:
        return Output(self.teacher(batch.images))


def test_a_method_gets_the_clean_images_it_asks_for_drawn_with_the_run_seed(cifar_run):
    p = engine.prepare(cifar_run(batch_size=4))
    method = NeedsSource(5)
    record = engine._prepare_source(method, p, CPU, "fp32", lambda *_: None)
    images = torch.cat(method.seen)
    assert images.shape == (5, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert record["n"] == 5 and "uncorrupted versions of the test images" in record["origin"]
    again = engine._prepare_source(NeedsSource(5), p, CPU, "fp32", lambda *_: None)
    assert again["ids_sha256"] == record["ids_sha256"]  # the same draw on a resume
    other_seed = engine.prepare(cifar_run(batch_size=4, seed=1))
    assert engine._prepare_source(NeedsSource(5), other_seed, CPU, "fp32", lambda *_: None)["ids_sha256"] != \
        record["ids_sha256"]
    assert engine._prepare_source(NeedsSource(0), p, CPU, "fp32", lambda *_: None) is None


def test_source_data_from_a_folder_and_a_clear_error_without_one(tmp_path, tiny_config):
    write_images(tmp_path / "val", {w: 2 for w in WNIDS})
    write_images(tmp_path / "train", {w: 3 for w in WNIDS})
    published = tiny_config(suite="imagenet", data_root=str(tmp_path / "val"), allow_partial=True)
    p = engine.prepare(published)
    with pytest.raises(UserError, match="--source-data"):
        engine._prepare_source(NeedsSource(4), p, CPU, "fp32", lambda *_: None)
    p.cfg.source_data = str(tmp_path / "train")
    method = NeedsSource(4)
    record = engine._prepare_source(method, p, CPU, "fp32", lambda *_: None)
    assert record["origin"].startswith("--source-data") and sum(len(b) for b in method.seen) == 4
