"""Suite specifications: one YAML file per suite in ``suites/``, read into a dataclass and registered by name.

A suite says what its data is (label space, clean or corrupted, expected sizes), where each source finds it
(published layout, Hugging Face id) and how ``generated`` makes it (which clean suite, which corruption family).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..package_data import project_path
from ..registry import Registry
from ..vocabulary import CORRUPTIONS

SUITES_DIR = project_path("suites")  # the checkout's suites/, or the installed package's copy


@dataclass(frozen=True)
class HubSpec:
    id: str
    split: str = "test"
    image_key: str = "image"
    label_key: str = "label"


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str
    labels: str  # label space: imagenet1k | cifar10 | cifar100
    layout: str  # published layout (see data/published.py)
    kind: str = "clean"  # clean | corruption
    split: str | None = None  # split name of a clean suite (default: the suite name)
    default_source: str = "published"
    clean: str | None = None  # corruption suites: the clean suite that ``generated`` corrupts
    family: str = "imagenet"  # what methods' per-suite defaults and the default stream parameters key on
    constants: str | None = None  # corruption constants of ``generated``: imagenet-c | cifar-c
    geometry: tuple[int | None, int | None] = (None, None)  # (resize, crop) before corrupting
    corruptions: tuple[str, ...] = CORRUPTIONS
    severities: tuple[int, ...] = (5,)
    restrict_classes: bool = False  # evaluate over the classes present only (ImageNet-R, -A)
    expected_images: int | None = None  # per split (per corruption and severity for corruption suites)
    expected_classes: int | None = None
    hub: HubSpec | None = None

    @property
    def is_corruption(self) -> bool:
        return self.kind == "corruption"

    @property
    def split_name(self) -> str:
        return self.split or self.name


def _spec_from_yaml(path: Path) -> SuiteSpec:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    if data.get("hub"):
        data["hub"] = HubSpec(**data["hub"])
    for key in ("corruptions", "severities", "geometry"):
        if key in data and data[key] is not None:
            data[key] = tuple(data[key])
    known = {f.name for f in dataclasses.fields(SuiteSpec)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{path}: unknown suite keys {sorted(unknown)}; expected some of {sorted(known)}")
    return SuiteSpec(**data)


SUITES: Registry[SuiteSpec] = Registry("suite")


def _load_suites() -> None:
    """The repository's suites/ plus any folders in TTA_BENCH_SUITES (os.pathsep-separated): a new suite
    with an existing layout is one YAML file."""
    extra = [Path(p) for p in os.environ.get("TTA_BENCH_SUITES", "").split(os.pathsep) if p]
    for directory in [SUITES_DIR, *extra]:
        if not directory.is_dir():
            raise FileNotFoundError(f"suite folder {directory} not found (a broken install: reinstall tta_bench "
                                    "from its checkout with `pip install .`; or fix TTA_BENCH_SUITES)")
        for path in sorted(directory.glob("*.yaml")):
            spec = _spec_from_yaml(path)
            SUITES.register(spec.name, spec.description)(spec)


_load_suites()
