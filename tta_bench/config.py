"""Run configuration: one plain dataclass that the CLI fills and every run folder records."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .choices import LOGS
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
    dirichlet: float | None = None  # class-correlation delta of *correlated settings; None: the suite family's
    sorter: str = "note"  # class-correlated order: note (the unified benchmark's sort_by_dirichlet) | rotta
    seed: int = 0
    batch_size: int | None = None  # None: the method's default for the suite family (methods/defaults.py), else 64
    num_workers: int = 2
    device: str = "auto"
    precision: str = "auto"  # auto: the method's (its reference code's) on CUDA, float32 on the CPU; or fp32 | bf16
    out: str | None = None
    prompts: str | None = None  # CLIP text head: None = the method's (its reference code's), else single
    weights: str | None = None
    head: str | None = None  # linear head file for a backbone without one (DINO)
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
    log: str | None = None  # experiment logging while the run goes: csv | tensorboard | wandb (choices.LOGS)
    method_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Every bad value in one message (a batch size of 0 once made a whole domain one batch; --limit 0 ran
        everything): the engine calls it before touching data, whatever built the configuration."""
        import math

        from .errors import UserError

        def bad_number(value: Any) -> bool:
            return not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)

        problems = [
            self.batch_size is not None and (bad_number(self.batch_size) or self.batch_size < 1)
            and f"--batch-size must be >= 1, got {self.batch_size}",
            self.limit is not None and (bad_number(self.limit) or self.limit < 1) and f"--limit must be >= 1, got {self.limit}",
            self.dirichlet is not None and (bad_number(self.dirichlet) or self.dirichlet < 0)
            and f"--dirichlet must be a finite number >= 0 (0 sorts by class), got {self.dirichlet}",
            self.record_steps is not None and any(bad_number(s) or s < 0 for s in self.record_steps)
            and f"--record-steps must be steps >= 0, got {self.record_steps}",
            self.num_workers < 0 and f"--workers must be >= 0, got {self.num_workers}",
            self.on_error not in ("stop", "skip") and f"--on-error must be stop or skip, got {self.on_error!r}",
            self.precision not in ("auto", "fp32", "bf16") and f"--precision must be auto, fp32 or bf16, got {self.precision!r}",
            self.sorter not in ("note", "rotta") and f"--sorter must be note or rotta, got {self.sorter!r}",
            self.log not in (None, *LOGS) and f"--log must be one of {', '.join(LOGS)}, got {self.log!r}",
        ]
        found = [p for p in problems if p]
        if found:
            raise UserError("; ".join(found))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """From a recorded config.json (written by to_dict): keys this version does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "the configuration") -> "RunConfig":
        """From a hand-written mapping (a sweep cell, a config file): unknown keys and values of the wrong type are
        errors that name the field, and a single value where a list is expected is a one-element list (YAML's
        ``corruptions: fog`` once became ['f', 'o', 'g'])."""
        from .errors import UserError

        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise UserError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; expected RunConfig fields: "
                            f"{', '.join(fields)}")
        return cls(**{k: _typed(k, fields[k].type, v, where) for k, v in data.items()})

    def identity(self) -> dict[str, Any]:
        """The fields that define what a run computes (all but vocabulary.NOT_IDENTITY); resume refuses a folder
        whose identity differs."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY}


def _typed(name: str, kind: str, value: Any, where: str) -> Any:
    """`value` as the field's declared type (the annotation string under `from __future__ import annotations`)."""
    from .errors import UserError

    def fail(expected: str) -> UserError:
        return UserError(f"{where}: {name} expects {expected}, got {value!r}")

    if value is None:
        if "None" not in kind:
            raise fail(kind)
        return None
    base = kind.replace(" | None", "")
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise fail("true or false")
    if base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail("an integer")
    if base == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise fail("a number")
    if base == "str":
        if isinstance(value, str):
            return value
        raise fail("a string")
    if base.startswith("list["):
        item = base[5:-1]
        values = value if isinstance(value, list) else [v.strip() for v in value.split(",")] \
            if isinstance(value, str) else [value]
        if item == "int":
            try:
                return [int(v) if isinstance(v, str) else _typed(name, "int", v, where) for v in values]
            except ValueError:
                raise fail("a list of integers") from None
        if not all(isinstance(v, str) for v in values):
            raise fail("a list of names")
        return values
    if base.startswith("dict"):
        if isinstance(value, dict):
            return dict(value)
        raise fail("a mapping")
    return value


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
