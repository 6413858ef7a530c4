"""Split vocabulary of the report: which splits exist, their canonical column order, and how to read a value.

Kept apart from `tta_bench.data` so that the report imports without torch or any data code."""
from __future__ import annotations

import math
from typing import Any, Iterable

from ..vocabulary import CORRUPTIONS, FINE_GRAINED, parse_split

IMAGENET_FAMILY = ("imagenet", "imagenet-a", "imagenet-v2", "imagenet-r", "imagenet-sketch")
OOD_SPLITS = IMAGENET_FAMILY[1:]
# The five ImageNet-family suites share one table so that TPT-style rows (IN / A / V2 / R / Sketch) line up, and
# the ten fine-grained suites another (TPT Table 2); a Hub copy of another test split ("flowers102@official") is
# not one of them and keeps a table of its own.
FAMILY_TABLE = "imagenet-family"
FINE_GRAINED_TABLE = "fine-grained"
MEAN = "mean"
OOD_MEAN = "OOD mean"

# Metrics that are 100 minus each other: a table asked for one can show a run or paper that gave the other.
_COMPLEMENTS = (("error", "top1"), ("top1", "error"))


def is_aggregate(split: str) -> bool:
    """'mean' or 'mean-<scope>' (published averages): never averaged again into a row's mean."""
    return split == MEAN or split.startswith(MEAN + "-")


def parse_corruption(split: str) -> tuple[str, int] | None:
    """'gaussian_noise-5' -> ('gaussian_noise', 5); None for clean or aggregate splits."""
    return None if is_aggregate(split) else parse_split(split)


def split_key(split: str) -> tuple:
    """Canonical order: ImageNet family, corruptions by severity in the standard order, other splits, averages."""
    if split in IMAGENET_FAMILY:
        return (0, IMAGENET_FAMILY.index(split), 0, split)
    if split in FINE_GRAINED:
        return (0, len(IMAGENET_FAMILY) + FINE_GRAINED.index(split), 0, split)
    corruption = parse_corruption(split)
    if corruption is not None:
        name, severity = corruption
        rank = CORRUPTIONS.index(name) if name in CORRUPTIONS else len(CORRUPTIONS)
        return (1, severity, rank, name)
    return (3 if is_aggregate(split) else 2, 0, 0, split)


def severity_mean(severity: int) -> str:
    """Column name of the mean over one severity's corruptions."""
    return f"{MEAN}-{severity}"


def column_members(splits: Iterable[str]) -> dict[str, list[str]]:
    """Every column a row of these splits shows, with the splits it averages: each split itself, the mean over all,
    the mean per severity (corruption splits) and the OOD mean (all four ImageNet OOD sets present). Aggregates
    given as such (a published 'mean') are not splits and average nothing here."""
    ordered = sorted((split for split in splits if not is_aggregate(split)), key=split_key)
    out = {split: [split] for split in ordered}
    if ordered:
        out[MEAN] = ordered
    for split in ordered:
        if (corruption := parse_corruption(split)) is not None:
            out.setdefault(severity_mean(corruption[1]), []).append(split)
    if all(split in out for split in OOD_SPLITS):
        out[OOD_MEAN] = list(OOD_SPLITS)
    return out


def table_of(suite: str, splits: Iterable[str]) -> str:
    """The table a run (or published row) belongs to: its suite, or the shared ImageNet-family table."""
    names = list(splits)
    if names and all(split in IMAGENET_FAMILY for split in names):
        return FAMILY_TABLE
    if names and all(split in FINE_GRAINED for split in names):
        return FINE_GRAINED_TABLE
    return suite


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def split_value(split_dict: dict, key: str) -> float | None:
    """The value of `key` in one split's dict, or its complement (error <-> top1); None when absent."""
    value = _number(split_dict.get(key))
    if value is not None:
        return value
    for wanted, other in _COMPLEMENTS:
        if key.endswith(wanted):
            base = _number(split_dict.get(key[: -len(wanted)] + other))
            return None if base is None else 100.0 - base
    return None
