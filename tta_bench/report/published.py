"""Published figures (results/published/published.csv): one tidy row per number, with its source.

Rows flagged verified=false (aggregator sites, unchecked re-implementations) are kept, never hidden, so that a
table can show them marked as such."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from ..errors import ReportError

from ..package_data import project_path

COLUMNS = ("method", "backbone", "suite", "split", "metric", "value", "source", "verified", "note")
REQUIRED = ("method", "backbone", "suite", "split", "metric", "value", "source", "verified")
KEY = ("method", "backbone", "suite", "split", "metric", "source")
DEFAULT_PATH = project_path("results/published") / "published.csv"  # checkout, or the installed copy
_BOOLEANS = {"true": True, "false": False}


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """The published table with validated columns, float values and boolean `verified`."""
    path = Path(path) if path is not None else DEFAULT_PATH
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(frame.columns) != COLUMNS:
        raise ReportError(f"{path}: columns {list(frame.columns)}, expected {list(COLUMNS)}")
    empty = [f"{column} (line {i + 2})" for column in REQUIRED for i in frame.index[frame[column].str.strip() == ""]]
    if empty:
        raise ReportError(f"{path}: empty fields: {', '.join(empty)}")
    values = pd.to_numeric(frame["value"], errors="coerce")
    verified = frame["verified"].str.lower().map(_BOOLEANS)
    bad = [f"line {i + 2}" for i in frame.index[values.isna() | verified.isna()]]
    if bad:
        raise ReportError(f"{path}: value must be a number and verified true/false: {', '.join(bad)}")
    duplicated = frame.duplicated(list(KEY), keep=False)
    if duplicated.any():
        raise ReportError(f"{path}: the same number twice: lines {[i + 2 for i in frame.index[duplicated]]}")
    return frame.assign(value=values.astype(float), verified=verified.astype(bool))
