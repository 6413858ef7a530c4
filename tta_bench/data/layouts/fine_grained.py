"""The ten cross-dataset test sets of the CLIP test-time papers (Flowers102, DTD, Pets, Cars, UCF101, Caltech101,
Food101, SUN397, FGVC Aircraft, EuroSAT), read as CoOp defines them.

Follows KaiyangZhou/CoOp DATASETS.md and datasets/*.py (OxfordPets.read_split: the ``test`` entries of
``split_zhou_<Dataset>.json`` are ``[image path relative to the image folder, label, class name]``;
datasets/fgvc_aircraft.py: ``images_variant_test.txt`` with labels by the order of ``variants.txt``), which TPT
(azshue/TPT data/fewshot_datasets.py) and APM follow. The split file lies in the dataset folder as CoOp's layout
puts it; the images may sit in CoOp's folder or where torchvision's dataset class downloads them (the unified TTA
benchmark's layout, mariodoebler/test-time-adaptation conf.py complete_data_dir_path), tried in that order.

A split file is checked against the test list the papers used (size, and the SHA-256 of its (path, label) lines
where known), and every entry's class name against the label space, so another split never passes silently.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from ...errors import DataError
from ..labels import LabelSpace
from .entries import check_entries
from .registry import LAYOUTS
from ..sources import FileSource, SampleSource

COOP_DATASETS = "KaiyangZhou/CoOp DATASETS.md"


def list_sha256(entries: Sequence[tuple[str, int]]) -> str:
    """Fingerprint of a test list: SHA-256 of its ``<path>\\t<label>\\n`` lines in file order."""
    return hashlib.sha256("".join(f"{path}\t{label}\n" for path, label in entries).encode()).hexdigest()


@LAYOUTS.register("coop_split", "<root>/split_zhou_<Dataset>.json + the images it lists (CoOp's test split)")
def coop_split(root: Path, space: LabelSpace, split: str, split_files: Sequence[str], image_dirs: Sequence[str],
               test_sha256: str | None = None, allow_partial: bool = False, notes: list[str] | None = None,
               **_: object) -> list[tuple[str, SampleSource]]:
    path = _first_file(root, split_files, f"CoOp's split file ({' or '.join(split_files)}, from {COOP_DATASETS})")
    entries = _test_entries(path, space)
    pairs = [(p, label) for p, label, _ in entries]
    if test_sha256 and list_sha256(pairs) != test_sha256:
        _refuse(f"{path}: its test list is not the one of CoOp's split file (SHA-256 differs)", allow_partial, notes)
    images = _image_root(root, image_dirs, entries[0][0], path)
    return [(split, _existing(images, pairs, allow_partial, notes))]


@LAYOUTS.register("fgvc_variants", "<root>/variants.txt, images_variant_test.txt, images/<id>.jpg (FGVC Aircraft)")
def fgvc_variants(root: Path, space: LabelSpace, split: str, data_dirs: Sequence[str] = ("",),
                  allow_partial: bool = False, notes: list[str] | None = None,
                  **_: object) -> list[tuple[str, SampleSource]]:
    """FGVC Aircraft's own variant-level test split (CoOp and TPT use it unchanged): 100 classes in the order of
    variants.txt, ``<image id> <variant name>`` per line of images_variant_test.txt."""
    folder = next((root / d for d in data_dirs if (root / d / "images_variant_test.txt").is_file()), None)
    if folder is None:
        raise DataError(f"{root}: no images_variant_test.txt in any of {[str(root / d) for d in data_dirs]} "
                        "(expected the data/ folder of fgvc-aircraft-2013b, as CoOp's DATASETS.md lays it out)")
    variants = [line.strip() for line in _read(folder / "variants.txt").splitlines() if line.strip()]
    if tuple(variants) != space.keys:
        raise DataError(f"{folder / 'variants.txt'}: its {len(variants)} variants are not the 100 FGVC Aircraft "
                        f"variants in their published order (expected {space.keys[:2]}...)")
    pairs, places = [], []
    for number, line in enumerate(_read(folder / "images_variant_test.txt").splitlines(), 1):
        image, _, variant = line.strip().partition(" ")
        if line.strip():
            pairs.append((f"images/{image}.jpg", space.index_of(variant, f"{folder}/images_variant_test.txt:{number}")))
            places.append(f"line {number}")
    check_entries([p for p, _ in pairs], places, str(folder / "images_variant_test.txt"))
    return [(split, _existing(folder, pairs, allow_partial, notes))]


def _read(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"missing {path}")
    return path.read_text()


def _first_file(root: Path, names: Sequence[str], what: str) -> Path:
    found = next((root / n for n in names if (root / n).is_file()), None)
    if found is None:
        raise DataError(f"{root} holds no {what}; put it in the dataset folder as CoOp's layout does")
    return found


def _test_entries(path: Path, space: LabelSpace) -> list[tuple[str, int, str]]:
    """The ``test`` list of a split file, each class name checked against the label space."""
    try:
        data: Any = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    test = data.get("test") if isinstance(data, dict) else None
    if not isinstance(test, list) or not test:
        raise DataError(f"{path}: expected a JSON object with a non-empty 'test' list of [path, label, class name]")
    out = []
    for i, entry in enumerate(test):
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and isinstance(entry[1], int) and isinstance(entry[2], str)):
            raise DataError(f"{path}: test[{i}] is {entry!r}, expected [path, label, class name]")
        image, label, name = entry
        if not 0 <= label < len(space) or space.keys[label] != name:
            expected = space.keys[label] if 0 <= label < len(space) else f"a label in 0..{len(space) - 1}"
            raise DataError(f"{path}: test[{i}] gives label {label} to class {name!r}, but {space.name} class "
                            f"{label} is {expected!r} (another class list or split file?)")
        out.append((image, label, name))
    check_entries([image for image, _, _ in out], [f"test[{i}]" for i in range(len(out))], str(path))
    return out


def _image_root(root: Path, image_dirs: Sequence[str], probe: str, split_file: Path) -> Path:
    """The first candidate image folder (CoOp's, torchvision's, the root itself) holding the split's first image."""
    candidates = [root / d for d in (*image_dirs, "")]
    found = next((c for c in candidates if (c / probe).is_file()), None)
    if found is None:
        raise DataError(f"{split_file} lists {probe!r}, found under none of {[str(c) for c in candidates]} "
                        f"(the image folder as {COOP_DATASETS} or torchvision lays it out)")
    return found


def _existing(images: Path, pairs: list[tuple[str, int]], allow_partial: bool,
              notes: list[str] | None) -> FileSource:
    present = [(p, label) for p, label in pairs if (images / p).is_file()]
    if len(present) < len(pairs):
        missing = [p for p, _ in pairs if not (images / p).is_file()]
        _refuse(f"{images}: {len(missing):,} of the {len(pairs):,} test images are missing (e.g. {missing[:3]})",
                allow_partial, notes)
    return FileSource(images, [p for p, _ in present], [label for _, label in present])


def _refuse(message: str, allow_partial: bool, notes: list[str] | None) -> None:
    if not allow_partial:
        raise DataError(message + "\npass --allow-partial to run on it anyway (the run is then marked partial)")
    if notes is not None:
        notes.append(message)
