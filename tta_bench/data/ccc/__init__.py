"""CCC, continuously changing corruptions (Press et al., NeurIPS 2023): one very long stream in which a pair of
corruptions trades severity so that the source model's accuracy stays near a target level (easy 40%, medium 20%,
hard 0%), generated on the fly from a clean set, seeded, and resumable at any position.

Follows oripress/CCC generate.py (GenerateDataset: per walk cell ``speed`` images drawn at random from the clean
set, each randomly flipped and RandomResizedCrop'd to 224, the first corruption applied at s1 then the second at
s2 (a zero severity skipped), saved as JPEG quality 85; 7.5M images in all; the noise sets of the three
baselines) and the unified benchmark's ``ccc`` (mariodoebler/test-time-adaptation classification/datasets/
data_loading.py: one stream per baseline and transition speed, evaluated in order, cfgs/ccc/*.yaml). The
corruptions are tta_bench's own (data/corruptions.py corrupt_continuous); the accuracy matrix is measured on the
run's teacher (data/ccc/calibration.py), so the stream is the one this model meets at the target level, not CCC's
published files (calibrated once on a ResNet-50): results are labelled generated.

Each position's image is a pure function of (seed, split, position): a stream prefix (--limit N) is the start of
the long stream, records are keyed by an id that names the position, the two corruptions and their severities and
the clean image, so ids are unique and the recorded stream hash covers what was generated.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ...config import RunConfig
from ...errors import UserError
from .calibration import (AccuracyMatrix, CalibrationSpec, Calibrator, Corruptions, cache_key, file_digest,
                          measure_with)
from .walk import Plan, find_walk
from ..corruptions import corrupt_continuous
from ..sources import SampleSource, sample_seed
from ..suites import SuiteSpec

SETTINGS = ("reset_each_shift", "continual")  # the others would reorder the stream
CALIBRATION_SEED = 0  # the calibration images and their crops do not change with the run seed
VERSION = "ccc-1"  # bump when the generation changes: it is part of the calibration cache key


@dataclass(frozen=True)
class CCCParams:
    target: float  # CCC's baseline: the source model's accuracy (%) the walks keep to
    noises: tuple[str, ...]
    length: int = 7_500_000  # CCC's cutoff
    crop: int = 224
    jpeg_quality: int = 85
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)

    @classmethod
    def of(cls, args: dict) -> "CCCParams":
        args = dict(args)
        calibration = CalibrationSpec(**args.pop("calibration", {}))
        return cls(noises=tuple(args.pop("noises")), calibration=calibration, **args)


class _Lazy(SequenceABC):
    """A read-only sequence computed per index (7.5M ids are not kept in memory)."""

    def __init__(self, n: int, item: Callable[[int], object]) -> None:
        self.n, self.item = n, item

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.item(k) for k in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.item(i % self.n)


def random_resized_crop(image: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """torchvision's RandomHorizontalFlip + RandomResizedCrop(size) (scale 0.08-1, ratio 3/4-4/3, 10 tries, then
    a centre crop of clamped ratio, bilinear), drawn from ``rng``."""
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            break
    else:
        ratio = width / height
        w, h = (width, round(width / (3 / 4))) if ratio < 3 / 4 else (round(height * 4 / 3), height) \
            if ratio > 4 / 3 else (width, height)
        w, h = min(w, width), min(h, height)
        top, left = (height - h) // 2, (width - w) // 2
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))


def render(clean: Image.Image, corruptions: Corruptions, params: CCCParams, crop_seed: int,
           seeds: Sequence[int]) -> np.ndarray:
    """A clean image as CCC shows it: random flip and crop, the corruptions in order, JPEG round trip."""
    x = np.asarray(random_resized_crop(clean, params.crop, np.random.default_rng(crop_seed)))
    for (name, severity), seed in zip(corruptions, seeds):
        x = corrupt_continuous(x, name, severity, seed)
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, format="JPEG", quality=params.jpeg_quality, optimize=True)
    return np.asarray(Image.open(buffer).convert("RGB"))


class CCCSource(SampleSource):
    """One CCC stream: position -> image, in stream order."""

    ordered = True

    def __init__(self, clean: SampleSource, name: str, speed: int, params: CCCParams, plan: Plan, seed: int,
                 length: int) -> None:
        self.clean, self.name, self.speed, self.params, self.plan, self.seed = clean, name, speed, params, plan, seed
        self.ids = _Lazy(length, self._id)
        self.labels = _Lazy(length, lambda p: self.clean.labels[self.image_of(p)])
        self._permutations: dict[tuple[int, int], np.ndarray] = {}
        self._planned = False

    def limited(self, n: int) -> "CCCSource":
        """The first n samples of the stream (a prefix, never a spread: the transition speed stays as it is)."""
        return CCCSource(self.clean, self.name, self.speed, self.params, self.plan, self.seed, min(n, len(self)))

    def fingerprint_of(self, positions: Sequence[int]) -> str:
        """The clean set's: every position is generated from it (and from the seed, the plan and the position, which
        the ids and the configuration hold)."""
        return self.clean.fingerprint()

    def fingerprint(self) -> str:
        return self.clean.fingerprint()

    def image_of(self, p: int) -> int:
        """The clean image at position p: each walk cell draws its images at random (without repetition while the
        clean set lasts, as the reference's shuffled file list)."""
        step, within = divmod(p, self.speed)
        block, k = divmod(within, len(self.clean))
        if (step, block) not in self._permutations:
            if len(self._permutations) > 8:
                self._permutations.clear()
            rng = np.random.default_rng(sample_seed(self.seed, self.name, "images", step, block))
            self._permutations[(step, block)] = rng.permutation(len(self.clean))
        return int(self._permutations[(step, block)][k])

    def corruptions(self, p: int) -> Corruptions:
        first, s1, second, s2 = self.plan.at(p)
        return tuple((n, s) for n, s in ((first, s1), (second, s2)) if s > 0)

    def _id(self, p: int) -> str:
        if not self._planned:  # the whole plan (and any calibration it needs) in this process, before the engine's
            self.plan.extend_to(len(self))  # first id look-up hands positions to DataLoader workers
            self._planned = True
        first, s1, second, s2 = self.plan.at(p)
        return f"{p:09d}/{first}@{s1:g}+{second}@{s2:g}/{self.clean.ids[self.image_of(p)]}"

    def load(self, p: int) -> Image.Image:
        corruptions = self.corruptions(p)
        seeds = [sample_seed(self.seed, self.name, p, k) for k in range(len(corruptions))]
        pixels = render(self.clean.load(self.image_of(p)), corruptions, self.params,
                        sample_seed(self.seed, self.name, p, "crop"), seeds)
        return Image.fromarray(pixels)


class Calibration:
    """The accuracy matrix of the run's teacher, its walks per pair, built on first use (a dry run never needs it)."""

    def __init__(self, cfg: RunConfig, spec: SuiteSpec, clean: SampleSource, params: CCCParams,
                 calibrator: Calibrator) -> None:
        self.params = params
        n = min(params.calibration.images, len(clean))
        self.images = np.linspace(0, len(clean) - 1, n).round().astype(int).tolist()
        self.clean = clean
        self._classify = calibrator.classifier
        self.key = cache_key({
            "version": VERSION, "teacher": cfg.teacher, "weights": file_digest(cfg.weights),
            "prompts": calibrator.prompts, "head": file_digest(cfg.head), "labels": spec.labels, "crop": params.crop,
            "jpeg_quality": params.jpeg_quality, "clean": [clean.ids[i] for i in self.images]})  # what a cell depends on
        self._matrix: AccuracyMatrix | None = None
        self._measure_cell: Callable[[Corruptions], float] | None = None
        self._walks: dict[tuple[str, str], list[tuple[float, float]]] = {}

    def _render(self, k: int, corruptions: Corruptions) -> np.ndarray:
        image = self.clean.load(self.images[k])
        seeds = [sample_seed(CALIBRATION_SEED, k, j) for j in range(len(corruptions))]
        return render(image, corruptions, self.params, sample_seed(CALIBRATION_SEED, k, "crop"), seeds)

    def _measure(self, corruptions: Corruptions) -> float:
        """Measure one cell; the model is built on the first cell the cache does not hold."""
        if self._measure_cell is None:
            labels = [self.clean.labels[i] for i in self.images]
            self._measure_cell = measure_with(self._classify(), self._render, labels)
        return self._measure_cell(corruptions)

    @property
    def matrix(self) -> AccuracyMatrix:
        if self._matrix is None:
            self._matrix = AccuracyMatrix(self.params.calibration, self._measure, self.key)
        return self._matrix

    def walk_of(self, first: str, second: str) -> list[tuple[float, float]]:
        if (first, second) not in self._walks:
            step = self.params.calibration.walk_step
            cells = find_walk(self.matrix.of(first, second), self.params.target)
            self._walks[(first, second)] = [(i * step, j * step) for i, j in cells]
        return self._walks[(first, second)]


def speed_of(domain: str) -> int:
    return int(domain.removeprefix("speed_"))


def ccc_splits(spec: SuiteSpec, cfg: RunConfig, clean: SampleSource, domains: Sequence[str], info: list[str],
               calibrator: Calibrator | None) -> list[tuple[str, SampleSource]]:
    """One stream per chosen domain (``speed_<images per walk cell>``), each ``length`` samples (``--limit``: a
    prefix), its walks calibrated on ``calibrator``'s model."""
    if calibrator is None:
        raise UserError(f"{spec.name} is calibrated on the run's teacher: load it through the engine (a run or "
                        "--dry-run), which hands the teacher down")
    if cfg.setting not in SETTINGS:
        raise UserError(f"{spec.name} is one continuously changing stream in its generated order: setting "
                        f"{cfg.setting} would reorder it; use {' or '.join(SETTINGS)}")
    if cfg.subset:
        raise UserError(f"--subset selects images of a published set; {spec.name} is generated (use --limit N)")
    params = CCCParams.of(spec.layout_args)
    calibration = Calibration(cfg, spec, clean, params, calibrator)
    out = []
    for domain in domains:
        plan = Plan(params.noises, calibration.walk_of, speed_of(domain), sample_seed(cfg.seed, spec.name, domain))
        source = CCCSource(clean, domain, speed_of(domain), params, plan, cfg.seed, params.length)
        out.append((domain, source.limited(cfg.limit) if cfg.limit else source))
    info.append(f"{spec.name}: generated CCC stream(s) at target source accuracy {params.target:g}% over "
                 f"{', '.join(params.noises)}; walks from {cfg.teacher}'s accuracy on {len(calibration.images)} clean "
                 f"images (grid step {params.calibration.grid_step:g}, interpolated to "
                 f"{params.calibration.walk_step:g}), calibration {calibration.key}; not CCC's published files")
    return out
