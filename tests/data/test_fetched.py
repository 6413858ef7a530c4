"""A suite marked ``fetch`` (CIFAR-10) runs without --data-root: its Hub copy is read once (here a local stand-in
served in place of the Hub), checked against the published size, and cached as arrays that later runs read."""
from __future__ import annotations

import dataclasses

import datasets
import numpy as np
import pytest
from PIL import Image

from conftest import image_stack
from tta_bench.config import RunConfig
from tta_bench.data import fetched
from tta_bench.data.build import load_suite
from tta_bench.data.labels import label_space
from tta_bench.data.suites import SUITES
from tta_bench.errors import DataError, UserError

N = 20


@pytest.fixture
def hub(monkeypatch):
    """The Hub's answer for the CIFAR-10 test set: N images, class names as the Hub copy has them."""
    images, labels = image_stack(N), [i % 10 for i in range(N)]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=list(label_space("cifar10").keys))})
    copy = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in images], "label": labels}, features=features)
    asked = []

    def load_dataset(spec, split, data_root):
        asked.append((spec.id, split or spec.split, data_root))
        return copy

    monkeypatch.setattr(fetched, "load_dataset", load_dataset)
    return images, labels, asked


def test_the_cifar10_test_set_is_fetched_once_and_cached_as_arrays(hub, registries):
    images, labels, asked = hub
    clean = SUITES.get("cifar10")  # the stand-in is the whole test set here
    SUITES.override("cifar10", dataclasses.replace(clean, expected_images=N), SUITES.entry("cifar10").help)
    suite = load_suite(RunConfig(suite="cifar10-c", source="generated", corruptions=["fog"]))
    assert asked == [("uoft-cs/cifar10", "test", None)]
    folder = fetched.fetched_folder(SUITES.get("cifar10"))
    np.testing.assert_array_equal(np.load(folder / "images.npy", allow_pickle=False), images)
    assert np.load(folder / "labels.npy", allow_pickle=False).tolist() == labels
    assert suite.splits[0].name == "fog-5" and suite.splits[0].source.labels == labels
    load_suite(RunConfig(suite="cifar10", source="published"))  # the clean suite too, from the same cache
    assert len(asked) == 1


def test_a_copy_of_another_size_is_refused_and_nothing_is_cached(hub):
    with pytest.raises(DataError, match=f"uoft-cs/cifar10 \\(test\\) holds {N} images, not the 10,000 of the "
                                        "cifar10 test set; give a copy with --data-root PATH"):
        load_suite(RunConfig(suite="cifar10-c", source="generated", corruptions=["fog"]))
    assert not fetched.fetched_folder(SUITES.get("cifar10")).exists()


def test_suites_without_fetch_still_need_a_data_root():
    spec = SUITES.get("imagenet")
    assert not spec.fetch and SUITES.get("cifar10").fetch
    with pytest.raises(UserError, match="imagenet needs --data-root: the folder of <root>/<wnid>/"):
        load_suite(RunConfig(suite="imagenet-c", source="generated", corruptions=["fog"]))
