"""What DataLoader workers decode: stream positions into teacher-input tensors (and, for methods that ask, the full
decoded image), and clean source images for a method's source statistics.

A corrupt file is reported in its row instead of raised when the run skips errors, so one bad JPEG costs one record,
not the run.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from .build import Split
from .images import CorruptImageError
from .sources import SampleSource

Row = tuple[int, "torch.Tensor | None", str, "torch.Tensor | None"]  # position, image, error, full image
Transform = Callable[[Image.Image], torch.Tensor]


class Located(Protocol):
    """A stream item: which split, which position in it."""

    split: int
    pos: int


class StreamDataset(Dataset):
    """Stream position -> (position, image tensor, error, full image): the full decoded image (uint8 (3, H, W), before
    the teacher's transform) comes along only where ``raw`` is set (methods with ``raw_images``, see ``Batch.raw``)."""

    def __init__(self, splits: list[Split], items: Sequence[Located], transform: Transform, skip_errors: bool,
                 raw: bool = False) -> None:
        self.splits, self.items, self.transform, self.skip_errors, self.raw = splits, items, transform, skip_errors, raw

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Row:
        item = self.items[i]
        try:
            image = self.splits[item.split].source.load(item.pos)
        except CorruptImageError as exc:
            if not self.skip_errors:
                raise
            return i, None, str(exc), None
        return i, self.transform(image), "", pil_to_tensor(image) if self.raw else None


def collate(rows: list[Row]) -> tuple[list[int], torch.Tensor | None, list[str], list[torch.Tensor] | None]:
    """(positions, the readable images stacked, per-position errors ("" where read), full images or None)."""
    ok = [r for r in rows if r[1] is not None]
    images = torch.stack([r[1] for r in ok]) if ok else None
    raw = [r[3] for r in ok] if ok and ok[0][3] is not None else None
    return [r[0] for r in rows], images, [r[2] for r in rows], raw


class SourceImages(Dataset):
    """Clean source images as teacher inputs (a method's source statistics: EATA's Fisher information)."""

    def __init__(self, source: SampleSource, transform: Transform) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.source.load(i))


def worker_error(exc: Exception) -> str:
    """The error itself, without the worker traceback a DataLoader wraps around it."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].split(": ", 1)[-1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
