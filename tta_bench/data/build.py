"""From a suite and a run configuration to the concrete splits a run evaluates.

This is where the three sources meet: ``published`` reads the suite's on-disk layout, ``hub`` a Hugging Face
dataset, ``generated`` corrupts a clean set on the fly. Subsets, ``--limit`` and the load-time self-check
(is this the dataset the paper used?) are applied here, the same way for every source.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..choices import LABEL_INDICES, SOURCES
from ..config import RunConfig
from ..errors import DataError, UserError
from .hub import HubRead, hub_source, load_dataset
from .labels import CLASS_LISTS, LabelSpace, class_list, label_space
from .layouts import LAYOUTS
from .sources import CorruptedSource, Geometry, SampleSource
from .suites import SUITES, SuiteSpec
from ..vocabulary import parse_split, split_name

if TYPE_CHECKING:
    from .ccc.calibration import Calibrator

SUBSETS = {"5k": "imagenet_5000_val_ids.txt"}


@dataclass
class Split:
    """One evaluated domain: a clean set, or one corruption at one severity."""

    name: str
    source: SampleSource
    corruption: str | None = None
    severity: int | None = None


@dataclass
class SuiteData:
    spec: SuiteSpec
    space: LabelSpace
    splits: list[Split]
    classes: list[int]  # the label-space indices the head scores (all, or the official 200 of ImageNet-R/-A)
    source: str
    subset: str  # "full", "5k" or "limit-N": tables never mix them unmarked
    partial: bool = False
    notes: list[str] = field(default_factory=list)
    clean_images: int | None = None  # generated: the size of the clean set corrupted (before --subset / --limit)
    hub_split: str | None = None  # hub: the split of the copy that was read

    @property
    def generated(self) -> bool:
        return self.source == "generated"

    def protocol(self) -> dict[str, object]:
        """What a reader needs to compare this data with a paper's: the stored geometry, the class list the logits
        are restricted to, and for a generated suite the size of the clean set it was made from."""
        out: dict[str, object] = {"stored": self.spec.stored, "class_list": self.spec.class_list}
        if self.source == "hub":
            out["hub_split"] = self.hub_split
        if self.generated:
            clean = SUITES.get(self.spec.clean)
            expected = clean.expected_images
            out["generated_from"] = {"suite": clean.name, "images": self.clean_images, "expected": expected,
                                     "complete": expected is not None and (self.clean_images or 0) >= expected}
        return out


def content_fingerprints(splits: list[Split]) -> dict[str, str]:
    """Per split, what its samples hold (``SampleSource.fingerprint``): a resume compares it, so that images
    swapped or edited between a kill and the rerun are not mixed into one run."""
    return {split.name: split.source.fingerprint() for split in splits}


def load_suite(cfg: RunConfig, calibrator: Calibrator | None = None) -> SuiteData:
    """The run's splits and what a reader must know about them. ``calibrator``: the model a generated CCC stream is
    calibrated on (the engine hands the run's teacher down; data knows no teachers)."""
    spec = SUITES.get(cfg.suite)
    source = cfg.source or spec.default_source
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    space = label_space(spec.labels)
    classes = _classes(spec, space)
    corruptions, severities = _domains(spec, cfg)
    notes: list[str] = []  # what makes the data incomplete (the run is then marked partial)
    info: list[str] = []  # what a reader must know about the data, without making it partial
    check = True  # whether the published sizes apply (not to a Hub copy of another test split)
    clean_images = hub_split = None
    if spec.kind == "ccc":
        if source != "generated":
            raise UserError(f"{spec.name} is generated on the fly from a clean set: use --source generated (the "
                            "default) with --data-root pointing at the clean images")
        from .ccc import ccc_splits

        clean = _clean_source(SUITES.get(spec.clean), cfg, space)
        clean_images = len(clean)
        splits = [Split(name, src) for name, src in ccc_splits(spec, cfg, clean, corruptions, info, calibrator)]
    elif source == "generated":
        if not spec.is_corruption:
            raise UserError(f"--source generated corrupts a clean set: use a corruption suite (e.g. {spec.name}-c "
                            f"or imagenet-c with --data-root pointing at the clean {spec.name} images)")
        clean = _clean_source(SUITES.get(spec.clean), cfg, space)
        clean_images = len(clean)
        clean = _select(clean, cfg)
        geometry = Geometry(*spec.geometry)
        splits = [Split(split_name(c, s), CorruptedSource(clean, c, s, spec.constants, geometry, cfg.seed), c, s)
                  for c in corruptions for s in severities]
    elif source == "hub":
        if spec.is_corruption or spec.has_domains or spec.hub is None and not (cfg.hub_id or cfg.data_root):
            raise UserError(f"{spec.name} has no standard Hugging Face copy: use --source published "
                            "(the released files in their layout)" + (" or --source generated" if spec.clean else "")
                            + ("" if spec.is_corruption or spec.has_domains else ", or name a copy (--hub-id or a "
                                                                                  "saved one in --data-root)"))
        ds, hub_split = load_dataset(spec.hub_copy(cfg.hub_id), cfg.hub_split, cfg.data_root)
        name, check = _hub_split_name(spec, cfg, info)
        found = hub_source(ds, hub_read(spec, cfg), space, name, classes if spec.class_list else None)
        _refuse_outside(spec, space, classes, found, cfg)
        splits = [Split(name, _select(found, cfg))]
    else:
        root = _root(spec, cfg)
        found = LAYOUTS.get(spec.layout)(root=root, space=space, split=spec.split_name, corruptions=corruptions,
                                         severities=severities, allow_partial=cfg.allow_partial, notes=notes,
                                         info=info, domains=corruptions, weights=cfg.weights, **spec.layout_args)
        for _, src in found:
            _refuse_outside(spec, space, classes, src, cfg)
        splits = [Split(name, _select(src, cfg), *_domain_of(name, spec)) for name, src in found]
    _refuse_repeated(splits)
    partial = _self_check(spec, source, splits, cfg, notes) if check else bool(notes)
    subset = cfg.subset or "full"
    if cfg.limit:
        subset = f"{subset}+limit-{cfg.limit}" if cfg.subset else f"limit-{cfg.limit}"
    return SuiteData(spec, space, splits, classes, source, subset, partial, notes + info, clean_images, hub_split)


def _refuse_repeated(splits: list[Split]) -> None:
    """A split twice (``--corruptions fog,fog``, ``--domains clipart,clipart``, a run file, the Python API) would plan
    its samples twice and record them once: records are keyed by split and sample."""
    seen: set[str] = set()
    for split in splits:
        if split.name in seen:
            raise UserError(f"split {split.name} is asked for twice (--corruptions / --domains list it more than "
                            "once); every split is evaluated once: drop the repeat")
        seen.add(split.name)


def hub_read(spec: SuiteSpec, cfg: RunConfig) -> HubRead:
    """The columns and label index of the copy a run reads: the command line's, else the suite's for that Hub id."""
    copy = spec.hub_copy(cfg.hub_id)
    if cfg.label_index is not None and cfg.label_index not in LABEL_INDICES:
        raise UserError(f"--label-index must be one of {', '.join(LABEL_INDICES)}, got {cfg.label_index!r}")
    declared = cfg.label_index or (copy.label_index if copy and copy.label_index else spec.label_index)
    return HubRead(cfg.image_column or (copy.image_key if copy else None),
                   cfg.label_column or (copy.label_key if copy else None), declared, cfg.label_index is not None,
                   (cfg.image_column is not None, cfg.label_column is not None))


def _hub_split_name(spec: SuiteSpec, cfg: RunConfig, info: list[str]) -> tuple[str, bool]:
    """The split name of a Hub copy and whether the published sizes apply to it: a copy that holds another test
    set than the paper's is named ``<suite>@<its test split>`` (own table column, never mixed with the paper's)."""
    if cfg.hub_id or spec.hub is None or spec.hub.test_split is None:
        return spec.split_name, True
    name = f"{spec.split_name}@{spec.hub.test_split}"
    info.append(f"{spec.hub.id} holds the {spec.hub.test_split} test split, not the test set of "
                f"{spec.reference or spec.name}: results are named {name} and not comparable with it")
    return name, False


def _domains(spec: SuiteSpec, cfg: RunConfig) -> tuple[list[str], list[int]]:
    """The corruptions and severities of a corruption suite, or the domains of a domain / stream suite (in the
    order given: a continual stream runs them in that order)."""
    if spec.has_domains:
        if cfg.severities:
            raise UserError(f"{spec.name} has domains, not severities: drop --severities (the gradual setting "
                            "applies to corruption suites only)")
        unknown = [d for d in cfg.corruptions or () if d not in spec.domains and not _custom_speed(spec, d)]
        if unknown:
            extra = " (or speed_<images per severity step>)" if spec.kind == "ccc" else ""
            raise UserError(f"unknown domain(s) {unknown} for {spec.name}; expected some of: {', '.join(spec.domains)}"
                            + extra)
        return list(cfg.corruptions or spec.default_domains or ()), []
    if not spec.is_corruption:
        if cfg.corruptions:
            raise UserError(f"{spec.name} is a clean suite: --corruptions / --domains apply to corruption and "
                            "domain suites only")
        return [], []
    corruptions = cfg.corruptions or list(spec.corruptions)
    unknown = [c for c in corruptions if c not in spec.corruptions]
    if unknown:
        raise UserError(f"unknown corruption(s) {unknown} for {spec.name}; expected some of: {', '.join(spec.corruptions)}")
    severities = cfg.severities or list(spec.severities)
    if any(s not in range(1, 6) for s in severities):
        raise UserError(f"severities must be in 1..5, got {severities}")
    return corruptions, severities


def _custom_speed(spec: SuiteSpec, domain: str) -> bool:
    """CCC runs at its published transition speeds, or at any other (e.g. a fast one for a CPU-sized stream)."""
    return spec.kind == "ccc" and re.fullmatch(r"speed_[1-9]\d*", domain) is not None


def _domain_of(name: str, spec: SuiteSpec) -> tuple[str | None, int | None]:
    return (parse_split(name) or (None, None)) if spec.is_corruption else (None, None)


def _root(spec: SuiteSpec, cfg: RunConfig) -> Path | None:
    if spec.layout == "demo_photos":
        return None
    if not cfg.data_root:
        if spec.fetch:
            from .fetched import fetched_clean_set

            return fetched_clean_set(spec)
        raise UserError(f"{spec.name} needs --data-root: the folder of {spec.description.split(', ', 1)[-1]}")
    root = Path(cfg.data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"--data-root {root} does not exist or is not a folder (expected {spec.description})")
    return root


def _clean_source(clean: SuiteSpec, cfg: RunConfig, space: LabelSpace) -> SampleSource:
    root = _root(clean, cfg)
    if root is not None and ((root / "dataset_info.json").exists() or (root / "dataset_dict.json").exists()):
        ds, _ = load_dataset(clean.hub_copy(cfg.hub_id), cfg.hub_split, str(root))
        return hub_source(ds, hub_read(clean, cfg), space, clean.name, None)
    (_, source), = LAYOUTS.get(clean.layout)(root=root, space=space, split=clean.split_name, corruptions=(),
                                              severities=(), allow_partial=True, notes=[], **clean.layout_args)
    return source


@dataclass
class SourceData:
    """Clean in-distribution samples a method asks for before the stream (EATA's Fisher information)."""

    source: SampleSource
    origin: str  # where they came from, for the summary


def load_source_data(cfg: RunConfig, n: int) -> SourceData:
    """``n`` clean samples, drawn with the run seed and served in that random order: from ``--source-data`` (a
    folder in the clean suite's layout, e.g. training images), else, for a generated suite, from the clean images it
    corrupts (the test images' uncorrupted versions: not the paper's training-set samples, and said so in the
    summary)."""
    spec = SUITES.get(cfg.suite)
    clean = SUITES.get(spec.clean) if spec.clean else spec
    space = label_space(spec.labels)
    if cfg.source_data:
        root = Path(cfg.source_data).expanduser()
        if not root.is_dir():
            raise DataError(f"--source-data {root} does not exist or is not a folder (expected {clean.description})")
        source = _clean_source(clean, replace(cfg, data_root=str(root)), space)
        origin = f"--source-data {root}"
    elif (cfg.source or spec.default_source) == "generated":
        source = _clean_source(clean, cfg, space)
        origin = f"the clean images of --data-root ({clean.name}), uncorrupted versions of the test images"
    else:
        raise UserError(f"{cfg.method} needs {n} clean source images before the stream: give --source-data, a folder "
                        f"in the layout of {clean.name} ({clean.description}), e.g. training images")
    if len(source) == 0:
        raise DataError(f"no images found for the source data ({origin})")
    rng = np.random.default_rng(cfg.seed)  # a random draw in random order: batches mix classes, as the official
    keep = rng.choice(len(source), size=min(n, len(source)), replace=False).tolist()  # EATA main.py's shuffled loader
    return SourceData(source.select(keep), origin)


def _select(source: SampleSource, cfg: RunConfig) -> SampleSource:
    """The standard subset (same images in every domain), then ``--limit`` evenly spread over the split, so a
    limited run still covers every class instead of the first few folders."""
    if cfg.subset:
        if cfg.subset not in SUBSETS:
            raise UserError(f"unknown subset {cfg.subset!r}; expected one of: {', '.join(SUBSETS)}")
        wanted = set(resources.files("tta_bench").joinpath("assets", SUBSETS[cfg.subset]).read_text().split())
        keep = [i for i, sid in enumerate(source.ids) if "/".join(sid.split("/")[-2:]) in wanted]
        if not keep:
            raise DataError(f"none of the {cfg.subset} subset's images (<wnid>/<file> names) were found in this split")
        source = source.select(keep)
    return source.limited(cfg.limit) if cfg.limit else source


def _self_check(spec: SuiteSpec, source: str, splits: list[Split], cfg: RunConfig, notes: list[str]) -> bool:
    """Published and Hub data claim to be the paper's dataset: check the sizes the paper's dataset has."""
    if source == "generated" or cfg.subset or cfg.limit or spec.expected_images is None:
        return bool(notes)
    problems = []
    for split in splits:
        n, k, expected = len(split.source), len(set(split.source.labels)), spec.expected_for(split.name)
        if expected is None:
            continue
        if n != expected or (spec.expected_classes and k != spec.expected_classes):
            problems.append(f"{split.name}: found {n:,} images in {k} classes, expected {expected:,}"
                            + (f" in {spec.expected_classes}" if spec.expected_classes else ""))
    if problems and not cfg.allow_partial:
        where = f" under {cfg.data_root}" if cfg.data_root else ""
        raise DataError(f"{spec.name}{where} is not the complete published dataset:\n  " + "\n  ".join(problems)
                        + "\npass --allow-partial to run on it anyway (the run is then marked partial)")
    notes.extend(problems)
    return bool(notes)


def _classes(spec: SuiteSpec, space: LabelSpace) -> list[int]:
    """The classes the head scores: the whole label space, or the suite's fixed class list (ImageNet-R/-A: the
    official 200), never the classes a copy or a --limit sample happens to hold."""
    if spec.class_list is None:
        return list(range(len(space)))
    return [space.index_of(key, f"class list {spec.class_list}") for key in class_list(spec.class_list)]


def _refuse_outside(spec: SuiteSpec, space: LabelSpace, classes: list[int], source: SampleSource,
                    cfg: RunConfig) -> None:
    """A copy of a fixed-class-list suite holding another class is another dataset: stop, naming what is extra."""
    if spec.class_list is None:
        return
    allowed, first = set(classes), {}
    for sid, label in zip(source.ids, source.labels):
        if label not in allowed:
            first.setdefault(label, sid)
    if first:
        shown = ", ".join(f"{space.keys[c]} (e.g. {sid})" for c, sid in sorted(first.items())[:5])
        where = f" under {cfg.data_root}" if cfg.data_root else ""
        raise DataError(f"{spec.name}{where} holds {len(first)} class(es) outside its official {len(classes)} "
                        f"(tta_bench/assets/{CLASS_LISTS[spec.class_list]}): {shown}")
