"""A paper table regenerated: measured rows beside the published rows the sweep maps them to, and the differences."""
from __future__ import annotations

import statistics

import pandas as pd

from .grid import Sweep, matches

DELTA_TITLE = "Δ vs published"


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
    from ..report.runs import group_runs
    from ..report.splits import split_key, split_value
    from ..report.tables import _with_means, replicate_values

    cells: dict[str, dict[str, float]] = {}
    for group in group_runs(summaries):
        config = group.runs[0].get("config") or {}
        used = (group.runs[0].get("prompts") or {}).get("spec")  # the prompts the run used (its method's by default)
        mapped = next((p for p in sweep.published if matches({**config, "prompts": used or config.get("prompts")},
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
    from ..report.tables import build_tables, render, render_tables

    if not summaries:
        return "no finished runs to tabulate"
    tables = build_tables(summaries, metric, published_rows(sweep, published))
    text = render_tables(tables, "md", metric)
    delta = delta_table(sweep, summaries, published, metric)
    if delta.empty:
        return text + f"\n## {DELTA_TITLE}\n\nno measured row has a published counterpart yet\n"
    return text + f"\n## {DELTA_TITLE} (measured - published, {metric} points)\n\n" + render(delta, "md")
