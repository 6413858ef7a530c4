"""The ``generated`` source: corruptions applied on the fly to a clean set, per sample deterministic."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import WNIDS, image_stack, write_arrays, write_images
from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.data.build import load_suite
from tta_bench.errors import UserError
from tta_bench.report.runs import run_label
from tta_bench.vocabulary import PREDICTIONS


def _generated(suite, root, **kw):
    return load_suite(RunConfig(suite=suite, source="generated", data_root=str(root), **kw))


def _pixels(source, i) -> np.ndarray:
    return np.asarray(source.load(i))


@pytest.fixture
def clean_imagenet(tmp_path):
    write_images(tmp_path / "clean", {w: 2 for w in WNIDS})
    return tmp_path / "clean"


@pytest.fixture
def clean_cifar(tmp_path):
    images = image_stack(6)
    write_arrays(tmp_path / "clean", {"images": images}, [3, 8, 8, 0, 6, 6])
    return tmp_path / "clean", images


def test_imagenet_c_family_on_a_clean_wnid_folder(clean_imagenet):
    data = _generated("imagenet-c", clean_imagenet, corruptions=["gaussian_noise", "contrast"], severities=[1, 5])
    assert data.generated and not data.partial
    assert [s.name for s in data.splits] == ["gaussian_noise-1", "gaussian_noise-5", "contrast-1", "contrast-5"]
    clean = load_suite(RunConfig(suite="imagenet", data_root=str(clean_imagenet), allow_partial=True)).splits[0].source
    for split in data.splits:
        assert split.source.ids == clean.ids and split.source.labels == clean.labels == [0, 0, 1, 1, 2, 2]
    noisy = _pixels(data.splits[1].source, 0)
    assert noisy.shape == (224, 224, 3) and noisy.dtype == np.uint8  # ImageNet-C geometry: resize 256, crop 224
    assert np.abs(noisy.astype(int) - _pixels(data.splits[0].source, 0)).mean() > 1  # severity matters


def test_cifar_c_family_on_a_cifar_npy(clean_cifar):
    root, images = clean_cifar
    (split,) = _generated("cifar10-c", root, corruptions=["gaussian_noise"]).splits
    assert split.source.labels == [3, 8, 8, 0, 6, 6] and split.source.ids == [str(i) for i in range(6)]
    out = _pixels(split.source, 4)
    assert out.shape == (32, 32, 3)
    assert np.abs(out.astype(int) - images[4]).mean() > 1


def test_generated_images_are_deterministic_per_sample_whatever_the_selection(clean_imagenet):
    kw = dict(corruptions=["gaussian_noise"], severities=[3])
    full = _generated("imagenet-c", clean_imagenet, **kw).splits[0].source
    limited = _generated("imagenet-c", clean_imagenet, limit=3, **kw).splits[0].source
    assert len(limited) == 3
    for i, sample_id in enumerate(limited.ids):
        j = full.ids.index(sample_id)
        assert np.array_equal(_pixels(limited, i), _pixels(full, j))
    assert np.array_equal(_pixels(full, 1), _pixels(full, 1))
    assert not np.array_equal(_pixels(full, 0), _pixels(full, 1))
    other_seed = _generated("imagenet-c", clean_imagenet, seed=1, **kw).splits[0].source
    assert not np.array_equal(_pixels(other_seed, 0), _pixels(full, 0))


def test_engine_on_generated_data_keeps_the_clean_labels(clean_cifar, tmp_path):
    root, _ = clean_cifar
    cfg = RunConfig(suite="cifar10-c", source="generated", data_root=str(root), corruptions=["fog", "pixelate"],
                    teacher="tiny", num_workers=0, device="cpu", out=str(tmp_path / "run"))
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["source"] == "generated" and summary["data"]["generated"] is True
    assert set(summary["splits"]) == {"fog-5", "pixelate-5"}
    records = [json.loads(line) for line in (tmp_path / "run" / PREDICTIONS).read_text().splitlines()]
    labels = [3, 8, 8, 0, 6, 6]
    assert len(records) == 12 and all(r["label"] == labels[int(r["id"])] for r in records)


def test_generated_needs_a_corruption_suite(clean_imagenet):
    with pytest.raises(UserError, match="use a corruption suite"):
        _generated("imagenet", clean_imagenet)


def test_a_generated_run_records_the_size_of_its_clean_set_before_limit(clean_imagenet, tmp_path):
    data = _generated("imagenet-c", clean_imagenet, corruptions=["fog"], limit=2)
    assert data.protocol() == {"stored": 224, "class_list": None, "generated_from": {
        "suite": "imagenet", "images": 6, "expected": 50_000, "complete": False}}
    summary = engine.run(RunConfig(suite="imagenet-c", source="generated", data_root=str(clean_imagenet),
                                   corruptions=["fog"], teacher="tiny", num_workers=0, device="cpu",
                                   out=str(tmp_path / "run")), progress=False, log=lambda *_: None)
    assert summary["data"]["generated_from"]["images"] == 6
    assert run_label(summary) == "source (tiny) [generated from 6 images]"


def test_a_corruption_asked_for_twice_is_refused_whatever_the_source(clean_imagenet):
    """TENT on fog,fog continual adapted twice over fog and recorded it once."""
    with pytest.raises(UserError, match="split fog-5 is asked for twice"):
        load_suite(RunConfig(suite="imagenet-c", source="generated", data_root=str(clean_imagenet),
                             corruptions=["fog", "fog"]))
