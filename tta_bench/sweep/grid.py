"""A sweep file read and expanded: the grid of run configurations in a fixed order, and its shards."""
from __future__ import annotations

import dataclasses
import itertools
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from ..config import RunConfig
from ..errors import UserError
from ..runconfig_file import FIELDS, check_fields, layer, load_yaml

SWEEPS_DIR = Path("results/sweeps")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a sweep's name is its folder's: no separators, no '..'
NAMED = ("assets", "sweeps")  # package data: tta_bench/assets/sweeps/<name>.yaml
TOP_KEYS = ("name", "description", "metric", "base", "grid", "overrides", "exclude", "published")
DATA_ROOTS = "data_roots"  # base only: {suite: data root}, for grids over suites
SWEEP_FIELDS = tuple(k for k in FIELDS if k != "out")  # a run file's schema; each run's folder is the sweep's
DEFAULTS = RunConfig().to_dict()  # what a key absent from base and cell matches against


@dataclass(frozen=True)
class Override:
    match: dict[str, Any]
    set: dict[str, Any]


@dataclass(frozen=True)
class PublishedMatch:
    """Measured runs whose config matches ``match`` are compared with published rows (method, backbone), of the
    sources containing ``source`` where one is given (one method and backbone may be published by several papers
    under different protocols)."""
    match: dict[str, Any]
    method: str
    backbone: str
    source: str | None = None


@dataclass
class Sweep:
    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    overrides: list[Override] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    published: list[PublishedMatch] = field(default_factory=list)
    description: str = ""
    metric: str = "top1"  # the metric the paper's table reports (top1 or error)
    origin: str = "<sweep>"  # the file it came from, for messages


@dataclass(frozen=True)
class SweepRun:
    index: int  # position in the full grid (stable across shards)
    cell: dict[str, Any]  # the grid values of this run
    cfg: RunConfig  # cfg.out is the run's folder inside the sweep folder


def _fields_check(keys: Mapping[str, Any], where: str, origin: str, allowed: tuple[str, ...] = SWEEP_FIELDS) -> None:
    check_fields(keys, where, origin, allowed)


