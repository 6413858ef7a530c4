"""Suite specifications: one YAML file per suite in ``suites/``, read into a dataclass and registered by name.

A suite says what its data is (label space, clean, corrupted, several domains or a generated stream; expected
sizes; the geometry its images are stored in), where each source finds it (published layout, Hugging Face ids and how
their integer labels count) and how ``generated`` makes it (which clean suite, which corruption family).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..choices import LABEL_INDICES
from ..errors import UserError
from ..package_data import project_path
from ..registry import Registry
from ..vocabulary import CORRUPTIONS

SUITES_DIR = project_path("suites")  # the checkout's suites/, or the installed package's copy



@dataclass(frozen=True)
class HubSpec:
    """A known Hugging Face copy. ``label_index``: what its integer labels index, the ImageNet-1k classes
    (``imagenet1k``) or the suite's own class list (``suite``: 0..199 for ImageNet-R/-A); None = the suite's."""

    id: str
    split: str = "test"
    image_key: str = "image"
    label_key: str = "label"
    label_index: str | None = None
    # None: the copy holds the paper's test set. Otherwise which test set it holds instead (e.g. "official"): its
    # split is then named "<suite>@<test_split>" so that it never shares a column with the paper's test set.
    test_split: str | None = None


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str
    labels: str  # label space: imagenet1k | cifar10 | cifar100 | flowers102 | ... (data/labels/)
    layout: str  # published layout (see data/layouts/)
    kind: str = "clean"  # clean | corruption | domains (one split per domain) | ccc (a generated stream)
    split: str | None = None  # split name of a clean suite (default: the suite name)
    default_source: str = "published"
    clean: str | None = None  # corruption suites: the clean suite that ``generated`` corrupts
    family: str = "imagenet"  # what methods' per-suite defaults and the default stream parameters key on
    constants: str | None = None  # corruption constants of ``generated``: imagenet-c | cifar-c
    geometry: tuple[int | None, int | None] = (None, None)  # (resize, crop) before corrupting
    corruptions: tuple[str, ...] = CORRUPTIONS
    severities: tuple[int, ...] = (5,)
    class_list: str | None = None  # the fixed class subset the logits are restricted to (data/labels.CLASS_LISTS)
    stored: int | None = None  # images are stored as stored x stored centre crops (ImageNet-C: 224); None: any size
    expected_images: int | dict[str, int] | None = None  # per split (per corruption and severity for corruption
    # suites), or split name -> count where the splits differ (DomainNet-126's domains)
    expected_classes: int | None = None
    hub: HubSpec | None = None  # the default Hugging Face copy
    hub_known: tuple[HubSpec, ...] = ()  # other documented copies (--hub-id picks one)
    label_index: str = "imagenet1k"  # what integer labels of an undocumented copy index (--label-index overrides)
    domains: tuple[str, ...] = ()  # domains / ccc suites: the splits there are, in their standard order
    default_domains: tuple[str, ...] | None = None  # the domains run when --domains is not given (None: all)
    layout_args: dict[str, Any] = field(default_factory=dict)  # layout-specific facts (split file names, ...)
    reference: str | None = None  # where the test set (split file, image lists, protocol) comes from
    data_folders: tuple[str, ...] = ()  # the folder names its usual layout gives it under a common data root
    fetch: bool = False  # without --data-root, its Hub copy is fetched on first use and cached (small test sets)

    def hub_copy(self, hub_id: str | None) -> HubSpec | None:
        """The documented copy of that id (the default without one); an undocumented id gets the suite's label index."""
        for known in (self.hub, *self.hub_known):
            if known is not None and (hub_id is None or known.id == hub_id):
                return known
        return HubSpec(hub_id) if hub_id else None

    def expected_for(self, split: str) -> int | None:
        if isinstance(self.expected_images, dict):
            return self.expected_images.get(split.split("@")[0])
        return self.expected_images

    @property
    def has_domains(self) -> bool:
        return self.kind in ("domains", "ccc")

    def size_text(self) -> str:
        """The test-set size for `list`: one count, or one per domain."""
        if isinstance(self.expected_images, dict):
            return ", ".join(f"{k} {v:,}" for k, v in self.expected_images.items())
        if self.expected_images is None:
            return "-"
        per = {"corruption": " per corruption and severity", "domains": " per domain", "ccc": " per stream"}.get(self.kind, "")
        return f"{self.expected_images:,}{per}"

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
    data["hub_known"] = tuple(HubSpec(**h) for h in data.get("hub_known") or ())
    for key in ("corruptions", "severities", "geometry", "domains", "default_domains", "data_folders"):
        if key in data and data[key] is not None:
            data[key] = tuple(data[key])
    known = {f.name for f in dataclasses.fields(SuiteSpec)}
    unknown = set(data) - known
    if unknown:
        raise UserError(f"{path}: unknown suite keys {sorted(unknown)}; expected some of {sorted(known)}")
    spec = SuiteSpec(**data)
    indices = [spec.label_index] + [h.label_index for h in (spec.hub, *spec.hub_known) if h and h.label_index]
    if any(i not in LABEL_INDICES for i in indices):
        raise UserError(f"{path}: label_index must be one of {', '.join(LABEL_INDICES)}, got {indices}")
    if spec.stored and spec.geometry[1] and spec.geometry[1] != spec.stored:
        raise UserError(f"{path}: generated images are {spec.geometry[1]} px crops but the suite declares "
                         f"stored: {spec.stored}")
    return spec


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
