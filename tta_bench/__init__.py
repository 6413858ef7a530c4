"""tta_bench: test-time adaptation and training under distribution shift, measured the same way for every method.

The Python API (api.py) is importable from here: ``from tta_bench import run, RunConfig, load_runs, table``.
Its names load on first use, so ``import tta_bench`` (and the command line's ``--help`` and ``list``) stays free of
torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["RunConfig", "as_config", "load_runs", "run", "table", "tables"]


def __getattr__(name: str) -> Any:
    if name == "RunConfig":
        from .config import RunConfig

        return RunConfig
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'tta_bench' has no attribute {name!r}")
