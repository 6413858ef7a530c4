"""CCC's accuracy matrix: the source model's accuracy on a calibration set for every pair of corruption
severities, which the walks follow.

Follows oripress/CCC generate.py (``accuracy_matrix["n1_<a>_n2_<b>"]``: accuracy in percent with corruption a at
severity s1 then b at s2, s1, s2 in 0, 0.25, ..., 5). Deliberate differences, named: the matrix is measured here,
on the run's own teacher and clean set, not downloaded (CCC's was measured once with a ResNet-50 on ImageNet);
it is measured on a coarser grid (``grid_step``, default 1) and interpolated bilinearly to the walk's 0.25 grid;
a cell is measured only when a walk needs its pair; and the calibration images get the stream's own random crops,
so the level tracks what the stream shows (CCC calibrated on centre crops and notes its crops run a little lower).
Cells are cached on disk by everything that determines them, so a resumed or repeated run reuses them.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ...errors import DataError

Classify = Callable[[list[np.ndarray]], list[int]]  # uint8 HWC images -> predicted label-space indices
Corruptions = tuple[tuple[str, float], ...]  # applied in order; every severity > 0


@dataclass(frozen=True)
class Calibrator:
    """The model a CCC stream is calibrated on, handed down by whoever runs the suite (the engine: the run's teacher,
    as it classifies in the run): its prompt spec, which with the teacher, weights and head the configuration names
    identifies it in the cache key, and a builder of its classifier, called on the first cell the cache lacks."""

    prompts: str
    classifier: Callable[[], Classify]


def cache_dir() -> Path:
    """Where measured cells are kept: TTA_BENCH_CCC_CACHE, else results/ccc_calibration (beside results/runs)."""
    return Path(os.environ.get("TTA_BENCH_CCC_CACHE", "results/ccc_calibration"))


@dataclass(frozen=True)
class CalibrationSpec:
    images: int = 64  # calibration images per cell
    grid_step: float = 1.0  # severity step of the measured grid (CCC: 0.25)
    walk_step: float = 0.25  # severity step of the walk grid (CCC's)


class AccuracyMatrix:
    """Per pair of corruptions, accuracy (%) on the walk grid; measured cells are cached under ``key``."""

    def __init__(self, spec: CalibrationSpec, measure: Callable[[Corruptions], float], key: str,
                 folder: Path | None = None) -> None:
        self.spec, self.measure, self.key = spec, measure, key
        self.path = (folder or cache_dir()) / f"{key}.json"
        self.cells: dict[str, float] = _read_cells(self.path) if self.path.is_file() else {}

    def grid(self, step: float) -> np.ndarray:
        return np.round(np.arange(0, 5 + step / 2, step), 6)

    def cell(self, first: str, s1: float, second: str, s2: float) -> float:
        """Accuracy with ``first`` at s1 then ``second`` at s2; a severity 0 drops its corruption, so single
        corruptions (and the clean images) are measured once for every pair they appear in."""
        parts = tuple((n, float(s)) for n, s in ((first, s1), (second, s2)) if s > 0)
        name = "+".join(f"{n}@{s:g}" for n, s in parts) or "clean"
        if name not in self.cells:
            self.cells[name] = self.measure(parts)
            self._save()
        return self.cells[name]

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.cells, indent=0, sort_keys=True))
        tmp.replace(self.path)

    def of(self, first: str, second: str) -> np.ndarray:
        """The pair's matrix on the walk grid: measured on the coarse grid, interpolated bilinearly."""
        coarse = self.grid(self.spec.grid_step)
        measured = np.array([[self.cell(first, s1, second, s2) for s2 in coarse] for s1 in coarse])
        fine = self.grid(self.spec.walk_step)
        rows = np.array([np.interp(fine, coarse, measured[:, k]) for k in range(len(coarse))]).T  # (fine, coarse)
        return np.array([np.interp(fine, coarse, row) for row in rows])


def _read_cells(path: Path) -> dict[str, float]:
    """A cache file as ``_save`` writes it: cell name -> accuracy in percent. A damaged one (truncated by a full
    disk or a copy) stops the run naming it: it is only a cache, deleting it has the cells measured again."""
    try:
        cells = json.loads(path.read_text())
        if not isinstance(cells, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  and 0 <= v <= 100 for v in cells.values()):
            raise ValueError("expected cell names mapped to accuracies in percent")
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise DataError(f"the CCC calibration cache {path} is damaged ({exc}); delete it and rerun: its cells are "
                        "measured again") from None
    return cells


def cache_key(parts: dict) -> str:
    """A digest of everything that determines the measured cells (teacher, weights, prompts, clean set,
    calibration images, crop, corruption code version)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | None) -> str | None:
    """A local file by its content; anything else (a Hub name, None) as it is."""
    from ...files import file_sha256

    return file_sha256(path) if path and Path(path).is_file() else path


def measure_with(classify: Classify, render: Callable[[int, Corruptions], np.ndarray], labels: Sequence[int],
                 batch: int = 32) -> Callable[[Corruptions], float]:
    """A cell measurer: accuracy (%) of ``classify`` on the calibration images, ``render(k, corruptions)`` giving
    image k with the corruptions applied as the stream applies them."""

    def measure(corruptions: Corruptions) -> float:
        correct = 0
        for lo in range(0, len(labels), batch):
            chunk = [render(k, corruptions) for k in range(lo, min(lo + batch, len(labels)))]
            predictions = classify(chunk)
            correct += sum(int(p == y) for p, y in zip(predictions, labels[lo:lo + len(chunk)]))
        return 100.0 * correct / len(labels)

    return measure
