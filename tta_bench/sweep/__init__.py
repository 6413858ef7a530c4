"""Sweeps: a YAML grid of run configurations, run one folder per cell, resumable and shardable.

A sweep file names a ``base`` (RunConfig fields every run shares: a run file's schema, runconfig_file.py), a
``grid`` (lists whose product gives the runs), ``overrides`` (per-cell changes, e.g. tent -> batch 200) and ``exclude`` (cells to drop). Runs are listed in a
fixed order, so ``--shard I/N`` (or a SLURM job array) splits the grid with no coordination, and a rerun skips
the runs whose folder already holds a summary of the same configuration. Named sweeps in assets/sweeps/ are the
paper tables that ``reproduce`` regenerates, with a ``published`` section saying which published row each
measured row is compared with.

Modules by job: ``grid`` (reading and expanding a sweep file, shards), ``status`` (done / partial / todo and cost),
``execute`` (running the runs), ``paper`` (published rows and differences), ``commands`` (the two CLI commands).
"""
from __future__ import annotations

from .commands import parse_sets, reproduce_command, sweep_command
from .execute import SweepResult, failures_text, run_sweep
from .grid import (DEFAULTS, SWEEPS_DIR, Override, PublishedMatch, Sweep, SweepRun, expand, load_sweep, matches,
                   named_sweep, parse_shard, parse_sweep, roots_under, shard, suites_of, sweep_names, sweep_of,
                   with_data_roots)
from .paper import DELTA_TITLE, delta_table, published_rows, reproduction_text
from .status import DONE, PARTIAL, TODO, Estimate, estimate, plan_text, status

__all__ = ["DEFAULTS", "DELTA_TITLE", "DONE", "PARTIAL", "SWEEPS_DIR", "TODO", "Estimate", "Override",
           "PublishedMatch", "Sweep", "SweepResult", "SweepRun", "delta_table", "estimate", "expand",
           "failures_text", "load_sweep", "matches", "named_sweep", "parse_sets", "parse_shard", "parse_sweep",
           "plan_text", "published_rows", "reproduce_command", "reproduction_text", "roots_under", "run_sweep",
           "shard", "status", "suites_of", "sweep_command", "sweep_names", "sweep_of", "with_data_roots"]
