"""Run configuration: one plain dataclass that the command line, run files, sweep cells and the Python API fill, and
that every run folder records (config.json).

Each field is declared once, here, with what the command line needs as field metadata (``option``: help, flag
spelling, group, lower bound, whether it names a file that must exist). The command line is built from the fields
(cli.run_parser); values from any source pass through one conversion (``RunConfig.build``) and one check
(``RunConfig.validate``), both read off the field annotations, so a new option is one field.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from .choices import (PROMPT_SETS, ArrayOrder, Device, LabelIndex, LogKind, OnError, Precision, ResetMode, Setting, Sorter,
                      Source)
from .errors import UserError
from .vocabulary import DEFAULT_SETTING, NOT_IDENTITY

# command-line groups (--help), in order
WHAT, DATA, STREAM, METHOD, EXECUTION = ("what to run", "data", "test stream",
                                         "method options (defaults: the method's paper)", "execution and outputs")
GROUPS = (WHAT, DATA, STREAM, METHOD, EXECUTION)


@dataclass(frozen=True)
class Key:
    """A method option with a flag of its own (``--steps``), stored in ``method_options[key]``."""

    key: str
    type: Any
    help: str
    flag: str | None = None  # default: --<key>

    @property
    def spelling(self) -> str:
        return self.flag or "--" + self.key.replace("_", "-")


def option(default: Any = None, help: str = "", *, group: str = EXECUTION, flag: str | None = None,
           metavar: str | None = None, minimum: float | None = None, path: str | None = None,
           distinct: bool = False, aliases: tuple[tuple[str, str], ...] = (), keys: tuple[Key, ...] = (),
           default_factory: Any = None) -> Any:
    """A RunConfig field and its command-line declaration. ``path``: "file" or "dir" (must exist when set) or
    "data" (may be a name the loader resolves); each is recorded absolute where it exists. ``distinct``: a list
    that may not repeat an entry. ``aliases``: other flags for the same field, with their own help. ``keys``: the
    flags of a mapping's entries (method options)."""
    meta = {"help": help, "group": group, "flag": flag, "metavar": metavar, "minimum": minimum, "path": path,
            "distinct": distinct, "aliases": aliases, "keys": keys}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """Everything needed to rerun a run; ``to_dict`` goes into config.json and summary.json."""

    suite: str = option("demo", "benchmark suite (see `list`); default: %(default)s (offline)", group=WHAT)
    method: str = option("source", "method (see `list`); default: %(default)s", group=WHAT)
    teacher: str = option("effnet-lite0", "frozen model: clip:<arch>/<pretrained>, dino:<timm>, timm:<timm>, "
                          "effnet-lite0, cifar-resnet20, ... (default: %(default)s)", group=WHAT)
    data_root: str | None = option(None, "dataset folder in its published layout (or a saved HF dataset / clean set)",
                                   group=DATA, path="data")
    source: Source | None = option(None, "published layout, Hugging Face hub, or corruptions generated on the fly "
                                   "from the clean set (default: the suite's)", group=DATA)
    corruptions: list[str] | None = option(
        None, "comma list, default: all 15", group=DATA, distinct=True,
        aliases=(("--domains", "domain suites: which domains in which order (DomainNet-126: real,clipart,painting,"
                               "sketch; CCC: speed_1000 ...); the same field as --corruptions"),))
    severities: list[int] | None = option(None, "comma list of 1-5, default: 5 (as papers' tables)", group=DATA,
                                          distinct=True)
    limit: int | None = option(None, "evaluate N samples per split, evenly spread (quick runs; marked in tables)",
                               group=DATA, minimum=1)
    subset: str | None = option(None, "5k: the RobustBench 5,000-image ImageNet list", group=DATA)
    setting: Setting = option(DEFAULT_SETTING, "stream protocol (see `list`); default: %(default)s", group=STREAM)
    dirichlet: float | None = option(None, "class-correlation DELTA of *correlated settings (default, as the "
                                     "unified benchmark runs each setting: 0 = sorted by class; "
                                     "mixed_domains_correlated 0.01 on ImageNet suites, 0.1 otherwise)",
                                     group=STREAM, minimum=0)
    sorter: Sorter = option("note", "class-correlated order: note (the unified benchmark's sort_by_dirichlet, the "
                            "default) or rotta (RoTTA's sampler)", group=STREAM)
    array_order: ArrayOrder | None = option(None, "CIFAR-C arrays within a domain: keep the published order (TENT, "
                                            "CoTTA) or shuffle it by seed (the unified benchmark); default: the "
                                            "setting's reference (keep for reset_each_shift and continual, shuffle "
                                            "otherwise)", group=STREAM)
    seed: int = option(0, "fixes stream order, augmentations and initialisations", group=STREAM, minimum=0)
    batch_size: int | None = option(None, "samples per batch (default: the method's for the suite family, e.g. TENT "
                                    "200 on CIFAR, 64 on ImageNet; else 64)", minimum=1)
    num_workers: int = option(2, "DataLoader workers", flag="--workers", minimum=0)
    device: Device = option("auto", "auto, cpu or cuda")
    precision: Precision = option("auto", "auto (the method's reference precision on CUDA: bf16 autocast for APM "
                                  "and TPT, float32 otherwise; float32 on the CPU), fp32 or bf16")
    out: str | None = option(None, "run folder (default: results/runs/<suite>-<method>-<teacher>-seed<S>-<config "
                             "hash>)")
    prompts: str | None = option(None, "CLIP text head: single ('a photo of a {}.'), apm ('a photo of a {}'), "
                                 "ensemble (CLIP's templates: 80 for ImageNet, the dataset's own for the fine-grained "
                                 "suites), coop (CoOp's prompt of a fine-grained suite) or a prompt file; default: "
                                 "the method's reference (APM: apm; others: single)", group=WHAT, path="file")
    weights: str | None = option(None, "local checkpoint for the teacher instead of its default download",
                                 group=WHAT, path="file")
    head: str | None = option(None, "linear head file for a backbone without one (DINO)", group=WHAT, path="file")
    source_data: str | None = option(None, "clean images in the clean suite's layout for methods that need source "
                                     "statistics before the stream (EATA); default for generated suites: the clean "
                                     "set of --data-root", group=DATA, path="dir")
    hub_id: str | None = option(None, "Hugging Face dataset id overriding the suite's", group=DATA)
    hub_split: str | None = option(None, "Hugging Face split overriding the suite's", group=DATA)
    label_index: LabelIndex | None = option(None, "hub copies with integer labels: they index ImageNet-1k or the "
                                            "suite's own classes (0..199 for ImageNet-R/-A); default: the suite's for "
                                            "its known Hub ids (suites/*.yaml)", group=DATA)
    image_column: str | None = option(None, "hub copies: the image column, when not the suite's or a usual name",
                                      group=DATA)
    label_column: str | None = option(None, "hub copies: the label column, when not the suite's or a usual name",
                                      group=DATA)
    on_error: OnError = option("stop", "a corrupt image stops the run (default) or is skipped and counted",
                               group=DATA)
    allow_partial: bool = option(False, "run on an incomplete dataset (recorded, marked)", group=DATA)
    overwrite: bool = option(False, "discard a run folder of another configuration")
    save_logits: bool = option(False, "keep every sample's logits (float16, logits/<split>.npz)")
    record_steps: list[int] | None = option(None, "iterative methods: record the prediction at these steps",
                                            minimum=0)
    log: LogKind | None = option(None, "stream per-batch accuracy, loss and cost while the run goes: csv (log.csv "
                                 "in the run folder), tensorboard or wandb (optional packages: pip install "
                                 "'tta-bench[log]')")
    method_options: dict[str, Any] = option(
        default_factory=dict, help="any other method option", group=METHOD, flag="--opt", metavar="KEY=VALUE",
        keys=(Key("steps", int, "adaptation steps per sample or batch"), Key("lr", float, "learning rate"),
              Key("reset", ResetMode, "online methods: reset every batch or keep adapting"),
              Key("preset", str, "APM: auto (the default: paper with a CLIP/DINO teacher on CUDA, else cpu), paper "
                  "(p14, g32, 448 px, MLP 2048-4096-2048-1024 + a head to the teacher's feature width, Adam 1e-4, "
                  "250 steps) or cpu", flag="--apm-preset")))

    @classmethod
    def build(cls, values: Mapping[str, Any], where: str = "the configuration") -> RunConfig:
        """The one way values become a RunConfig (command line, run file, sweep cell, API): see ``typed_values``."""
        return cls(**typed_values(values, where))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """From a recorded config.json (written by to_json): keys this version does not know are ignored; a path an
        earlier version recorded relative is read from the working directory, as that version read it."""
        fields = field_map()
        return cls(**{k: _absolute(fields[k], v) for k, v in data.items() if k in fields})

    def validate(self, names: Literal["flags", "fields"] = "flags") -> None:
        """Every bad value in one message, from the field annotations and metadata (types, closed sets, lower
        bounds, repeated entries, files that must exist): the engine calls it before touching data, whatever built
        the configuration, and every entry point before anything is written. ``names``: how the message names a
        field, by its flag (the command line) or by its name (run files, the Python API)."""
        problems = [problem for f in dataclasses.fields(self) if (problem := _problem(
            f, getattr(self, f.name), spelling(f) if names == "flags" and not f.metadata["keys"] else f.name))]
        if problems:
            raise UserError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """config.json's text: strict JSON (a NaN or infinite value, which JSON cannot hold, is refused)."""
        try:
            return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
        except ValueError:
            bad = {k: v for k, v in self.to_dict().items() if not _json_safe(v)}
            raise UserError(f"config.json cannot record {bad}: JSON holds no NaN or infinity") from None

    def identity(self) -> dict[str, Any]:
        """The fields that define what a run computes (all but vocabulary.NOT_IDENTITY); resume refuses a folder
        whose identity differs. A field added after FIRST_SCHEMA enters it only when set to something other than
        its default, so that a new option renames no existing run folder."""
        defaults = type(self)().to_dict()
        return {k: v for k, v in self.to_dict().items()
                if k not in NOT_IDENTITY and (k in FIRST_SCHEMA or v != defaults[k])}


