"""The ten fine-grained test sets: CoOp's split files (and FGVC Aircraft's variant list) on small generated layouts,
in CoOp's folders and torchvision's, checked against the label space, the published size and the split's hash."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import image_array
from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.data.build import load_suite
from tta_bench.data.layouts.fine_grained import coop_split, list_sha256
from tta_bench.data.labels import FINE_GRAINED, label_space
from tta_bench.data.suites import SUITES
from tta_bench.errors import DataError

COOP_SUITES = [s for s in FINE_GRAINED if s != "aircraft"]
# CoOp's test-set sizes (CoOp paper, Table of datasets; the split files of the unified benchmark agree for seven)
SIZES = {"flowers102": 2463, "dtd": 1692, "pets": 3669, "cars": 8041, "ucf101": 3783, "caltech101": 2465,
         "food101": 30300, "sun397": 19850, "aircraft": 3333, "eurosat": 8100}


def _picture(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_array(seed, 24)).save(path)


def write_coop(root: Path, suite: str, image_dir: str | None = None) -> list[tuple[str, int]]:
    """A CoOp layout with three test images (first, second and last class) and one train image."""
    spec, space = SUITES.get(suite), label_space(suite)
    image_dir = spec.layout_args["image_dirs"][0] if image_dir is None else image_dir
    labels = [0, 1, len(space) - 1]
    test = [[f"{space.keys[y].replace('/', '_')}/im_{k}.jpg", y, space.keys[y]] for k, y in enumerate(labels)]
    split = {"train": [["train/im.jpg", 0, space.keys[0]]], "val": [], "test": test}
    root.mkdir(parents=True, exist_ok=True)
    (root / spec.layout_args["split_files"][0]).write_text(json.dumps(split))
    for k, (path, _, _) in enumerate(test):
        _picture(root / image_dir / path, k)
    return [(path, y) for path, y, _ in test]


def _load(suite: str, root: Path, **kw):
    return load_suite(RunConfig(suite=suite, data_root=str(root), **kw))


@pytest.mark.parametrize("suite", COOP_SUITES)
def test_each_coop_split_reads_its_test_list_in_coops_folder_and_torchvisions(tmp_path, suite):
    spec = SUITES.get(suite)
    for n, image_dir in enumerate(spec.layout_args["image_dirs"]):
        root = tmp_path / f"layout{n}"
        pairs = write_coop(root, suite, image_dir)
        data = _load(suite, root, allow_partial=True)
        (split,) = data.splits
        assert split.name == suite and data.partial
        assert list(zip(split.source.ids, split.source.labels)) == pairs
        assert split.source.load(2).mode == "RGB"
        assert f"found 3 images in 3 classes, expected {SIZES[suite]:,}" in " ".join(data.notes)


@pytest.mark.parametrize("suite", FINE_GRAINED)
def test_the_self_check_knows_each_test_set_size(tmp_path, suite, monkeypatch):
    if suite == "aircraft":
        write_aircraft(tmp_path)
    else:  # a split list with the published fingerprint, so that the size is what stops it
        pairs = write_coop(tmp_path, suite)
        monkeypatch.setitem(SUITES.get(suite).layout_args, "test_sha256", list_sha256(pairs))
    assert SUITES.get(suite).expected_images == SIZES[suite]
    with pytest.raises(DataError, match=f"(?s)expected {SIZES[suite]:,} in {len(label_space(suite))}.*--allow-partial"):
        _load(suite, tmp_path)


def test_a_split_file_is_held_to_its_published_hash(tmp_path):
    pairs = write_coop(tmp_path, "pets")
    space, args = label_space("pets"), SUITES.get("pets").layout_args
    kw = dict(root=tmp_path, space=space, split="pets", split_files=args["split_files"], image_dirs=args["image_dirs"])
    (_, source), = coop_split(**kw, test_sha256=list_sha256(pairs))  # the right list passes
    assert len(source) == 3
    with pytest.raises(DataError, match="not the one of CoOp's split file"):
        coop_split(**kw, test_sha256="0" * 64)
    notes: list[str] = []
    coop_split(**kw, test_sha256="0" * 64, allow_partial=True, notes=notes)
    assert "SHA-256 differs" in notes[0]


def test_a_split_file_of_another_class_list_is_refused(tmp_path):
    write_coop(tmp_path, "dtd")
    path = tmp_path / "split_zhou_DescribableTextures.json"
    split = json.loads(path.read_text())
    split["test"][1][2] = "bumpy"  # label 1 is 'blotchy'
    path.write_text(json.dumps(split))
    with pytest.raises(DataError, match="label 1 to class 'bumpy'.*'blotchy'"):
        _load("dtd", tmp_path, allow_partial=True)


def test_missing_split_file_and_missing_images_are_named(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="split_zhou_EuroSAT.json.*DATASETS.md"):
        _load("eurosat", tmp_path, allow_partial=True)
    pairs = write_coop(tmp_path, "eurosat")
    monkeypatch.setitem(SUITES.get("eurosat").layout_args, "test_sha256", list_sha256(pairs))
    (tmp_path / "2750" / pairs[1][0]).unlink()
    with pytest.raises(DataError, match="1 of the 3 test images are missing"):
        _load("eurosat", tmp_path)
    data = _load("eurosat", tmp_path, allow_partial=True)
    assert data.splits[0].source.ids == [pairs[0][0], pairs[2][0]] and data.partial


def test_a_duplicate_entry_of_a_split_file_is_refused(tmp_path):
    """Three planned samples would have written two records, silently."""
    write_coop(tmp_path, "pets")
    path = tmp_path / "split_zhou_OxfordPets.json"
    split = json.loads(path.read_text())
    split["test"].append(split["test"][0])
    path.write_text(json.dumps(split))
    with pytest.raises(DataError, match=r"split_zhou_OxfordPets.json: 'abyssinian/im_0.jpg' is listed twice "
                                        r"\(test\[0\] and test\[3\]\)"):
        _load("pets", tmp_path, allow_partial=True)


@pytest.mark.parametrize("absolute", [False, True])
def test_a_split_file_entry_outside_the_data_root_is_refused(tmp_path, absolute):
    write_coop(tmp_path / "pets", "pets")
    _picture(tmp_path / "outside.jpg", 9)
    path = tmp_path / "pets" / "split_zhou_OxfordPets.json"
    split = json.loads(path.read_text())
    split["test"][1][0] = str(tmp_path / "outside.jpg") if absolute else "../../outside.jpg"
    path.write_text(json.dumps(split))
    with pytest.raises(DataError, match=r"test\[1\] is .* outside the data root"):
        _load("pets", tmp_path / "pets", allow_partial=True)


def test_a_duplicate_or_escaping_line_of_the_aircraft_test_list_is_refused(tmp_path):
    write_aircraft(tmp_path)
    test_list = tmp_path / "data" / "images_variant_test.txt"
    test_list.write_text("0034309 A320\n1514522 707-320\n0034309 A320\n")
    with pytest.raises(DataError, match=r"'images/0034309.jpg' is listed twice \(line 1 and line 3\)"):
        _load("aircraft", tmp_path, allow_partial=True)
    test_list.write_text("0034309 A320\n../../../x 707-320\n")
    with pytest.raises(DataError, match="line 2 is 'images/../../../x.jpg', outside the data root"):
        _load("aircraft", tmp_path, allow_partial=True)


def write_aircraft(root: Path, variants: tuple[str, ...] | None = None) -> None:
    space = label_space("aircraft")
    (root / "data").mkdir(parents=True)
    (root / "data" / "variants.txt").write_text("\n".join(variants or space.keys) + "\n")
    (root / "data" / "images_variant_test.txt").write_text("0034309 A320\n1514522 707-320\n")
    for k, image in enumerate(("0034309", "1514522")):
        _picture(root / "data" / "images" / f"{image}.jpg", k)


def test_aircraft_reads_the_variant_test_list_by_the_order_of_variants_txt(tmp_path):
    write_aircraft(tmp_path)
    (split,) = _load("aircraft", tmp_path, allow_partial=True).splits
    space = label_space("aircraft")
    assert split.source.ids == ["images/0034309.jpg", "images/1514522.jpg"]
    assert split.source.labels == [space.index_of("A320"), 0]
    other = tmp_path / "other"
    write_aircraft(other, tuple(reversed(space.keys)))
    with pytest.raises(DataError, match="published order"):
        _load("aircraft", other, allow_partial=True)


@pytest.mark.parametrize("suite", FINE_GRAINED)
def test_every_fine_grained_suite_runs_end_to_end(tmp_path, suite):
    if suite == "aircraft":
        write_aircraft(tmp_path / "data")
    else:
        write_coop(tmp_path / "data", suite)
    cfg = RunConfig(suite=suite, data_root=str(tmp_path / "data"), allow_partial=True, teacher="tiny",
                    num_workers=0, device="cpu", out=str(tmp_path / "run"))
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["splits"][suite]["n"] == (2 if suite == "aircraft" else 3)
    assert summary["data"]["classes"] == len(label_space(suite)) and summary["data"]["partial"]


def test_a_clip_teacher_classifies_a_fine_grained_suite_with_coops_prompt(tmp_path):
    write_coop(tmp_path / "data", "pets")
    cfg = RunConfig(suite="pets", data_root=str(tmp_path / "data"), allow_partial=True, teacher="tiny-clip",
                    prompts="coop", num_workers=0, device="cpu", out=str(tmp_path / "run"))
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["splits"]["pets"]["n"] == 3 and summary["prompts"]["spec"] == "coop"
