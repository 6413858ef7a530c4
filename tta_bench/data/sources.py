"""Sample sources: one split's images addressable by position, with stable ids and standard labels.

A source is picklable (DataLoader workers copy it) and cheap to subset, so subsets (``--subset 5k``),
``--limit`` and torchrun shards all select positions rather than copying images.

The 5k subset is RobustBench's list (its ``imagenet_test_image_ids.txt``, shipped in assets/); ``--limit``'s even
spread over a split is tta_bench's own (no reference evaluates a prefix of a split).
"""
from __future__ import annotations

import hashlib
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from .images import open_rgb


class SampleSource(ABC):
    """``ids[i]`` is stable across runs (path relative to the data root, or array index); ``labels[i]`` is
    the standard class index of the suite's label space."""

    ids: list[str]
    labels: list[int]
    ordered: bool = False  # True where the published order is part of the dataset (CIFAR-C arrays)

    def __len__(self) -> int:
        return len(self.ids)

    @abstractmethod
    def load(self, i: int) -> Image.Image: ...

    def fingerprint(self) -> str:
        """What this source's samples hold, beyond their ids (which the stream hash covers): ids of arrays and Hub
        rows are positions, and image files may be edited in place, so a resume compares this too. Cheap but sure:
        files by size and modification time, arrays by a hash of their rows, a Hub dataset by its own fingerprint;
        the labels in every case. ``<kind>:<hex digest>``, the kind naming what was compared."""
        return self.fingerprint_of(range(len(self)))

    def fingerprint_of(self, positions: Sequence[int]) -> str:
        """The fingerprint of the samples at ``positions``, computed once per source and positions (the splits of a
        generated suite share one clean source)."""
        key = tuple(positions)
        memo = _FINGERPRINTS.setdefault(self, {})
        if key not in memo:
            kind, parts = self._content(key)
            digest = hashlib.sha256()
            digest.update(np.asarray([self.labels[p] for p in key], dtype=np.int64).tobytes())
            for part in parts:
                digest.update(part)
            memo[key] = f"{kind}:{digest.hexdigest()}"
        return memo[key]

    def _content(self, positions: tuple[int, ...]) -> tuple[str, Iterable[bytes]]:
        """The kind of content and its bytes to digest; by default the labels alone (ids that name their content)."""
        return "labels", ()

    def select(self, positions: Sequence[int]) -> "SampleSource":
        return Selected(self, list(positions))

    def limited(self, n: int) -> "SampleSource":
        """``--limit N``: N samples evenly spread over the split, so a limited run still covers every class instead
        of the first few folders (a generated stream overrides this with its first N samples)."""
        if n >= len(self):
            return self
        return self.select(np.linspace(0, len(self) - 1, n).round().astype(int).tolist())


class Selected(SampleSource):
    def __init__(self, base: SampleSource, positions: list[int]) -> None:
        self.base, self.positions, self.ordered = base, positions, base.ordered
        self.ids = [base.ids[p] for p in positions]
        self.labels = [base.labels[p] for p in positions]

    def load(self, i: int) -> Image.Image:
        return self.base.load(self.positions[i])

    def fingerprint_of(self, positions: Sequence[int]) -> str:
        return self.base.fingerprint_of([self.positions[p] for p in positions])


class FileSource(SampleSource):
    def __init__(self, root: Path, relpaths: list[str], labels: list[int]) -> None:
        self.root, self.ids, self.labels = Path(root), relpaths, labels

    def load(self, i: int) -> Image.Image:
        return open_rgb(self.root / self.ids[i])

    def _content(self, positions: tuple[int, ...]) -> tuple[str, Iterable[bytes]]:
        """Each file's size and modification time (an edit in place, a copy over it), as make and rsync compare."""
        return "file sizes and modification times", (f"{self.ids[p]}|{_stat(self.root / self.ids[p])}\n".encode()
                                                      for p in positions)


