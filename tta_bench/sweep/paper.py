"""A paper table regenerated: measured rows beside the published rows the sweep maps them to, and the differences.

Published means of one stream setting are stored as the split ``mean-<setting>`` (the unified benchmark's tables give
one number per method and setting); they are compared with the ``mean`` of the measured runs of that setting. Where
a sweep runs several settings, the methods' ordering measured here is set beside the published ordering per setting,
with Spearman's rank correlation between the two (``ranking_text``).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import pandas as pd

from .grid import Sweep, matches

DELTA_TITLE = "Δ vs published"
RANKING_TITLE = "Ordering of the methods vs published"
MEAN = "mean"


def setting_split(setting: str | None) -> str:
    """The published split holding a setting's mean: 'mean-continual'."""
    return f"{MEAN}-{setting}"


def _mapped(sweep: Sweep, config: dict, used_prompts: str | None):
    return next((p for p in sweep.published if matches({**config, "prompts": used_prompts or config.get("prompts")},
                                                       p.match)), None)


def published_rows(sweep: Sweep, published: pd.DataFrame) -> pd.DataFrame:
    """The published rows the sweep compares with (its (method, backbone) pairs); all of them if it names none."""
    if not sweep.published:
        return published
    keep = [any(_published_by(p, m, b, source) for p in sweep.published)
            for m, b, source in zip(published["method"], published["backbone"], published["source"])]
    return published[keep]


def _published_by(mapped, method: str, backbone: str, source: str) -> bool:
    """Whether a published row (method, backbone, source) is one the sweep's entry ``mapped`` names."""
    return (mapped.method, mapped.backbone) == (method, backbone) and (mapped.source or "") in source


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
        mapped = _mapped(sweep, config, used)
        replicates = [_with_means(r) for r in replicate_values(group, metric)]
        if mapped is None or not replicates:
            continue
        suites = {run["suite"] for run in group.runs}
        rows = published[(published["method"] == mapped.method) & (published["backbone"] == mapped.backbone)
                         & published["suite"].isin(suites) & published["source"].str.contains(mapped.source or "",
                                                                                               regex=False)]
        for record in rows.sort_values(list(rows.columns)).itertuples(index=False):
            theirs = split_value({record.metric: record.value}, metric)
            split = MEAN if record.split == setting_split(config.get("setting")) else record.split
            ours = [r[split] for r in replicates if split in r]
            if theirs is None or not ours:
                continue
            label = f"{group.label} vs {record.method} ({record.backbone}) [{record.source}]"
            cells.setdefault(label, {})[split] = statistics.fmean(ours) - theirs
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
    ranking = ranking_text(sweep, summaries, published, metric)
    text += f"\n## {RANKING_TITLE}\n\n{ranking}" if ranking else ""
    delta = delta_table(sweep, summaries, published, metric)
    if delta.empty:
        return text + f"\n## {DELTA_TITLE}\n\nno measured row has a published counterpart yet\n"
    return text + f"\n## {DELTA_TITLE} (measured - published, {metric} points)\n\n" + render(delta, "md")


@dataclass(frozen=True)
class Ranked:
    """One method of one setting: its measured values (one per seed) and the published value it maps to."""

    ours: list[float]
    theirs: float | None
    published_as: str  # '<method> (<backbone>)', '' when no published row maps


def ranking_cells(sweep: Sweep, summaries: list[dict], published: pd.DataFrame,
                  metric: str = "error") -> dict[str, dict[str, dict[str, Ranked]]]:
    """teacher -> setting -> method -> Ranked: each run's mean over its splits (per seed), beside the published
    ``mean-<setting>`` row the sweep maps the run to."""
    from ..report.splits import is_aggregate, split_value

    values: dict[tuple[str, str, str], list[float]] = {}
    theirs: dict[tuple[str, str, str], tuple[float, str]] = {}
    for summary in summaries:
        config = summary.get("config") or {}
        setting = (summary.get("setting") or {}).get("name") or config.get("setting")
        key = (str(summary.get("teacher")), str(setting), summary["method"])
        per_split = [v for split, entry in summary["splits"].items()
                     if not is_aggregate(split) and (v := split_value(entry, metric)) is not None]
        if per_split:
            values.setdefault(key, []).append(statistics.fmean(per_split))
        mapped = _mapped(sweep, config, (summary.get("prompts") or {}).get("spec"))
        if mapped is None or key in theirs:
            continue
        rows = published[(published["method"] == mapped.method) & (published["backbone"] == mapped.backbone)
                         & (published["suite"] == summary["suite"]) & (published["split"] == setting_split(setting))
                         & published["source"].str.contains(mapped.source or "", regex=False)]
        for record in rows.sort_values(list(rows.columns)).itertuples(index=False):
            if (value := split_value({record.metric: record.value}, metric)) is not None:
                theirs[key] = (value, f"{record.method} ({record.backbone})")
                break
    out: dict[str, dict[str, dict[str, Ranked]]] = {}
    for (teacher, setting, method), ours in values.items():
        value, name = theirs.get((teacher, setting, method), (None, ""))
        out.setdefault(teacher, {}).setdefault(setting, {})[method] = Ranked(ours, value, name)
    return out