def _mapping(value: Any, where: str, origin: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{origin}: {where} must be a mapping, got {type(value).__name__}")
    return dict(value)


def parse_sweep(data: Any, origin: str = "<sweep>") -> Sweep:
    """A Sweep from the YAML's mapping; every key is checked against RunConfig so a typo fails before any run."""
    data = _mapping(data, "the sweep file", origin)
    _fields_check(data, "the top level", origin, TOP_KEYS)
    if not isinstance(data.get("name"), str) or not NAME.fullmatch(data["name"]):
        raise UserError(f"{origin}: 'name' (the sweep's folder under {SWEEPS_DIR}) must be a plain folder name of "
                        f"letters, digits, '.', '_' and '-', got {data.get('name')!r}")
    base = _mapping(data.get("base"), "base", origin)
    roots = _mapping(base.pop(DATA_ROOTS, None), f"base.{DATA_ROOTS}", origin)
    _fields_check(base, "base", origin)
    grid = _mapping(data.get("grid"), "grid", origin)
    _fields_check(grid, "grid", origin)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{origin}: grid.{key} must be a non-empty list, got {values!r}")
    overrides = []
    for i, item in enumerate(data.get("overrides") or []):
        item = _mapping(item, f"overrides[{i}]", origin)
        _fields_check(item, f"overrides[{i}]", origin, ("match", "set"))
        match, changes = _mapping(item.get("match"), f"overrides[{i}].match", origin), _mapping(
            item.get("set"), f"overrides[{i}].set", origin)
        _fields_check(match, f"overrides[{i}].match", origin)
        _fields_check(changes, f"overrides[{i}].set", origin)
        overrides.append(Override(match, changes))
    exclude = [_mapping(item, f"exclude[{i}]", origin) for i, item in enumerate(data.get("exclude") or [])]
    for i, match in enumerate(exclude):
        _fields_check(match, f"exclude[{i}]", origin)
    published = []
    for i, item in enumerate(data.get("published") or []):
        item = _mapping(item, f"published[{i}]", origin)
        _fields_check(item, f"published[{i}]", origin, ("match", "method", "backbone", "source"))
        match = _mapping(item.get("match"), f"published[{i}].match", origin)
        _fields_check(match, f"published[{i}].match", origin)
        if not all(isinstance(item.get(k), str) for k in ("method", "backbone")):
            raise UserError(f"{origin}: published[{i}] needs 'method' and 'backbone' as in published.csv")
        if item.get("source") is not None and not isinstance(item["source"], str):
            raise UserError(f"{origin}: published[{i}].source must be text (part of published.csv's source)")
        published.append(PublishedMatch(match, item["method"], item["backbone"], item.get("source")))
    sweep = Sweep(data["name"], base, grid, overrides, exclude, published, str(data.get("description") or ""),
                  str(data.get("metric") or "top1"), origin)
    return with_data_roots(sweep, roots) if roots else sweep


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read sweep file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_sweep(load_yaml(text, str(path)), str(path))


def sweep_names() -> list[str]:
    """The named sweeps (paper tables) that ``reproduce`` knows."""
    folder = resources.files("tta_bench").joinpath(*NAMED)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def named_sweep(name: str) -> Sweep:
    names = sweep_names()
    if name not in names:
        raise UserError(f"unknown table {name!r}; expected one of: {', '.join(names)}")
    resource = resources.files("tta_bench").joinpath(*NAMED, f"{name}.yaml")
    origin = f"tta_bench/{'/'.join(NAMED)}/{name}.yaml"
    return parse_sweep(load_yaml(resource.read_text(), origin), origin)


def sweep_of(table: str) -> Sweep:
    """A named sweep, or a sweep file given by path (reproduce accepts both)."""
    return load_sweep(table) if table.endswith((".yaml", ".yml")) or Path(table).is_file() else named_sweep(table)


def with_data_roots(sweep: Sweep, roots: Mapping[str, str]) -> Sweep:
    """Per-suite data roots become an override per suite (they win over base.data_root)."""
    extra = [Override({"suite": suite}, {"data_root": str(root)}) for suite, root in sorted(roots.items())]
    return dataclasses.replace(sweep, overrides=[*sweep.overrides, *extra])


def suites_of(sweep: Sweep) -> list[str]:
    return list(sweep.grid.get("suite") or [sweep.base.get("suite", RunConfig.suite)])


def roots_under(parent: str | Path, suites: list[str]) -> dict[str, str]:
    """--data-root PARENT of reproduce: PARENT/<suite> per suite, or the folder name a suite's usual layout gives it
    (its ``data_folders``, e.g. CoOp's oxford_flowers/); names compared case-insensitively. A one-suite sweep may
    also point straight at that suite's folder."""
    from ..data.suites import SUITES

    parent = Path(parent)
    folders = {p.name.lower(): p for p in parent.iterdir() if p.is_dir()} if parent.is_dir() else {}

    def folder_of(suite: str) -> Path | None:
        names = [suite, *(SUITES.get(suite).data_folders if suite in SUITES else ())]
        return next((folders[n.lower()] for n in names if n.lower() in folders), None)

    if len(suites) == 1 and folder_of(suites[0]) is None:
        return {suites[0]: str(parent)}
    return {suite: str(folder_of(suite) or parent / suite) for suite in suites}


def matches(values: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    return all(values.get(k, DEFAULTS[k]) == v for k, v in match.items())


def expand(sweep: Sweep, out_dir: str | Path | None = None, extra: Mapping[str, Any] | None = None) -> list[SweepRun]:
    """All runs of the grid in a fixed order (grid axes in file order, the last one varying fastest).

    Layers, later ones winning: base, the grid cell, matching overrides, then ``extra`` (command-line --set).
    Overrides and exclude match the base + cell values. Cells that end up with the same run folder are one run."""
    from ..records import default_out

    extra = dict(extra or {})
    _fields_check(extra, "--set", "command line")
    folder = Path(out_dir) if out_dir is not None else SWEEPS_DIR / sweep.name
    runs: list[SweepRun] = []
    seen: set[str] = set()
    for combo in itertools.product(*sweep.grid.values()):
        cell = dict(zip(sweep.grid, combo))
        values = layer(sweep.base, cell)
        if any(matches(values, match) for match in sweep.exclude):
            continue
        for override in [o for o in sweep.overrides if matches(values, o.match)]:
            values = layer(values, override.set)
        cfg = RunConfig.build(layer(values, extra), f"{sweep.origin}: the run {cell}")
        name = default_out(cfg).name
        if name not in seen:
            seen.add(name)
            runs.append(SweepRun(len(runs), cell, dataclasses.replace(cfg, out=str(folder / name))))
    return runs


def shard(runs: list[SweepRun], index: int, count: int) -> list[SweepRun]:
    """Every count-th run starting at index: N shards cover the grid exactly once, with no coordination."""
    if count < 1 or not 0 <= index < count:
        raise UserError(f"shard {index}/{count}: expected I/N with 0 <= I < N")
    return runs[index::count]


def parse_shard(text: str | None, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """'I/N', else the SLURM job array's task (id - min id, count), else the whole grid (0, 1)."""
    env = os.environ if env is None else env
    if text is None and "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        task, first, count = (_slurm_number(env, name) for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
                                                                     "SLURM_ARRAY_TASK_COUNT"))
        return task - first, count
    if text is None:
        return 0, 1
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise UserError(f"--shard expects I/N (e.g. 0/4), got {text!r}")
    return int(index), int(count)


def _slurm_number(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "0")
    if not value.strip().isdigit():
        raise UserError(f"{name}={value!r} is not a task number: run inside a SLURM job array (sbatch --array), or "
                        "give --shard I/N")
    return int(value)
