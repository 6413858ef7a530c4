"""Load run folders (summary.json only) and group runs into table rows.

A row is one configuration: runs that differ only by seed become replicates of one row, and runs of the
ImageNet-family suites with the same configuration share a row across their columns."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..vocabulary import DEFAULT_SETTING, METRICS, NOT_IDENTITY, RUN_FILES, SUMMARY
from .splits import table_of
from ..errors import ReportError

Warn = Callable[[str], None]  # receives one line per entry skipped

# Any of these marks a folder as a run folder (so a run without summary.json is reported, not skipped).
REQUIRED = {"suite": str, "method": str, "splits": dict}
# Config entries that do not change a result: runs differing only in these are replicates of one row.
# (the suite, so that ImageNet-family suites share a row; the data root, told apart in the label only where two runs
# of one row would give the same split: see _by_data)
IGNORED_CONFIG_KEYS = NOT_IDENTITY | {"seed", "suite", "data_root"}


class RunFolderError(ReportError):
    """A run folder that cannot be read; the message names the folder or file."""


def summary_problems(summary: object) -> list[str]:
    if not isinstance(summary, dict):
        return [f"expected a JSON object, got {type(summary).__name__}"]
    problems = [f"'{key}' missing or not a {kind.__name__}"
                for key, kind in REQUIRED.items() if not isinstance(summary.get(key), kind)]
    if isinstance(summary.get("splits"), dict):
        problems += [f"split '{name}' is not an object"
                     for name, value in summary["splits"].items() if not isinstance(value, dict)]
    return problems


def load_summary(run_dir: str | Path) -> dict:
    """summary.json of one run folder, checked for the keys the report needs."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: no {SUMMARY} (unfinished run, or not a run folder)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunFolderError(f"{path}: malformed JSON ({error})") from error
    problems = summary_problems(summary)
    if problems:
        raise RunFolderError(f"{path}: malformed summary: {'; '.join(problems)}")
    extra = Path(run_dir) / METRICS  # written by `metrics`: ECE, NLL, ... recomputed from saved logits
    if extra.is_file():
        for split, values in json.loads(extra.read_text(encoding="utf-8"))["splits"].items():
            if split in summary["splits"]:
                summary["splits"][split] = {**values, **summary["splits"][split]}
    return summary


def _is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in RUN_FILES)


def find_run_dirs(path: str | Path) -> list[Path]:
    """`path` itself when it is a run folder, else every run folder below it (sorted)."""
    root = Path(path)
    if not root.is_dir():
        raise RunFolderError(f"{root}: not a folder")
    if _is_run_dir(root):
        return [root]
    found = []
    for current, dirs, _files in os.walk(root):
        here = Path(current)
        if here != root and _is_run_dir(here):
            found.append(here)
            dirs.clear()  # a run folder's subfolders are its own business
        dirs.sort()
    if not found:
        raise RunFolderError(f"{root}: no {SUMMARY} and no run folders below it")
    return sorted(found)


def load_run_folders(paths: Iterable[str | Path], warn: Warn | None = None) -> list[tuple[Path, dict]]:
    """(folder, summary) of all run folders named by `paths` (run folders or folders holding them), each once.

    Without `warn` any entry that is not a finished run folder raises RunFolderError. With it, such entries (a run
    that failed at set-up and has no summary, a file such as a seeds aggregate, a folder holding no runs, a malformed
    summary) are reported through `warn`, one line each, and skipped: `table results/runs/*` survives a real folder."""
    seen: dict[Path, Path] = {}
    for path in paths:
        try:
            found = find_run_dirs(path)
        except RunFolderError as error:
            if warn is None:
                raise
            warn(f"skipped {path}: {_reason(error, path)}")
            continue
        for run_dir in found:
            seen.setdefault(run_dir.resolve(), run_dir)
    loaded = []
    for run_dir in seen.values():
        try:
            loaded.append((run_dir, load_summary(run_dir)))
        except RunFolderError as error:
            if warn is None:
                raise
            warn(f"skipped {run_dir}: {_reason(error, run_dir)}")
    if not loaded:
        raise RunFolderError("no finished run folders given" + (" (every entry was skipped)" if seen or warn else ""))
    return loaded


def _reason(error: RunFolderError, path: str | Path) -> str:
    """The error without the path the warning already names ('summary.json: malformed JSON', 'not a folder')."""
    text = str(error)
    return text[len(str(path)):].lstrip("/:").lstrip() if text.startswith(str(path)) else text


def load_runs(paths: Iterable[str | Path], warn: Warn | None = None) -> list[dict]:
    """Summaries of all run folders named by `paths`; `warn`: skip what is not a finished run (load_run_folders)."""
    return [summary for _, summary in load_run_folders(paths, warn)]


def _source_marker(summary: dict) -> str | None:
    """Where the data came from when it is not the published copy: a Hub copy, or corruptions generated from a
    clean set, with that set's size unless it is the whole clean suite (a 20-image run is not the 500-photo one)."""
    data = summary.get("data") or {}
    if summary.get("source") == "hub":
        return "hub"
    if summary.get("source") != "generated" and not data.get("generated"):
        return None
    made_from = data.get("generated_from") or {}
    if made_from.get("images") and not made_from.get("complete"):
        return f"generated from {made_from['images']} images"
    return "generated"


