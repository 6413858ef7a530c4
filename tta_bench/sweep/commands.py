"""The `sweep` and `reproduce` commands."""
from __future__ import annotations

from typing import Any

from ..config import parse_key_values
from ..runconfig_file import load_yaml
from .execute import failures_text, run_sweep
from .grid import expand, load_sweep, parse_shard, roots_under, shard, suites_of, sweep_of, with_data_roots
from .paper import reproduction_text
from .status import plan_text


def parse_sets(items: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE (VALUE read as YAML: 5, [5], {steps: 25}, cuda) -> {key: value}."""
    return parse_key_values(items, "--set", lambda value: load_yaml(value, "--set"))


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
    from ..report import load_published

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