class ArraySource(SampleSource):
    """Rows of a uint8 (N, H, W, 3) .npy file, memory-mapped lazily in each worker (no pickle allowed)."""

    ordered = True

    def __init__(self, path: Path, rows: list[int], labels: list[int]) -> None:
        self.path, self.rows, self.labels = Path(path), rows, labels
        self.ids = [str(r) for r in rows]
        self._array: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def load(self, i: int) -> Image.Image:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return Image.fromarray(np.asarray(self._array[self.rows[i]]), "RGB")

    def _content(self, positions: tuple[int, ...]) -> tuple[str, Iterable[bytes]]:
        """The rows' pixels: ids are row numbers, the same for any array of this shape."""
        array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        rows = [self.rows[p] for p in positions]
        return "array content", (np.ascontiguousarray(array[rows[k:k + ROWS_PER_READ]]).tobytes()
                                 for k in range(0, len(rows), ROWS_PER_READ))


class HubSource(SampleSource):
    """Rows of a Hugging Face ``datasets.Dataset`` (from the Hub, ``save_to_disk`` or an imagefolder)."""

    def __init__(self, dataset: Any, image_key: str, rows: list[int], labels: list[int], name: str) -> None:
        self.dataset, self.image_key, self.rows, self.labels = dataset, image_key, rows, labels
        self.ids = [f"{name}/{r}" for r in rows]

    def load(self, i: int) -> Image.Image:
        image = self.dataset[self.rows[i]][self.image_key]
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        return image.convert("RGB")

    def _content(self, positions: tuple[int, ...]) -> tuple[str, Iterable[bytes]]:
        """The dataset's own fingerprint (``datasets`` derives it from the data: a save_to_disk copy keeps it, an
        imagefolder's changes with its files) and the rows read."""
        own = getattr(self.dataset, "_fingerprint", None) or f"{len(self.dataset)} rows"
        return "Hugging Face dataset fingerprint", (str(own).encode(), np.asarray([self.rows[p] for p in positions],
                                                                                    dtype=np.int64).tobytes())


ROWS_PER_READ = 1024  # array rows hashed per read
# fingerprints already computed, per source and positions; weak, so that a source's memo goes with it
_FINGERPRINTS: "weakref.WeakKeyDictionary[SampleSource, dict[tuple[int, ...], str]]" = weakref.WeakKeyDictionary()


def _stat(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}|{st.st_mtime_ns}"


def sample_seed(seed: int, *parts: object) -> int:
    """A 32-bit seed from the run seed and a sample's identity: the same sample gets the same randomness
    whatever its position in the stream, its shard or a resume."""
    digest = hashlib.sha256("|".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass
class Geometry:
    """The image geometry a corruption family was defined on (ImageNet-C: resize 256, centre crop 224)."""

    resize: int | None
    crop: int | None

    def apply(self, image: Image.Image) -> Image.Image:
        from torchvision.transforms import functional as F

        if self.resize:
            image = F.resize(image, self.resize, interpolation=F.InterpolationMode.BILINEAR)
        if self.crop:
            image = F.center_crop(image, [self.crop, self.crop])
        return image


class CorruptedSource(SampleSource):
    """A clean source with one corruption at one severity applied on the fly (the ``generated`` source)."""

    def __init__(self, base: SampleSource, corruption: str, severity: int, family: str, geometry: Geometry,
                 seed: int) -> None:
        self.base, self.corruption, self.severity = base, corruption, severity
        self.family, self.geometry, self.seed = family, geometry, seed
        self.ids, self.labels, self.ordered = base.ids, base.labels, base.ordered

    def fingerprint_of(self, positions: Sequence[int]) -> str:
        return self.base.fingerprint_of(positions)

    def load(self, i: int) -> Image.Image:
        from .corruptions import corrupt

        image = np.asarray(self.geometry.apply(self.base.load(i)))
        out = corrupt(image, self.corruption, self.severity, self.family,
                      seed=sample_seed(self.seed, self.ids[i], self.corruption, self.severity))
        return Image.fromarray(out)
