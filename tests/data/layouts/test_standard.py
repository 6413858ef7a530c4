"""Every published on-disk layout, built in a temp dir from generated images and read through ``load_suite``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TABBY_WNID as TABBY, WNIDS, image_stack, write_arrays, write_images
from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.data.layouts import LAYOUTS
from tta_bench.data.build import load_suite
from tta_bench.data.labels import class_list, label_space
from tta_bench.errors import DataError
from tta_bench.vocabulary import PREDICTIONS

LEOPARD = "n02128385"  # ImageNet class 288


def _load(suite: str, root: Path, **kw):
    return load_suite(RunConfig(suite=suite, data_root=str(root), allow_partial=True, **kw))


def test_wnid_folders_use_the_standard_label_order_not_the_folders_present(tmp_path):
    write_images(tmp_path, {TABBY: 2, WNIDS[1]: 1})
    (tmp_path / TABBY / "notes.txt").write_text("not an image")
    data = _load("imagenet", tmp_path)
    (split,) = data.splits
    assert split.name == "imagenet"
    assert split.source.ids == ["n01443537/img_000.JPEG", f"{TABBY}/img_000.JPEG", f"{TABBY}/img_001.JPEG"]
    assert split.source.labels == [1, 281, 281]
    assert data.classes == list(range(1000))
    assert split.source.load(1).mode == "RGB"


def test_an_incomplete_dataset_stops_unless_allow_partial(tmp_path):
    write_images(tmp_path, {w: 1 for w in WNIDS})
    with pytest.raises(DataError, match="(?s)not the complete published dataset.*--allow-partial"):
        load_suite(RunConfig(suite="imagenet", data_root=str(tmp_path)))
    data = _load("imagenet", tmp_path)
    assert data.partial and "found 3 images in 3 classes, expected 50,000" in data.notes[0]


IN_R_AND_A = ("n01498041", "n01531178", "n01534433")  # ImageNet classes 6, 11, 13: in both official lists
NEITHER = ("n01440764", "n01491361")  # ImageNet classes 0 and 3: in neither list


def _official(suite: str) -> list[int]:
    space = label_space("imagenet1k")
    return [space.index_of(w) for w in class_list(suite)]


@pytest.mark.parametrize("suite", ["imagenet-r", "imagenet-a"])
def test_200_class_suites_score_the_official_200_classes_whatever_the_copy_holds(tmp_path, suite):
    write_images(tmp_path / "data", {IN_R_AND_A[0]: 2, IN_R_AND_A[1]: 2, IN_R_AND_A[2]: 1})
    data = _load(suite, tmp_path / "data")
    assert data.classes == _official(suite) and len(data.classes) == 200
    assert data.partial and "in 3 classes, expected" in data.notes[0] and " in 200" in data.notes[0]
    summary = engine.run(RunConfig(suite=suite, data_root=str(tmp_path / "data"), allow_partial=True, teacher="tiny",
                                   num_workers=0, device="cpu", out=str(tmp_path / "run")), progress=False,
                         log=lambda *_: None)
    records = [json.loads(line) for line in (tmp_path / "run" / PREDICTIONS).read_text().splitlines()]
    assert len(records) == 5
    assert all(r["pred"] in data.classes and set(r["top5"]) <= set(data.classes) for r in records)
    assert {r["label"] for r in records} == {6, 11, 13}
    assert summary["data"]["classes"] == 200 and summary["data"]["class_list"] == suite


def test_limit_never_shrinks_the_label_space(tmp_path):
    """--limit 2 samples two of the copy's classes; the logits stay restricted to all 200 (not to the 2 sampled,
    which would let a 2-way guess score as a 200-way one)."""
    write_images(tmp_path, {w: 2 for w in IN_R_AND_A})
    data = _load("imagenet-r", tmp_path, limit=2)
    assert len({*data.splits[0].source.labels}) == 2 and data.subset == "limit-2"
    assert data.classes == _official("imagenet-r")


@pytest.mark.parametrize("suite", ["imagenet-r", "imagenet-a"])
def test_a_copy_with_classes_outside_the_official_list_is_refused_naming_them(tmp_path, suite):
    write_images(tmp_path, {IN_R_AND_A[0]: 1, NEITHER[1]: 1, NEITHER[0]: 2})
    with pytest.raises(DataError, match=rf"{suite} under .* holds 2 class\(es\) outside its official 200 .*"
                                        r"n01440764 \(e.g. n01440764/img_000.JPEG\), n01491361 \(e.g. n01491361/"):
        _load(suite, tmp_path)


def test_a_copy_missing_listed_classes_is_partial(tmp_path):
    write_images(tmp_path, {w: 1 for w in IN_R_AND_A})
    with pytest.raises(DataError, match="(?s)not the complete published dataset.*in 3 classes, expected 30,000 in 200"):
        load_suite(RunConfig(suite="imagenet-r", data_root=str(tmp_path)))


def test_v2_index_folders_label_by_int_of_the_folder_name_not_sorted_string_order(tmp_path):
    write_images(tmp_path, {"0": 1, "1": 1, "10": 1, "2": 1, "100": 1, "999": 1})
    (split,) = _load("imagenet-v2", tmp_path).splits
    by_folder = {i.split("/")[0]: y for i, y in zip(split.source.ids, split.source.labels)}
    assert by_folder == {"0": 0, "1": 1, "10": 10, "2": 2, "100": 100, "999": 999}


@pytest.mark.parametrize("folder", ["1000", "n01440764", "-1"])
def test_v2_rejects_folders_that_are_not_class_indices(tmp_path, folder):
    write_images(tmp_path, {"3": 1, folder: 1})
    with pytest.raises(DataError, match="expected a class-index folder 0..999"):
        _load("imagenet-v2", tmp_path)


def test_imagenet_c_nested_folders_give_one_split_per_corruption_and_severity(tmp_path):
    write_images(tmp_path, {f"{c}/{s}/{w}": 1 for c in ("gaussian_noise", "fog") for s in (3, 5) for w in WNIDS[:2]})
    data = _load("imagenet-c", tmp_path, corruptions=["gaussian_noise", "fog"], severities=[3, 5])
    assert [(s.name, s.corruption, s.severity) for s in data.splits] == [
        ("gaussian_noise-3", "gaussian_noise", 3), ("gaussian_noise-5", "gaussian_noise", 5),
        ("fog-3", "fog", 3), ("fog-5", "fog", 5)]
    fog5 = data.splits[3].source
    assert fog5.ids == ["fog/5/n01440764/img_000.JPEG", "fog/5/n01443537/img_000.JPEG"]
    assert fog5.labels == [0, 1]


def test_imagenet_c_missing_domains_are_named_and_need_allow_partial(tmp_path):
    write_images(tmp_path, {f"gaussian_noise/5/{WNIDS[0]}": 1})
    cfg = dict(suite="imagenet-c", data_root=str(tmp_path), corruptions=["gaussian_noise", "fog"])
    with pytest.raises(DataError, match="missing: fog/5"):
        load_suite(RunConfig(**cfg))
    data = load_suite(RunConfig(**cfg, allow_partial=True))
    assert [s.name for s in data.splits] == ["gaussian_noise-5"] and data.partial


def test_imagenet_c_with_images_directly_under_the_severity_folder_is_refused(tmp_path):
    write_images(tmp_path, {"gaussian_noise/5": 2})
    with pytest.raises(DataError, match="holds no class folders"):
        _load("imagenet-c", tmp_path, corruptions=["gaussian_noise"])


def test_cifar_c_slices_the_10000_images_of_each_severity(tmp_path):
    # 1x1 images keep the five real 10,000-image severity blocks cheap; each row's pixel encodes its row number
    rows = np.arange(50_000)
    array = np.stack([rows % 256, rows // 256 % 256, np.zeros_like(rows)], axis=1).astype(np.uint8)[:, None, None, :]
    labels = rows * 7 % 10
    write_arrays(tmp_path, {"fog": array}, labels)
    data = load_suite(RunConfig(suite="cifar10-c", data_root=str(tmp_path), corruptions=["fog"], severities=[1, 3]))
    assert [s.name for s in data.splits] == ["fog-1", "fog-3"] and not data.partial
    sev3 = data.splits[1].source
    assert len(sev3) == 10_000 and sev3.labels == labels[20_000:30_000].tolist()
    assert sev3.ids[0] == "20000"
    assert np.array_equal(np.asarray(sev3.load(5)), array[20_005])


def test_cifar_c_array_length_must_match_labels(tmp_path):
    write_arrays(tmp_path, {"fog": image_stack(6)}, range(5))
    with pytest.raises(DataError, match="holds 6 images but labels.npy holds 5 labels"):
        _load("cifar10-c", tmp_path, corruptions=["fog"])


def test_cifar_c_severity_beyond_the_array_is_an_error(tmp_path):
    write_arrays(tmp_path, {"fog": image_stack(4)}, range(4))
    with pytest.raises(DataError, match="no severity 2"):
        _load("cifar10-c", tmp_path, corruptions=["fog"], severities=[2])


@pytest.mark.parametrize("name", ["fog", "labels"])
def test_pickle_bearing_npy_files_are_refused(tmp_path, name):
    write_arrays(tmp_path, {"fog": image_stack(2)}, [0, 1])
    np.save(tmp_path / f"{name}.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="refused to load"):
        _load("cifar10-c", tmp_path, corruptions=["fog"], severities=[1])


def test_cifar_clean_class_name_folders(tmp_path):
    write_images(tmp_path, {"truck": 1, "airplane": 2, "cat": 1}, suffix=".png", size=32)
    (split,) = _load("cifar10", tmp_path).splits
    assert split.source.labels == [0, 0, 3, 9]
    assert split.source.load(3).size == (32, 32)


def test_cifar_clean_npy_keeps_array_order(tmp_path):
    images = image_stack(4)
    write_arrays(tmp_path, {"images": images}, [3, 8, 8, 0])
    (split,) = _load("cifar10", tmp_path).splits
    assert split.source.ordered and split.source.ids == ["0", "1", "2", "3"]
    assert split.source.labels == [3, 8, 8, 0]
    assert np.array_equal(np.asarray(split.source.load(2)), images[2])


def test_cifar100_class_names_map_to_the_standard_fine_label_order(tmp_path):
    write_images(tmp_path, {"apple": 1, "aquarium_fish": 1, "worm": 1}, suffix=".png", size=32)
    (split,) = _load("cifar100", tmp_path).splits
    assert split.source.labels == [0, 1, 99]


def test_every_registered_layout_is_used_by_a_suite():
    from tta_bench.data.suites import SUITES

    assert {e.builder.layout for e in SUITES} == set(LAYOUTS.names())
