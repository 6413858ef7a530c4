"""Readers of the published on-disk layouts, one registered function per layout.

Each reader takes the data root and returns (split name, source) pairs; labels always come from the suite's
label space, never from the order of the folders found.

References per layout: ImageNet-C folders as hendrycks/robustness releases them; CIFAR-10/100-C arrays as
RobustBench ``load_cifar10c`` reads them (rows (severity - 1) x 10,000 onwards, labels.npy); ImageNet-V2 class-index
folders as modestyachts/ImageNetV2 releases them; -R/-A/-Sketch wnid folders as TPT ``data/imagenet_variants.py``
reads them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ...errors import DataError
from ..images import is_image
from ..labels import LabelSpace
from ..sources import ArraySource, FileSource, SampleSource
from ...vocabulary import split_name

from .registry import LAYOUTS

CIFAR_C_PER_SEVERITY = 10_000


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def _class_dirs(root: Path, what: str) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist (expected {what})")
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise DataError(f"{root} holds no class folders (expected {what})")
    return dirs


def _folder_source(root: Path, base: Path, key_to_label: Callable[[str, Path], int], what: str) -> FileSource:
    relpaths, labels = [], []
    for d in _class_dirs(base, what):
        label = key_to_label(d.name, d)
        for p in _images_under(d):
            relpaths.append(p.relative_to(root).as_posix())
            labels.append(label)
    if not relpaths:
        raise DataError(f"no image files found under {base} (expected {what})")
    return FileSource(root, relpaths, labels)


def _by_key(space: LabelSpace) -> Callable[[str, Path], int]:
    return lambda key, where: space.index_of(key, str(where))


@LAYOUTS.register("wnid_folders", "<root>/<wnid>/<image> (ImageNet val, -R, -A, -Sketch)")
def wnid_folders(root: Path, space: LabelSpace, split: str, **_: object) -> list[tuple[str, SampleSource]]:
    return [(split, _folder_source(root, root, _by_key(space), "<root>/<wnid>/<image>"))]


@LAYOUTS.register("index_folders", "<root>/<class index>/<image> (ImageNet-V2)")
def index_folders(root: Path, space: LabelSpace, split: str, **_: object) -> list[tuple[str, SampleSource]]:
    def label(name: str, where: Path) -> int:
        # int(folder name): sorted-string enumeration ("0", "1", "10", ...) would mislabel 990 classes
        if not name.isdigit() or int(name) >= len(space):
            raise DataError(f"{where}: expected a class-index folder 0..{len(space) - 1} (ImageNet-V2 layout)")
        return int(name)

    return [(split, _folder_source(root, root, label, "<root>/<class index 0..999>/<image>"))]


@LAYOUTS.register("imagenet_c", "<root>/<corruption>/<severity>/<wnid>/<image> (ImageNet-C)")
def imagenet_c(root: Path, space: LabelSpace, corruptions: Sequence[str], severities: Sequence[int],
               allow_partial: bool = False, notes: list[str] | None = None, **_: object) -> list[tuple[str, SampleSource]]:
    what = "<root>/<corruption>/<severity 1-5>/<wnid>/<image>"
    domains = [(c, s) for c in corruptions for s in severities]
    present = _present(root, "imagenet-c", domains, lambda c, s: (root / c / str(s)).is_dir(), allow_partial, notes)
    return [(split_name(c, s), _folder_source(root, root / c / str(s), _by_key(space), what)) for c, s in present]


def _present(root: Path, suite: str, domains: list[tuple[str, int]], exists: Callable[[str, int], bool],
             allow_partial: bool, notes: list[str] | None) -> list[tuple[str, int]]:
    """The requested domains found on disk; a missing one stops the run (naming all that are missing) unless
    ``--allow-partial``, which records it."""
    missing = [f"{c}/{s}" for c, s in domains if not exists(c, s)]
    if missing:
        corruptions = {c for c, _ in domains}
        complete = len({c for c, s in domains if f"{c}/{s}" not in missing} - {m.split("/")[0] for m in missing})
        message = (f"{suite}: {complete} of {len(corruptions)} corruptions complete under {root}, "
                   f"missing: {', '.join(missing)}")
        if not allow_partial or len(missing) == len(domains):
            raise DataError(message + ("" if allow_partial else "\npass --allow-partial to run on what is there"))
        if notes is not None:
            notes.append(message)
    return [(c, s) for c, s in domains if f"{c}/{s}" not in missing]


@LAYOUTS.register("cifar_clean", "<root>/<class name>/<image>, or <root>/images.npy + labels.npy")
def cifar_clean(root: Path, space: LabelSpace, split: str, **_: object) -> list[tuple[str, SampleSource]]:
    if (root / "images.npy").exists():
        labels = _load_labels(root / "labels.npy", space)
        _check_array(root / "images.npy", len(labels))
        return [(split, ArraySource(root / "images.npy", list(range(len(labels))), labels))]
    return [(split, _folder_source(root, root, _by_key(space), "<root>/<class name>/<image> or images.npy"))]


@LAYOUTS.register("cifar_c", "<root>/<corruption>.npy + <root>/labels.npy (CIFAR-10-C, CIFAR-100-C)")
def cifar_c(root: Path, space: LabelSpace, corruptions: Sequence[str], severities: Sequence[int],
            allow_partial: bool = False, notes: list[str] | None = None, **_: object) -> list[tuple[str, SampleSource]]:
    labels = _load_labels(root / "labels.npy", space)
    domains = [(c, s) for c in corruptions for s in severities]
    present = _present(root, "cifar-c", domains, lambda c, s: (root / f"{c}.npy").exists(), allow_partial, notes)
    for c in dict.fromkeys(c for c, _ in present):  # each corruption's file once, not once per severity
        _check_array(root / f"{c}.npy", len(labels))
    out = []
    for c, s in present:
        path = root / f"{c}.npy"
        rows = list(range((s - 1) * CIFAR_C_PER_SEVERITY, min(s * CIFAR_C_PER_SEVERITY, len(labels))))
        if not rows:
            raise DataError(f"{path} holds {len(labels)} images: no severity {s} (10,000 per severity)")
        out.append((split_name(c, s), ArraySource(path, rows, [labels[r] for r in rows])))
    return out


def _load_labels(path: Path, space: LabelSpace) -> list[int]:
    if not path.exists():
        raise DataError(f"missing labels file {path}")
    try:
        labels = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: refused to load ({exc}); expected a plain integer array") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: expected a 1-D integer array, found {labels.dtype} {labels.shape}")
    outside = labels[(labels < 0) | (labels >= len(space))]
    if len(outside):
        raise DataError(f"{path}: {len(outside)} labels outside the {space.name} classes 0..{len(space) - 1} (e.g. "
                        f"{int(outside[0])}); is this the right dataset for the suite?")
    return labels.astype(np.int64).tolist()


def _check_array(path: Path, n_labels: int) -> None:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: refused to load ({exc}); expected a uint8 (N, H, W, 3) array") from None
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise DataError(f"{path}: expected uint8 (N, H, W, 3), found {array.dtype} {array.shape}")
    if len(array) != n_labels:
        raise DataError(f"{path} holds {len(array)} images but labels.npy holds {n_labels} labels")