# The fields of the first recorded schema (every run folder's name hashes them all).
FIRST_SCHEMA = frozenset({
    "suite", "method", "teacher", "data_root", "source", "corruptions", "severities", "limit", "subset", "setting",
    "dirichlet", "sorter", "seed", "batch_size", "num_workers", "device", "precision", "out", "prompts", "weights",
    "head", "source_data", "hub_id", "hub_split", "label_index", "image_column", "label_column", "on_error",
    "allow_partial", "overwrite", "save_logits", "record_steps", "method_options"})


def typed_values(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` as RunConfig field values: unknown keys refused, each value converted to its field's type
    (``"16"`` -> 16, ``"fog,contrast"`` -> a list; ``1.5`` for an integer refused, naming ``where``), and paths that
    exist made absolute, so that config.json reruns from any folder. Bounds and existence: RunConfig.validate."""
    fields = field_map()
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; expected RunConfig fields: "
                        f"{', '.join(fields)}")
    return {name: _absolute(fields[name], convert(hints()[name], value, f"{where}: {name}"))
            for name, value in values.items()}


def hints(cls: type | None = None) -> dict[str, Any]:
    """A dataclass's field annotations as types (they are strings under ``from __future__ import annotations``);
    RunConfig's by default."""
    return _hints(cls or RunConfig)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_map() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(RunConfig)}


def spelling(f: dataclasses.Field) -> str:
    """The command-line flag of a field (``--workers`` for num_workers)."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


# -- conversion: one set of rules for every source of values ------------------------------------------------------
_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
_INTEGER = re.compile(r"[+-]?\d+")


class _Mismatch(Exception):
    """``value`` does not fit the type; the message says what was expected."""


def convert(hint: Any, value: Any, what: str) -> Any:
    """``value`` as type ``hint``, or a UserError "<what> must be <words>, got <value>"."""
    try:
        return _convert(hint, value)
    except _Mismatch as exc:
        raise UserError(f"{what} must be {exc}, got {value!r}") from None


def _convert(hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(args, value)
    if value is None:
        raise _Mismatch(describe(hint))
    if hint is bool:
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        return _exact(hint, value)
    if hint is int:
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value)
        return _exact(hint, value)
    if hint is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _Mismatch(describe(hint)) from None
        return float(_exact(hint, value))
    if origin in (list, tuple):
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else (
            value if isinstance(value, (list, tuple)) else [value])
        try:
            return origin(_convert(args[0], item) for item in items)
        except _Mismatch:
            raise _Mismatch(describe(hint)) from None
    if origin is dict or hint is dict:
        return dict(_exact(hint, value))
    return _exact(hint, value) if hint is str or origin is Literal else value


def _convert_union(members: tuple[Any, ...], value: Any) -> Any:
    """None where the union allows it; a value that already is a member stays it (an integer for a number becomes
    a float); else the first member that converts it."""
    if value is None and type(None) in members:
        return None
    members = tuple(m for m in members if m is not type(None))
    for member in sorted(members, key=lambda m: not conforms(m, value)):  # members the value already is, first
        try:
            return _convert(member, value)
        except _Mismatch:
            continue
    raise _Mismatch(" or ".join(describe(m) for m in members))


def _exact(hint: Any, value: Any) -> Any:
    if not conforms(hint, value):
        raise _Mismatch(describe(hint))
    return value


def conforms(hint: Any, value: Any) -> bool:
    """Whether ``value`` already is of type ``hint`` (a bool is not an integer here; an integer is a number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(m, value) for m in args)
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint in (int, float) and isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, (int, float))
    if origin is Literal:
        return value in args
    if origin in (list, tuple):
        return isinstance(value, origin) and all(conforms(args[0], v) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def describe(hint: Any) -> str:
    """What a type asks for, in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(m) for m in args if m is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple):
        return {int: "a list of integers", str: "a list of names"}.get(args[0], "a list")
    if origin is dict or hint is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


# -- validation: every field by its annotation and metadata -------------------------------------------------------
def _problem(f: dataclasses.Field, value: Any, name: str) -> str | None:
    """What is wrong with one field's value (called ``name`` in the message); None when nothing is."""
    hint, meta = hints()[f.name], f.metadata
    if not conforms(hint, value):
        return f"{name} must be {describe(hint)}, got {value!r}"
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    low = meta.get("minimum")
    if low is not None and any(not math.isfinite(v) or v < low for v in items):
        if isinstance(value, list):
            return f"{name} entries must be >= {low}, got {value}"
        return f"{name} must be {'a finite number ' if isinstance(value, float) else ''}>= {low}, got {value}"
    repeated = sorted({str(v) for v in items if items.count(v) > 1}) if meta.get("distinct") else []
    if repeated:
        names = "/".join([name, *(alias for alias, _ in meta["aliases"] if name.startswith("--"))])
        return f"{names} lists {', '.join(repeated)} more than once ({','.join(map(str, items))}): name each once"
    return _missing_path(name, meta.get("path"), value)


def _missing_path(name: str, kind: str | None, value: Any) -> str | None:
    if kind not in ("file", "dir") or value in PROMPT_SETS:
        return None
    path = os.path.expanduser(value)
    if kind == "file" and not os.path.isfile(path):
        return f"{name} {value} does not exist" + (" (it is a folder; give a file)" if os.path.isdir(path) else "")
    if kind == "dir" and not os.path.isdir(path):
        return f"{name} {value} does not exist or is not a folder"
    return None


def _absolute(f: dataclasses.Field, value: Any) -> Any:
    """A path field's value made absolute where it names something that exists (a named prompt set, a Hub id or a
    missing file stay as given: validate or the loader reports the last)."""
    if not f.metadata.get("path") or not isinstance(value, str) or value in PROMPT_SETS:
        return value
    path = os.path.expanduser(value)
    return os.path.abspath(path) if os.path.exists(path) else value


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def parse_key_values(items: list[str], spelling: str, parse: Any = lambda v: v) -> dict[str, Any]:
    """``KEY=VALUE`` command-line items (``--opt``, ``--set``) -> {key: parse(value)}; dashes in keys become
    underscores."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"{spelling} expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = parse(value)
    return out
