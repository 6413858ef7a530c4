"""Run configuration: one plain dataclass that the CLI fills and every run folder records."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .vocabulary import DEFAULT_SETTING, NOT_IDENTITY

SOURCES = ("published", "hub", "generated")


@dataclass
class RunConfig:
    """Everything needed to rerun a run; ``to_dict`` goes into config.json and summary.json."""

    suite: str = "demo"
    method: str = "source"
    teacher: str = "effnet-lite0"
    data_root: str | None = None
    source: str | None = None  # None: the suite's default source
    corruptions: list[str] | None = None  # None: all of the suite's
    severities: list[int] | None = None  # None: the suite's default (5 for corruption suites)
    limit: int | None = None  # first N samples of every split (after the subset)
    subset: str | None = None  # "5k": the RobustBench 5,000-image ImageNet list
    setting: str = DEFAULT_SETTING
    dirichlet: float = 0.1
    seed: int = 0
    batch_size: int | None = None  # None: the method's default for the suite family (methods/defaults.py), else 64
    num_workers: int = 2
    device: str = "auto"
    precision: str = "auto"  # auto: the method's (its reference code's) on CUDA, float32 on the CPU; or fp32 | bf16
    out: str | None = None
    prompts: str = "single"
    weights: str | None = None
    source_data: str | None = None  # clean images for methods that need source statistics (EATA's Fisher)
    hub_id: str | None = None
    hub_split: str | None = None
    label_index: str | None = None  # hub: what integer labels index (imagenet1k | suite); None: the suite's for the id
    image_column: str | None = None  # hub: the image column when not the suite's / guessed one
    label_column: str | None = None  # hub: the label column when not the suite's / guessed one
    on_error: str = "stop"  # what a corrupt image does: stop the run, or skip it and count it
    allow_partial: bool = False
    overwrite: bool = False
    save_logits: bool = False
    record_steps: list[int] | None = None
    method_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def identity(self) -> dict[str, Any]:
        """The fields that define what a run computes (all but vocabulary.NOT_IDENTITY); resume refuses a folder
        whose identity differs."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY}


def parse_key_values(items: list[str], flag: str, convert=lambda v: v) -> dict[str, Any]:
    """``KEY=VALUE`` command-line items (``--opt``, ``--set``) -> {key: convert(value)}; dashes in keys become
    underscores."""
    from .errors import UserError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = convert(value)
    return out