def run_markers(summary: dict) -> dict[str, str]:
    """What makes a run's number not the standard one, by kind: its data source, subset, partial data, setting,
    one-batch segments, domains shorter than published, APM preset, skipped images."""
    data = summary.get("data") or {}
    setting = (summary.get("setting") or {}).get("name")
    markers = {
        "source": _source_marker(summary),
        "subset": data.get("subset") if data.get("subset") not in (None, "full") else None,
        "partial": "partial" if data.get("partial") else None,
        "setting": setting if setting not in (None, DEFAULT_SETTING) else None,
        "segments": "one-batch segments" if any(n.startswith("one-batch segments") for n in summary.get("notes") or [])
        else None,
        "short": short_domains(summary),
        "preset": f"{preset} preset" if (preset := (summary.get("method_options") or {}).get("preset")) else None,
        "skipped": f"{skipped} skipped" if (skipped := sum(s.get("skipped", 0) for s in summary["splits"].values()))
        else None,
    }
    return {kind: text for kind, text in markers.items() if text}


def run_label(summary: dict) -> str:
    """'method (teacher) [markers]': markers say what makes a number not the standard one."""
    label = summary["method"]
    if summary.get("teacher"):
        label += f" ({summary['teacher']})"
    markers = run_markers(summary)
    return label + (f" [{', '.join(markers.values())}]" if markers else "")


def short_domains(summary: dict) -> str | None:
    """'short domains: 2,000 of 10,000' for an online method whose domains are shorter than the suite's published
    length (summary.json's setting records both): it adapted over fewer batches than the published protocol gives."""
    setting = summary.get("setting") or {}
    lengths, published = setting.get("domain_lengths"), setting.get("published_length")
    if (summary.get("method_options") or {}).get("reset") != "online" or not lengths or not published:
        return None
    shortest = min(lengths.values())
    return f"short domains: {shortest:,} of {published:,}" if shortest < published else None


