"""Sweeps: a YAML grid of run configurations, run one folder per cell, resumable and shardable.

A sweep file names a ``base`` (RunConfig fields every run shares: a run file's schema, runconfig_file.py), a ``grid`` (lists whose product gives the runs),
``overrides`` (per-cell changes, e.g. tent -> batch 200) and ``exclude`` (cells to drop). Runs are listed in a
fixed order, so ``--shard I/N`` (or a SLURM job array) splits the grid with no coordination, and a rerun skips
the runs whose folder already holds a summary of the same configuration. Named sweeps in assets/sweeps/ are the
paper tables that ``reproduce`` regenerates, with a ``published`` section saying which published row each
measured row is compared with.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import statistics
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import yaml

from .config import RunConfig, parse_key_values
from .errors import UserError
from .registry import UnknownNameError
from .runconfig_file import FIELDS, check_fields, layer, resolved

SWEEPS_DIR = Path("results/sweeps")
NAMED = ("assets", "sweeps")  # package data: tta_bench/assets/sweeps/<name>.yaml
TOP_KEYS = ("name", "description", "metric", "base", "grid", "overrides", "exclude", "published")
DATA_ROOTS = "data_roots"  # base only: {suite: data root}, for grids over suites
SWEEP_FIELDS = tuple(k for k in FIELDS if k != "out")  # a run file's schema; each run's folder is the sweep's
DEFAULTS = RunConfig().to_dict()  # what a key absent from base and cell matches against
DONE, PARTIAL, TODO = "done", "partial", "todo"
DELTA_TITLE = "Δ vs published"


@dataclass(frozen=True)
class Override:
    match: dict[str, Any]
    set: dict[str, Any]


@dataclass(frozen=True)
class PublishedMatch:
    """Measured runs whose config matches ``match`` are compared with published rows (method, backbone)."""
    match: dict[str, Any]
    method: str
    backbone: str


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


# ---------------------------------------------------------------- loading and validation


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
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise UserError(f"{origin}: 'name' (the sweep's folder name) is required")
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
        _fields_check(item, f"published[{i}]", origin, ("match", "method", "backbone"))
        match = _mapping(item.get("match"), f"published[{i}].match", origin)
        _fields_check(match, f"published[{i}].match", origin)
        if not all(isinstance(item.get(k), str) for k in ("method", "backbone")):
            raise UserError(f"{origin}: published[{i}] needs 'method' and 'backbone' as in published.csv")
        published.append(PublishedMatch(match, item["method"], item["backbone"]))
    sweep = Sweep(data["name"], base, grid, overrides, exclude, published, str(data.get("description") or ""),
                  str(data.get("metric") or "top1"), origin)
    return with_data_roots(sweep, roots) if roots else sweep


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read sweep file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    return parse_sweep(data, str(path))


def sweep_names() -> list[str]:
    """The named sweeps (paper tables) that ``reproduce`` knows."""
    folder = resources.files("tta_bench").joinpath(*NAMED)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def named_sweep(name: str) -> Sweep:
    names = sweep_names()
    if name not in names:
        raise UserError(f"unknown table {name!r}; expected one of: {', '.join(names)}")
    resource = resources.files("tta_bench").joinpath(*NAMED, f"{name}.yaml")
    return parse_sweep(yaml.safe_load(resource.read_text()), f"tta_bench/{'/'.join(NAMED)}/{name}.yaml")


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
    from .data.suites import SUITES

    parent = Path(parent)
    folders = {p.name.lower(): p for p in parent.iterdir() if p.is_dir()} if parent.is_dir() else {}

    def folder_of(suite: str) -> Path | None:
        names = [suite, *(SUITES.get(suite).data_folders if suite in SUITES else ())]
        return next((folders[n.lower()] for n in names if n.lower() in folders), None)

    if len(suites) == 1 and folder_of(suites[0]) is None:
        return {suites[0]: str(parent)}
    return {suite: str(folder_of(suite) or parent / suite) for suite in suites}


# ---------------------------------------------------------------- expansion and sharding


def _matches(values: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    return all(values.get(k, DEFAULTS[k]) == v for k, v in match.items())




def expand(sweep: Sweep, out_dir: str | Path | None = None, extra: Mapping[str, Any] | None = None) -> list[SweepRun]:
    """All runs of the grid in a fixed order (grid axes in file order, the last one varying fastest).

    Layers, later ones winning: base, the grid cell, matching overrides, then ``extra`` (command-line --set).
    Overrides and exclude match the base + cell values. Cells that end up with the same run folder are one run."""
    from .engine import default_out

    extra = dict(extra or {})
    _fields_check(extra, "--set", "command line")
    folder = Path(out_dir) if out_dir is not None else SWEEPS_DIR / sweep.name
    runs: list[SweepRun] = []
    seen: set[str] = set()
    for combo in itertools.product(*sweep.grid.values()):
        cell = dict(zip(sweep.grid, combo))
        values = layer(sweep.base, cell)
        if any(_matches(values, match) for match in sweep.exclude):
            continue
        for override in [o for o in sweep.overrides if _matches(values, o.match)]:
            values = layer(values, override.set)
        cfg = resolved(RunConfig.from_mapping(layer(values, extra), f"{sweep.origin}: the run {cell}"))
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
        return int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0)), int(
            env["SLURM_ARRAY_TASK_COUNT"])
    if text is None:
        return 0, 1
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise UserError(f"--shard expects I/N (e.g. 0/4), got {text!r}")
    return int(index), int(count)


# ---------------------------------------------------------------- status, cost, running


def status(run: SweepRun) -> str:
    """done: the folder holds a summary of this very configuration; partial: predictions without a summary."""
    from .vocabulary import CONFIG, PREDICTIONS, SUMMARY

    folder = Path(run.cfg.out)
    if (folder / SUMMARY).is_file() and (folder / CONFIG).is_file():
        stored = RunConfig.from_dict(json.loads((folder / CONFIG).read_text()))
        if stored.identity() == run.cfg.identity():
            return DONE
    return PARTIAL if (folder / PREDICTIONS).is_file() else TODO


@dataclass(frozen=True)
class Estimate:
    samples: int | None
    steps: int | None  # adaptation steps per sample; None when the method is unknown here
    note: str = ""

    @property
    def cost(self) -> int | None:
        """Sample-steps (a method without steps costs one forward per sample)."""
        if self.samples is None or self.steps is None:
            return None
        return self.samples * max(self.steps, 1)


def estimate(run: SweepRun) -> Estimate:
    """Samples of the stream x adaptation steps, from the data alone: no model is built."""
    from .engine import prepare
    from .methods import METHODS

    cfg, note, steps = run.cfg, "", None
    if cfg.method not in METHODS:
        note, cfg = f"unknown method {cfg.method!r} in this checkout", dataclasses.replace(cfg, method="source")
    try:
        p = prepare(cfg)
    except (UserError, UnknownNameError) as exc:
        return Estimate(None, steps, "; ".join(filter(None, [note, str(exc).splitlines()[0]])))
    try:  # the options the engine would build (suite defaults and presets included), without a model
        steps = int(getattr(METHODS.get(cfg.method).parse_options(p.defaults.options), "steps", 0))
    except UserError as exc:
        note = str(exc)
    return Estimate(len(p.stream.items), steps, note)


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def plan_text(runs: list[SweepRun], total: int) -> str:
    """The --dry-run listing: one line per run with its status and cost, then the totals."""
    from tabulate import tabulate

    rows, costs = [], []
    for run in runs:
        e = estimate(run)
        costs.append(e.cost)
        cell = ", ".join(f"{k}={v}" for k, v in run.cell.items())
        rows.append([run.index, status(run), cell, _count(e.samples), _count(e.steps), _count(e.cost),
                     Path(run.cfg.out).name, e.note])
    headers = ["#", "status", "cell", "samples", "steps", "sample-steps", "folder", "note"]
    done = sum(row[1] == DONE for row in rows)
    known = [c for c in costs if c is not None]
    todo = sum(c for c, row in zip(costs, rows) if c is not None and row[1] != DONE)
    lines = [tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True),
             f"{len(runs)} of {total} runs in this shard, {done} finished; sample-steps to run: {todo:,}"
             + ("" if len(known) == len(costs) else f" (+ {len(costs) - len(known)} run(s) of unknown cost)")]
    if runs:
        lines.append(f"sweep folder: {Path(runs[0].cfg.out).parent}")
    return "\n".join(lines)


@dataclass
class SweepResult:
    summaries: list[dict[str, Any]]  # finished runs (reused or just run), in grid order
    failures: list[tuple[SweepRun, str]]  # user-level errors (missing data, unknown method): the rest still ran
    ran: int = 0
    reused: int = 0


def run_sweep(runs: list[SweepRun], progress: bool = True, log: Callable[[str], None] = print) -> SweepResult:
    """Run every unfinished run in order; a finished one is read back without calling the engine.

    A run that fails with a user error (no data, unknown method) is recorded and the sweep goes on, so that one
    bad cell does not waste a job array."""
    from . import engine
    from .vocabulary import SUMMARY

    result = SweepResult([], [])
    for k, run in enumerate(runs, 1):
        name = Path(run.cfg.out).name
        if status(run) == DONE:
            result.summaries.append(json.loads((Path(run.cfg.out) / SUMMARY).read_text()))
            result.reused += 1
            log(f"[{k}/{len(runs)}] {name}: finished, skipped")
            continue
        log(f"[{k}/{len(runs)}] {name}: running")
        try:
            summary = engine.run(run.cfg, progress=progress, log=log)
        except (UserError, UnknownNameError) as exc:
            result.failures.append((run, str(exc)))
            log(f"[{k}/{len(runs)}] {name}: failed: {exc}")
            continue
        result.ran += 1
        if summary:  # a non-zero torchrun rank returns {}
            result.summaries.append(summary)
    return result


def failures_text(result: SweepResult) -> str:
    lines = [f"{len(result.failures)} run(s) failed:"]
    lines += [f"  #{run.index} {Path(run.cfg.out).name}: {message.splitlines()[0]}" for run, message in result.failures]
    return "\n".join(lines)


# ---------------------------------------------------------------- paper tables


def published_rows(sweep: Sweep, published: pd.DataFrame) -> pd.DataFrame:
    """The published rows the sweep compares with (its (method, backbone) pairs); all of them if it names none."""
    if not sweep.published:
        return published
    pairs = {(p.method, p.backbone) for p in sweep.published}
    keep = [(m, b) in pairs for m, b in zip(published["method"], published["backbone"])]
    return published[keep]


def delta_table(sweep: Sweep, summaries: list[dict], published: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """Measured - published, in points, for every measured row the sweep maps to a published row and every split
    both give (the row mean included). Rows: '<measured row> vs <method> (<backbone>) [<source>]'."""
    from .report.runs import group_runs
    from .report.splits import split_key, split_value
    from .report.tables import _with_means, replicate_values

    cells: dict[str, dict[str, float]] = {}
    for group in group_runs(summaries):
        config = group.runs[0].get("config") or {}
        used = (group.runs[0].get("prompts") or {}).get("spec")  # the prompts the run used (its method's by default)
        mapped = next((p for p in sweep.published if _matches({**config, "prompts": used or config.get("prompts")},
                                                               p.match)), None)
        replicates = [_with_means(r) for r in replicate_values(group, metric)]
        if mapped is None or not replicates:
            continue
        suites = {run["suite"] for run in group.runs}
        rows = published[(published["method"] == mapped.method) & (published["backbone"] == mapped.backbone)
                         & published["suite"].isin(suites)]
        for record in rows.sort_values(list(rows.columns)).itertuples(index=False):
            theirs = split_value({record.metric: record.value}, metric)
            ours = [r[record.split] for r in replicates if record.split in r]
            if theirs is None or not ours:
                continue
            label = f"{group.label} vs {record.method} ({record.backbone}) [{record.source}]"
            cells.setdefault(label, {})[record.split] = statistics.fmean(ours) - theirs
    columns = sorted({split for row in cells.values() for split in row}, key=split_key)
    frame = pd.DataFrame([[f"{row[c]:+.1f}" if c in row else "" for c in columns] for row in cells.values()],
                         index=pd.Index(list(cells), name="measured vs published"), columns=columns, dtype="str")
    return frame.sort_index()


def reproduction_text(sweep: Sweep, summaries: list[dict], published: pd.DataFrame, metric: str = "top1") -> str:
    """The paper table: measured rows with the published rows beneath, then the differences."""
    from .report.tables import build_tables, render, render_tables

    if not summaries:
        return "no finished runs to tabulate"
    tables = build_tables(summaries, metric, published_rows(sweep, published))
    text = render_tables(tables, "md", metric)
    delta = delta_table(sweep, summaries, published, metric)
    if delta.empty:
        return text + f"\n## {DELTA_TITLE}\n\nno measured row has a published counterpart yet\n"
    return text + f"\n## {DELTA_TITLE} (measured - published, {metric} points)\n\n" + render(delta, "md")


# ---------------------------------------------------------------- the two commands


def parse_sets(items: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE (VALUE read as YAML: 5, [5], {steps: 25}, cuda) -> {key: value}."""
    return parse_key_values(items, "--set", yaml.safe_load)


