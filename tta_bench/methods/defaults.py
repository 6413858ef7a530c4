"""Per-suite-family method defaults as data (assets/method_defaults.yaml), applied under the user's choices.

A paper's CIFAR and ImageNet settings differ (TENT: Adam 1e-3 at batch 200 on CIFAR, SGD 0.00025 at batch 64 on
ImageNet); the table holds them, each entry naming the reference file it comes from, so a run on a suite gets the
setting the published number was measured with unless the user says otherwise. An entry may also be keyed by a
suite's own name, for methods configured per dataset (TDA: ImageNet-A, -R, ... differ); it takes precedence over
the suite's family.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class SuiteDefaults:
    """What the table says for one method on one suite family."""

    family: str  # the table key that applied: the suite's name or its family
    source: str | None = None
    batch_size: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    prompts: str | None = None  # the CLIP prompt spec the reference classifies this suite with (TDA: per dataset)


@cache
def _table() -> dict[str, dict[str, dict[str, Any]]]:
    return yaml.safe_load(resources.files("tta_bench").joinpath("assets", "method_defaults.yaml").read_text()) or {}


def suite_defaults(method: str, family: str, suite: str | None = None) -> SuiteDefaults:
    entries = _table().get(method, {})
    key = suite if suite in entries else family
    entry = entries.get(key, {})
    return SuiteDefaults(key, entry.get("source"), entry.get("batch_size"), dict(entry.get("options") or {}),
                         entry.get("prompts"))


def default_prompts(method: str, suite: str) -> str | None:
    """The prompt spec the table gives ``method`` on ``suite`` (its own entry, else its family's), None if none."""
    from ..data.suites import SUITES

    family = SUITES.get(suite).family if suite in SUITES else suite
    return suite_defaults(method, family, suite).prompts


@dataclass(frozen=True)
class Resolved:
    """The batch size and method options a run uses, and the record of where they came from."""

    batch_size: int
    options: dict[str, Any]
    record: dict[str, Any]


def resolve(method: str, family: str, batch_size: int | None, given: dict[str, Any],
            suite: str | None = None) -> Resolved:
    """Table values under the user's: ``batch_size`` None and options absent from ``given`` take the table's (the
    entry of ``suite`` where there is one, else of ``family``)."""
    table = suite_defaults(method, family, suite)
    chosen = {**table.options, **given}
    applied = {k: v for k, v in table.options.items() if k not in given}
    overridden = {k: {"table": v, "used": given[k]} for k, v in table.options.items() if k in given}
    if table.batch_size is not None:
        if batch_size is None:
            applied["batch_size"] = table.batch_size
        elif batch_size != table.batch_size:
            overridden["batch_size"] = {"table": table.batch_size, "used": batch_size}
    size = batch_size if batch_size is not None else (table.batch_size or DEFAULT_BATCH_SIZE)
    record = {"family": table.family, "source": table.source, "applied": applied, "overridden": overridden}
    return Resolved(size, chosen, record)