def _identity(summary: dict) -> dict:
    """What must be equal for two runs to be replicates: the config without seed and bookkeeping (the source as
    resolved: None and the suite's default source are the same data)."""
    config = summary.get("config")
    if isinstance(config, dict):
        identity = {key: value for key, value in config.items() if key not in IGNORED_CONFIG_KEYS}
        return identity | ({"source": summary["source"]} if summary.get("source") else {})
    setting = {k: v for k, v in (summary.get("setting") or {}).items() if k != "stream_hash"}
    return {key: summary.get(key) for key in ("method", "teacher", "source", "data", "method_options")} | {
        "setting": setting}


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    """Nested configuration -> {'method_options.lr': 0.001, ...}; an empty mapping is no entry (the defaults)."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: value}


# How configuration fields read in a row label ("batch 64", "lr 0.001"); a field not named here reads as its name
# with spaces; an unset one as "<name> default" unless named in _UNSET_WORDS.
_FIELD_WORDS = {"batch_size": "batch", "data_root": "data", "num_workers": "workers", "hub_id": "hub",
                "method_options": "options"}
_UNSET_WORDS = {"corruptions": "all corruptions", "severities": "default severities"}


def batch_size(summary: dict) -> int | None:
    """The batch size the run used: as given, else its method's suite default (recorded as applied); None where the
    summary does not say (the engine's default)."""
    given = (summary.get("config") or {}).get("batch_size")
    applied = ((summary.get("defaults") or {}).get("applied") or {}).get("batch_size")
    return given or applied


def _effective(summary: dict, key: str, value: object) -> object:
    """A configuration entry as the run used it: the batch size and method options after the suite defaults."""
    if key == "batch_size":
        return batch_size(summary) or value
    if key.startswith("method_options."):
        return (summary.get("method_options") or {}).get(key.split(".", 1)[1], value)
    return value


def _words(key: str, value: object) -> str:
    """One configuration entry in words: 'batch 64', 'lr 0.001', 'corruptions fog, contrast', 'steps default'."""
    name = _FIELD_WORDS.get(key, key.split(".", 1)[1] if key.startswith("method_options.") else key)
    name = name.replace("_", " ")
    if value is None:
        return _UNSET_WORDS.get(key, f"{name} default")
    if isinstance(value, bool):
        return name if value else f"no {name}"
    if isinstance(value, (list, tuple)):
        return f"{name} {', '.join(map(str, value))}"
    if isinstance(value, dict):
        return f"{name} " + ", ".join(f"{k} {v}" for k, v in sorted(value.items()))
    return f"{name} {value}"


def config_words(summary: dict, identity: dict, keys: list[str] | None = None) -> dict[str, str]:
    """Configuration entries of a row (``keys``, default all) in words, as the run used them."""
    flat = _flatten(identity)
    return {key: _words(key, _effective(summary, key, flat.get(key))) for key in (flat if keys is None else keys)}


@dataclass
class RunGroup:
    """One table row: runs with the same configuration, one replicate (split -> split dict) per seed."""
    table: str
    label: str
    identity: dict
    replicates: list[dict[str, dict]]
    runs: list[dict]


def _seed_key(summary: dict) -> str:
    return json.dumps(summary.get("seed"))


def _make_group(table: str, label: str, runs: list[dict]) -> RunGroup:
    runs = sorted(runs, key=lambda s: (_seed_key(s), str(s.get("run_name"))))
    by_seed: dict[str, dict[str, dict]] = {}
    owner: dict[tuple[str, str], str] = {}
    for summary in runs:
        seed = _seed_key(summary)
        for split, values in summary["splits"].items():
            if (seed, split) in owner:
                raise ReportError(f"runs {owner[seed, split]} and {summary.get('run_name')} both give split "
                                 f"'{split}' for the same configuration and seed {seed}; pass one of them")
            owner[seed, split] = str(summary.get("run_name"))
            by_seed.setdefault(seed, {})[split] = values
    return RunGroup(table, label, _identity(runs[0]), list(by_seed.values()), runs)


def _disambiguate(groups: list[RunGroup]) -> None:
    """Rows of one table with equal labels get, in words, the configuration entries that tell them apart
    ('bn_adapt (resnet20), batch 64'); where even those read alike, the run folder's name."""
    clashes: dict[tuple[str, str], list[RunGroup]] = {}
    for group in groups:
        clashes.setdefault((group.table, group.label), []).append(group)
    for same in clashes.values():
        if len(same) < 2:
            continue
        flat = [_flatten(group.identity) for group in same]  # an absent entry is an unset one (None)
        keys = sorted({key for f in flat for key in f
                       if len({json.dumps(g.get(key), sort_keys=True, default=str) for g in flat}) > 1})
        texts = [", ".join(config_words(group.runs[0], group.identity, keys).values()) for group in same]
        for group, text in zip(same, texts):
            if texts.count(text) > 1:
                text = ", ".join(filter(None, [text, f"run {group.runs[0].get('run_name')}"]))
            group.label += f", {text}"


# Configuration entries a legend never spells out: the method leads it, the rest are run_markers or the teacher.
_IN_MARKERS = {"method", "teacher", "limit", "subset", "source", "setting", "method_options.preset"}


def legend_labels(groups: list[RunGroup]) -> tuple[list[str], list[str]]:
    """Per row, its method and, in words, only what tells it from the other rows of that method shown with it
    ('bn_adapt, batch 64'); and what all rows share (teacher, data markers), for the figure's title."""
    keys = sorted({key for group in groups for key in _flatten(group.identity) if key not in _IN_MARKERS})
    described = [{"teacher": f"teacher {group.runs[0]['teacher']}" if group.runs[0].get("teacher") else "",
                  **run_markers(group.runs[0]),
                  **config_words(group.runs[0], group.identity, keys)} for group in groups]
    methods = [str(group.runs[0].get("method")) for group in groups]
    labels = []
    for method, d in zip(methods, described):
        same = [other for m, other in zip(methods, described) if m == method]
        differ = [kind for kind in d if len({other.get(kind, "") for other in same}) > 1]
        labels.append(", ".join([method, *(d[kind] for kind in differ if d.get(kind))]))
    labels = [label if labels.count(label) == 1 else f"{label} ({k + 1})" for k, label in enumerate(labels)]
    kinds = [kind for kind in described[0] if kind not in keys] if described else []
    shared = [described[0][kind] for kind in kinds if all(d.get(kind) == described[0][kind] for d in described)]
    return labels, shared


def data_root(summary: dict) -> str | None:
    """The run's data folder (absolute where the summary records it)."""
    return (summary.get("data") or {}).get("root") or (summary.get("config") or {}).get("data_root")


def _by_data(runs: list[dict]) -> list[list[dict]]:
    """One row's runs, split by data root where two of them give the same split for the same seed (the same
    configuration run on two copies of a dataset): each copy becomes a row of its own, its root in the label."""
    owners: set[tuple[str, str]] = set()
    for summary in runs:
        keys = {(_seed_key(summary), split) for split in summary["splits"]}
        if keys & owners:
            by_root: dict[str, list[dict]] = {}
            for run in runs:
                by_root.setdefault(str(data_root(run)), []).append(run)
            return [by_root[root] for root in sorted(by_root)]
        owners |= keys
    return [runs]


def group_runs(summaries: Iterable[dict]) -> list[RunGroup]:
    """Rows of every table, sorted by (table, label) whatever the input order."""
    buckets: dict[tuple[str, str, str], list[dict]] = {}
    for summary in summaries:
        table = table_of(summary["suite"], summary["splits"])
        identity = json.dumps(_identity(summary), sort_keys=True, default=str)
        buckets.setdefault((table, run_label(summary), identity), []).append(summary)
    groups = []
    for (table, label, _), runs in sorted(buckets.items()):
        parts = _by_data(runs)
        for part in parts:
            group = _make_group(table, label, part)
            if len(parts) > 1:
                group.identity = group.identity | {"data_root": data_root(part[0])}
            groups.append(group)
    _disambiguate(groups)
    return sorted(groups, key=lambda group: (group.table, group.label))