def sweep_command(path: str, dry_run: bool = False, shard_text: str | None = None, out: str | None = None,
                  sets: list[str] | None = None, progress: bool = True) -> int:
    """`run_bench.py sweep`: list (dry run) or run this shard of the grid; 1 when a run failed."""
    runs = expand(load_sweep(path), out, parse_sets(sets or []))
    mine = shard(runs, *parse_shard(shard_text))
    if dry_run:
        print(plan_text(mine, len(runs)))
        return 0
    result = run_sweep(mine, progress)
    print(f"sweep: {result.ran} run(s) run, {result.reused} reused, {len(result.failures)} failed "
          f"({len(mine)} of {len(runs)} in this shard)")
    if result.failures:
        print(failures_text(result))
    return 1 if result.failures else 0


def reproduce_command(table: str, data_root: str | None = None, limit: int | None = None, dry_run: bool = False,
                      out: str | None = None, sets: list[str] | None = None, progress: bool = True,
                      published_path: str | None = None) -> int:
    """`run_bench.py reproduce TABLE`: run what the named sweep (or sweep file) still lacks, then print the paper
    table with the published rows and the differences; 1 when a run failed (the table shows the finished runs)."""
    from .report import load_published

    sweep = sweep_of(table)
    if data_root is not None:
        sweep = with_data_roots(sweep, roots_under(data_root, suites_of(sweep)))
    extra = parse_sets(sets or []) | ({} if limit is None else {"limit": limit})
    runs = expand(sweep, out, extra)
    if dry_run:
        print(plan_text(runs, len(runs)))
        return 0
    result = run_sweep(runs, progress)
    print(reproduction_text(sweep, result.summaries, load_published(published_path), sweep.metric))
    if result.failures:
        print(failures_text(result))
    return 1 if result.failures else 0
