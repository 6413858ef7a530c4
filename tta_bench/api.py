"""The Python API: run a configuration and get its summary; read finished runs back as tables.

    from tta_bench import RunConfig, run, load_runs, table

    summary = run(RunConfig(suite="demo", method="tent", corruptions=["fog"]), progress=False)
    print(summary["mean_top1"], summary["splits"]["fog-5"]["top1"])
    print(table(load_runs("results/runs")))

A run is the command line's run: the same folder, resume and reuse (a finished run returns its summary at once).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union

from .config import RunConfig
from .runconfig_file import check_fields, layer, read_run_file

Runs = Union[str, Path, Mapping[str, Any], Iterable[Union[str, Path, Mapping[str, Any]]]]


def as_config(config: RunConfig | Mapping[str, Any] | str | Path | None = None, **fields: Any) -> RunConfig:
    """A RunConfig from a RunConfig, a mapping of its fields, a run file (YAML, or a run folder / its config.json),
    with ``fields`` on top (method_options merge key by key), every key checked and every value converted as the
    command line converts it (``seed="1"`` -> 1, ``corruptions="fog,contrast"`` -> two corruptions)."""
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, RunConfig):
        base = config.to_dict()
    elif isinstance(config, Mapping):
        check_fields(config, "the mapping", "tta_bench.run")
        base = dict(config)
    elif isinstance(config, (str, Path)):
        base = read_run_file(config)
    else:
        raise TypeError(f"config must be a RunConfig, a mapping, a file path or None, not {type(config).__name__}")
    check_fields(fields, "the keyword arguments", "tta_bench.run")
    return RunConfig.build(layer(base, fields), "tta_bench.run")


def run(config: RunConfig | Mapping[str, Any] | str | Path | None = None, /, *, progress: bool = True,
        log: Callable[[str], None] = print, **fields: Any) -> dict[str, Any]:
    """Run (or resume, or reuse) one configuration and return its summary: the content of summary.json (accuracy
    per split, means, configuration, provenance, cost). Under torchrun, ranks other than 0 return {}. A bad value
    raises UserError before anything is written."""
    from . import engine
    from .preflight import preflight

    cfg = as_config(config, **fields)
    preflight(cfg, names="fields")
    return engine.run(cfg, progress=progress, log=log)


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def load_runs(*paths: str | Path, strict: bool = False) -> list[dict[str, Any]]:
    """Summaries of the run folders under ``paths`` (run folders or folders holding them). Entries that are not
    finished runs are skipped with one warning line each; ``strict=True`` raises instead."""
    from .report.runs import load_runs as load

    return load(paths, None if strict else _warn)


def _summaries(runs: Runs) -> list[dict[str, Any]]:
    items = [runs] if isinstance(runs, (str, Path, Mapping)) else list(runs)
    summaries = [item for item in items if isinstance(item, Mapping)]
    paths = [item for item in items if not isinstance(item, Mapping)]
    return [dict(s) for s in summaries] + (load_runs(*paths) if paths else [])


def tables(runs: Runs, *, metric: str = "top1", published: bool = False) -> dict[str, Any]:
    """One pandas DataFrame per suite (rows: configurations, columns: splits and means), from summaries (what
    ``run`` and ``load_runs`` return) or run folders."""
    from .report import build_tables, load_published

    return build_tables(_summaries(runs), metric, load_published() if published else None)


def table(runs: Runs, *, metric: str = "top1", fmt: str = "md", published: bool = False) -> str:
    """The text ``run_bench.py table`` prints: Markdown, CSV or LaTeX (with captions) of the runs."""
    from .report import captions, render_tables

    summaries = _summaries(runs)
    built = tables(summaries, metric=metric, published=published)
    if not built:
        raise ValueError(f"no run has metric {metric!r}")
    return render_tables(built, fmt, metric, captions(summaries, metric))