def spearman(ours: list[float], theirs: list[float]) -> tuple[float, float]:
    """Spearman's rank correlation of two orderings (scipy.stats.spearmanr) and its p-value."""
    from scipy.stats import spearmanr

    result = spearmanr(ours, theirs)
    return float(result.statistic), float(result.pvalue)


def ranking_text(sweep: Sweep, summaries: list[dict], published: pd.DataFrame, metric: str = "error") -> str:
    """Per teacher, a table of the methods (rows) by setting: the measured mean (± std over seeds) and its rank
    beside the published value and its rank (1 = best), then per setting Spearman's rho over the methods that have
    both. Empty when no setting has two methods with published counterparts."""
    from ..report.tables import render

    lower_is_better = metric == "error"
    blocks = []
    for teacher, settings in sorted(ranking_cells(sweep, summaries, published, metric).items()):
        methods = list(dict.fromkeys(m for by_method in settings.values() for m in by_method))
        order = list(sweep.grid.get("method") or methods)
        methods = [m for m in order if m in methods] + [m for m in methods if m not in order]
        columns, cells, rhos = [], {m: [] for m in methods}, []
        for setting in [s for s in (sweep.grid.get("setting") or [sweep.base.get("setting")]) if s in settings]:
            by_method = settings[setting]
            both = [m for m in methods if m in by_method and by_method[m].theirs is not None]
            ours_rank = _ranks({m: statistics.fmean(by_method[m].ours) for m in both}, lower_is_better)
            theirs_rank = _ranks({m: by_method[m].theirs for m in both}, lower_is_better)
            columns += [f"{setting}: ours", f"{setting}: published"]
            for m in methods:
                entry = by_method.get(m)
                cells[m] += [_ours_cell(entry.ours, ours_rank.get(m)) if entry else "",
                             f"{entry.theirs:.1f} ({_rank(theirs_rank[m])})" if entry and m in theirs_rank else ""]
            constant = len(set(ours_rank[m] for m in both)) < 2 or len(set(theirs_rank[m] for m in both)) < 2
            if len(both) >= 2 and constant:
                rhos.append(f"{setting}: every method ties in one of the orderings; no rank correlation")
            elif len(both) >= 2:
                rho, p = spearman([ours_rank[m] for m in both], [theirs_rank[m] for m in both])
                rhos.append(f"{setting}: Spearman rho = {rho:+.2f} over {len(both)} methods (p = {p:.3f})")
            else:
                rhos.append(f"{setting}: fewer than two methods with a published value; no rank correlation")
        frame = pd.DataFrame([cells[m] for m in methods], index=pd.Index(methods, name="method"), columns=columns,
                             dtype="str")
        seeds = sorted({len(r.ours) for by_method in settings.values() for r in by_method.values()})
        blocks.append(f"### teacher {teacher} ({metric}, %; rank in parentheses, 1 = best; seeds per run: "
                      f"{', '.join(map(str, seeds))})\n\n" + render(frame, "md") + "\n"
                      + "\n".join(f"- {line}" for line in rhos) + "\n")
    return "\n".join(blocks)


def _ranks(values: dict[str, float], lower_is_better: bool) -> dict[str, float]:
    """1 = best; ties share their average rank (scipy.stats.rankdata)."""
    from scipy.stats import rankdata

    names = list(values)
    if not names:
        return {}
    ranks = rankdata([values[n] if lower_is_better else -values[n] for n in names])
    return {n: float(r) for n, r in zip(names, ranks)}


def _rank(rank: float) -> str:
    return f"{rank:g}"


def _ours_cell(values: list[float], rank: float | None) -> str:
    text = f"{statistics.fmean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")
    return text + (f" ({_rank(rank)})" if rank is not None else "")
