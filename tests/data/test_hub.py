"""The ``hub`` source offline: a dataset saved with ``save_to_disk``, and an imagefolder directory."""
from __future__ import annotations

import json
import shutil

import datasets
import numpy as np
import pytest
from PIL import Image

from conftest import TABBY_WNID, image_stack, write_images
from tta_bench import engine
from tta_bench.cli import main
from tta_bench.config import RunConfig
from tta_bench.data.build import load_suite
from tta_bench.data.labels import class_list, label_space
from tta_bench.data.suites import SUITES
from tta_bench.errors import DataError, UserError
from tta_bench.vocabulary import PREDICTIONS


@pytest.fixture(autouse=True)
def _private_hf_cache(tmp_path, monkeypatch):
    """imagefolder builds a cache: keep it in the test's temp dir, and never reach the network."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def _save(path, images, labels, label_feature, image_key="img", label_key="label"):
    features = datasets.Features({image_key: datasets.Image(), label_key: label_feature})
    ds = datasets.Dataset.from_dict({image_key: [Image.fromarray(a) for a in images], label_key: labels},
                                    features=features)
    ds.save_to_disk(str(path))
    return path


def _hub(suite, root, **kw):
    return load_suite(RunConfig(suite=suite, source="hub", data_root=str(root), allow_partial=True, **kw))


def test_save_to_disk_with_class_names_maps_through_the_suites_label_space(tmp_path):
    # the dataset numbers its classes within its own list: dog=0, airplane=1, truck=2
    names = datasets.ClassLabel(names=["dog", "airplane", "truck"])
    images = image_stack(4)
    _save(tmp_path / "saved", images, [0, 1, 2, 0], names)
    (split,) = _hub("cifar10", tmp_path / "saved").splits
    assert split.name == "cifar10"
    assert split.source.labels == [5, 0, 9, 5]
    assert split.source.ids == ["cifar10/0", "cifar10/1", "cifar10/2", "cifar10/3"]
    assert np.array_equal(np.asarray(split.source.load(2)), images[2])


def test_save_to_disk_with_plain_integer_labels_and_the_suites_column_names(tmp_path):
    _save(tmp_path / "saved", image_stack(3), [7, 0, 99], datasets.Value("int64"), label_key="fine_label")
    (split,) = _hub("cifar100", tmp_path / "saved").splits
    assert split.source.labels == [7, 0, 99]


def _official(suite):
    space = label_space("imagenet1k")
    return [space.index_of(w) for w in class_list(suite)]


def test_a_200_class_copy_with_wnid_names_keeps_all_200_classes_in_the_head(tmp_path):
    names = datasets.ClassLabel(names=["n01443537", TABBY_WNID])  # a 2-class copy of a 200-class suite
    _save(tmp_path / "saved", image_stack(3), [1, 0, 1], names, image_key="image")
    data = _hub("imagenet-r", tmp_path / "saved")
    assert data.splits[0].source.labels == [281, 1, 281]
    assert data.classes == _official("imagenet-r") and len(data.classes) == 200


@pytest.mark.parametrize("suite", ["imagenet-r", "imagenet-a"])
def test_integer_labels_of_a_200_class_copy_index_the_official_list_by_default(tmp_path, suite):
    _save(tmp_path / "saved", image_stack(3), [0, 1, 199], datasets.Value("int64"), image_key="image")
    official = _official(suite)
    assert _hub(suite, tmp_path / "saved").splits[0].source.labels == [official[0], official[1], official[199]]


def test_label_index_imagenet1k_reads_integers_as_imagenet_indices(tmp_path):
    _save(tmp_path / "saved", image_stack(2), [1, 281], datasets.Value("int64"), image_key="image")
    data = _hub("imagenet-r", tmp_path / "saved", label_index="imagenet1k")
    assert data.splits[0].source.labels == [1, 281]


def test_labels_that_contradict_the_declared_index_stop_naming_the_option(tmp_path):
    _save(tmp_path / "big", image_stack(2), [1, 281], datasets.Value("int64"), image_key="image")
    with pytest.raises(DataError, match="label 281 found, but label_index 'suite'.*--label-index imagenet1k"):
        _hub("imagenet-r", tmp_path / "big")  # the suite's default for its Hub ids: 0..199 within its classes
    _save(tmp_path / "small", image_stack(2), [0, 3], datasets.Value("int64"), image_key="image")
    with pytest.raises(DataError, match=r"labels \[0, 3\] are not ImageNet-1k indices.*--label-index suite"):
        _hub("imagenet-r", tmp_path / "small", label_index="imagenet1k")


def test_all_labels_below_200_on_a_1000_class_suite_stop_unless_declared(tmp_path):
    _save(tmp_path / "saved", image_stack(3), [5, 150, 7], datasets.Value("int64"))
    with pytest.raises(DataError, match="all 3 labels are below 200 on a 1000-class suite.*--label-index imagenet1k"):
        _hub("imagenet", tmp_path / "saved")
    assert _hub("imagenet", tmp_path / "saved", label_index="imagenet1k").splits[0].source.labels == [5, 150, 7]


def test_a_class_outside_the_official_list_is_refused_naming_it(tmp_path):
    names = datasets.ClassLabel(names=["n01443537", "n01440764"])  # tench is not an ImageNet-R class
    _save(tmp_path / "saved", image_stack(2), [0, 1], names, image_key="image")
    with pytest.raises(DataError, match=r"holds 1 class\(es\) outside its official 200.*n01440764 \(e.g. imagenet-r/1\)"):
        _hub("imagenet-r", tmp_path / "saved")


def test_class_names_with_synonyms_after_a_comma_map_to_their_class(tmp_path):
    names = datasets.ClassLabel(names=["tench, Tinca tinca", "tabby, tabby cat", "goldfish, Carassius auratus"])
    _save(tmp_path / "saved", image_stack(3), [0, 1, 2], names)
    assert _hub("imagenet", tmp_path / "saved").splits[0].source.labels == [0, 281, 1]


def test_a_full_list_of_lemma_names_maps_names_of_several_classes_by_position(tmp_path):
    """WordNet calls two ImageNet classes "crane" (the bird, 134; the machine, 517) and 638 "maillot" (639 is
    "maillot, tank suit"): in a list of all 1000 names the standard order tells them apart; a short list with such a
    name is refused rather than guessed."""
    lemmas = [", ".join(s) for s in label_space("imagenet1k").synonyms]
    assert lemmas[134] == lemmas[517] == "crane" and lemmas[638] == "maillot"
    lemmas[517] = "construction crane"  # ClassLabel names must be unique: the machine by its CLIP name
    _save(tmp_path / "full", image_stack(4), [134, 517, 638, 639], datasets.ClassLabel(names=lemmas))
    assert _hub("imagenet", tmp_path / "full").splits[0].source.labels == [134, 517, 638, 639]
    _save(tmp_path / "short", image_stack(1), [0], datasets.ClassLabel(names=["crane", "tench"]))
    with pytest.raises(DataError, match="'crane' fits several imagenet1k classes"):
        _hub("imagenet", tmp_path / "short")


def test_image_and_label_columns_can_be_named(tmp_path):
    _save(tmp_path / "saved", image_stack(2), [3, 4], datasets.Value("int64"), image_key="picture", label_key="y")
    with pytest.raises(DataError, match="none of the columns .* it has \\['picture', 'y'\\]: name it with --image-column"):
        _hub("cifar10", tmp_path / "saved")
    (split,) = _hub("cifar10", tmp_path / "saved", image_column="picture", label_column="y").splits
    assert split.source.labels == [3, 4] and split.source.load(0).size == (32, 32)
    with pytest.raises(DataError, match="--label-column 'target': the dataset has no such column"):
        _hub("cifar10", tmp_path / "saved", image_column="picture", label_column="target")


def test_class_index_names_are_read_as_integers_not_by_their_sorted_position(tmp_path):
    _save(tmp_path / "saved", image_stack(3), [0, 1, 2], datasets.ClassLabel(names=["0", "10", "2"]))
    data = _hub("imagenet-v2", tmp_path / "saved", label_index="imagenet1k")
    assert data.splits[0].source.labels == [0, 10, 2]


def test_known_hub_ids_carry_their_documented_label_index():
    spec = SUITES.get("imagenet-r")
    assert spec.hub_copy(None).id == "axiong/imagenet-r" and spec.hub_copy(None).label_index == "suite"
    assert spec.hub_copy("clip-benchmark/wds_imagenet-r").image_key == "webp"
    assert spec.hub_copy("someone/else").label_index is None  # undocumented: the suite's label_index applies
    assert SUITES.get("imagenet").hub_copy(None).label_index == "imagenet1k"


def test_generated_corruptions_of_a_saved_hub_clean_set(tmp_path):
    _save(tmp_path / "saved", image_stack(2), [4, 7], datasets.Value("int64"))
    cfg = RunConfig(suite="cifar10-c", source="generated", data_root=str(tmp_path / "saved"), corruptions=["fog"])
    (split,) = load_suite(cfg).splits
    assert split.source.labels == [4, 7] and np.asarray(split.source.load(1)).shape == (32, 32, 3)


def test_labels_outside_the_label_space_are_refused(tmp_path):
    _save(tmp_path / "saved", image_stack(2), [3, 10], datasets.Value("int64"))
    with pytest.raises(DataError, match="outside the cifar10 label space"):
        _hub("cifar10", tmp_path / "saved")


def test_unknown_class_names_are_refused(tmp_path):
    _save(tmp_path / "saved", image_stack(1), [0], datasets.ClassLabel(names=["spaceship"]))
    with pytest.raises(DataError, match="'spaceship' is neither"):
        _hub("cifar10", tmp_path / "saved")


def test_imagefolder_dir_labels_by_folder_name(tmp_path):
    write_images(tmp_path / "folder", {"truck": 1, "cat": 2}, suffix=".png", size=32)
    (split,) = _hub("cifar10", tmp_path / "folder").splits
    assert sorted(split.source.labels) == [3, 3, 9]
    assert split.source.load(0).size == (32, 32)


def test_a_missing_hub_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _hub("cifar10", tmp_path / "nowhere")


def test_corruption_suites_have_no_hub_copy(tmp_path):
    with pytest.raises(UserError, match="no standard Hugging Face copy"):
        _hub("cifar10-c", tmp_path)


def test_engine_runs_on_a_saved_hub_dataset(tmp_path):
    _save(tmp_path / "saved", image_stack(5), [0, 1, 2, 3, 4], datasets.Value("int64"))
    cfg = RunConfig(suite="cifar10", source="hub", data_root=str(tmp_path / "saved"), allow_partial=True,
                    teacher="tiny", num_workers=0, device="cpu", out=str(tmp_path / "run"))
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["source"] == "hub" and summary["splits"]["cifar10"]["n"] == 5
    records = [json.loads(line) for line in (tmp_path / "run" / PREDICTIONS).read_text().splitlines()]
    assert sorted((r["id"], r["label"]) for r in records) == [(f"cifar10/{i}", i) for i in range(5)]


def test_a_hub_copy_swapped_between_a_kill_and_the_rerun_stops_the_resume(tmp_path):
    """Hub ids are row numbers: the same for any copy of that size."""
    _save(tmp_path / "saved", image_stack(6), [0, 1, 2, 3, 4, 5], datasets.Value("int64"))
    cfg = RunConfig(suite="cifar10", source="hub", data_root=str(tmp_path / "saved"), allow_partial=True,
                    teacher="tiny", num_workers=0, device="cpu", out=str(tmp_path / "run"))
    engine.run(cfg, progress=False, log=lambda *_: None)
    predictions = tmp_path / "run" / PREDICTIONS
    predictions.write_text("".join(predictions.read_text().splitlines(keepends=True)[:3]))  # killed half-way
    (tmp_path / "run" / "summary.json").unlink()
    shutil.rmtree(tmp_path / "saved")
    _save(tmp_path / "saved", image_stack(6, offset=50), [0, 1, 2, 3, 4, 5], datasets.Value("int64"))
    with pytest.raises(UserError, match=r"split\(s\) cifar10 \(Hugging Face dataset fingerprint\) changed"):
        engine.run(cfg, progress=False, log=lambda *_: None)


def test_a_hub_copy_of_another_test_split_gets_its_own_split_name(tmp_path):
    images = image_stack(3)
    _save(tmp_path / "flowers", images, [0, 1, 101], datasets.Value("int64"), image_key="webp", label_key="cls")
    data = load_suite(RunConfig(suite="flowers102", source="hub", data_root=str(tmp_path / "flowers")))
    (split,) = data.splits
    assert split.name == "flowers102@official" and split.source.labels == [0, 1, 101]
    assert not data.partial and "not comparable" in data.notes[0]  # no size check against CoOp's 2,463
    _save(tmp_path / "pets", images, [0, 1, 36], datasets.Value("int64"), image_key="webp", label_key="cls")
    with pytest.raises(DataError, match="expected 3,669"):  # the same test set as CoOp's: its size is checked
        load_suite(RunConfig(suite="pets", source="hub", data_root=str(tmp_path / "pets")))
    assert _hub("pets", tmp_path / "pets").splits[0].name == "pets"


def test_suites_without_a_hub_copy_say_so(tmp_path):
    with pytest.raises(UserError, match="no standard Hugging Face copy.*--hub-id"):
        load_suite(RunConfig(suite="ucf101", source="hub"))
    for suite in ("domainnet126", "ccc-medium"):
        with pytest.raises(UserError, match="no standard Hugging Face copy|generated on the fly"):
            load_suite(RunConfig(suite=suite, source="hub", data_root=str(tmp_path)))


def _save_splits(path, splits):
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    datasets.DatasetDict({name: datasets.Dataset.from_dict(
        {"img": [Image.fromarray(a) for a in image_stack(n, offset=k)], "label": list(range(n))}, features=features)
        for k, (name, n) in enumerate(splits.items())}).save_to_disk(str(path))
    return path


def test_a_mistyped_hub_split_stops_listing_the_splits_there_are(tmp_path):
    _save_splits(tmp_path / "saved", {"train": 4, "test": 3})
    with pytest.raises(DataError, match=r"--hub-split 'valdiation': .* no such split; it has train, test"):
        _hub("cifar10", tmp_path / "saved", hub_split="valdiation")
    assert len(_hub("cifar10", tmp_path / "saved", hub_split="train").splits[0].source) == 4


def test_a_copy_without_the_suites_split_stops_instead_of_reading_another(tmp_path):
    _save_splits(tmp_path / "saved", {"train": 4})
    with pytest.raises(DataError, match=r"has no 'test' split \(it has train\): .* --hub-split"):
        _hub("cifar10", tmp_path / "saved")


def test_the_summary_records_the_split_read(tmp_path):
    _save_splits(tmp_path / "saved", {"train": 4, "test": 3})
    cfg = RunConfig(suite="cifar10", source="hub", data_root=str(tmp_path / "saved"), allow_partial=True,
                    teacher="tiny", num_workers=0, device="cpu", out=str(tmp_path / "run"))
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["data"]["hub_split"] == "test" and summary["splits"]["cifar10"]["n"] == 3


@pytest.mark.parametrize("feature, labels, message", [
    (datasets.Value("float64"), [3.5, 1.0, 2.0], r"holds float64 labels \(e.g. 3.5\)"),
    (datasets.Value("string"), ["cat", "dog", "cat"], r"holds string labels \(e.g. 'cat'\).*ClassLabel"),
    (datasets.Value("int64"), [1, None, 2], r"row 1 has no label \(None\)"),
])
def test_labels_that_are_not_integers_are_refused_in_one_line(tmp_path, capsys, feature, labels, message):
    """A float 3.5 would be read as class 3; a string or None would end in a traceback."""
    _save(tmp_path / "saved", image_stack(3), labels, feature)
    with pytest.raises(DataError, match=message):
        _hub("cifar10", tmp_path / "saved")
    capsys.readouterr()  # the save's progress bar
    code = main(["--suite", "cifar10", "--source", "hub", "--data-root", str(tmp_path / "saved"), "--allow-partial",
                 "--teacher", "tiny", "--workers", "0", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_empty_copy_is_refused_in_one_line(tmp_path):
    _save(tmp_path / "saved", [], [], datasets.Value("int64"))
    with pytest.raises(DataError, match=r"cannot read .*saved as a save_to_disk folder \(an empty dataset"):
        _hub("cifar10", tmp_path / "saved")


def test_an_integer_image_column_is_refused_naming_the_option(tmp_path):
    features = datasets.Features({"img": datasets.Value("int64"), "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"img": [1, 2, 3], "label": [0, 1, 2]}, features=features).save_to_disk(
        str(tmp_path / "saved"))
    with pytest.raises(DataError, match=r"column 'img' holds int64 values, not images.*--image-column"):
        _hub("cifar10", tmp_path / "saved")


def test_a_mistyped_split_of_a_copy_by_id_is_one_line(tmp_path, monkeypatch):
    from tta_bench import network

    monkeypatch.setattr(network, "hub_reachable", lambda: False)
    write_images(tmp_path / "folder", {"truck": 1, "cat": 2}, suffix=".png", size=32)
    with pytest.raises(DataError, match=r"no split 'valdiation' .*Should be one of \['train'\].*--hub-split"):
        load_suite(RunConfig(suite="cifar10", source="hub", hub_id=str(tmp_path / "folder"), hub_split="valdiation"))
