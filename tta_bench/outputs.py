"""Output-only options: ``--save-logits`` and ``--record-steps`` change what a run folder holds, not what the run
predicts, so they are not part of its identity (vocabulary.NOT_IDENTITY) and share its folder.

Adding one to a finished run computes only what is missing, in the same folder: the engine treats the samples whose
records lack an asked output as not done, so a per-sample method reruns just those samples and an online method
replays the reset segments that hold them (its state at a sample depends on the whole segment before it). The new
records replace the old ones; a folder keeps every output it was ever asked for (``merged``), so a later rerun
without the flag neither drops nor recomputes them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .config import RunConfig
from .vocabulary import CONFIG, LOGITS, record_key

STEPS_ASKED = "steps_asked"  # record key: the --record-steps a record was computed with


def stored_config(folder: Path) -> RunConfig | None:
    """The configuration a run folder was last run with; None for a new or unreadable folder."""
    try:
        return RunConfig.from_dict(json.loads((folder / CONFIG).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def merged(stored: RunConfig | None, asked: RunConfig) -> RunConfig:
    """``asked`` with the outputs the folder already holds added: logits once saved stay saved, recorded steps
    accumulate. A folder of another configuration contributes nothing (the run folder refuses or replaces it)."""
    if stored is None or stored.identity() != asked.identity():
        return asked
    steps = sorted(set(stored.record_steps or ()) | set(asked.record_steps or ())) or None
    return dataclasses.replace(asked, save_logits=stored.save_logits or asked.save_logits, record_steps=steps)


def mark(record: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    """Note on a fresh record the steps it was asked to record: a method records only the steps it reaches (80 of
    asked 0,100 for 80-step APM) and others none at all, so the steps present cannot say what was asked."""
    if cfg.record_steps:
        record[STEPS_ASKED] = sorted(cfg.record_steps)
    return record


def saved_logit_ids(folder: Path) -> set[tuple[str, str, int]]:
    """Record keys (split, id, visit) of every prediction whose logits sit in the folder's per-split arrays (a
    finished run's)."""
    out: set[tuple[str, str, int]] = set()
    for path in (folder / LOGITS).glob("*.npz"):
        with np.load(path, allow_pickle=False) as arrays:
            visits = arrays["visits"] if "visits" in arrays.files else np.zeros(len(arrays["ids"]), dtype=np.int64)
            out.update((path.stem, str(i), int(v)) for i, v in zip(arrays["ids"], visits))
    return out


def lacking(records: Iterable[dict[str, Any]], cfg: RunConfig,
            with_logits: set[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
    """Record keys of the records that lack an output ``cfg`` asks for. Unreadable samples (status error) have no
    output to add."""
    want_steps = set(cfg.record_steps or ())
    out = set()
    for r in records:
        if r.get("status") == "error":
            continue
        key = record_key(r)
        if cfg.save_logits and "logits_row" not in r and key not in with_logits:
            out.add(key)
        if want_steps:
            asked = r.get(STEPS_ASKED, [int(s) for s in r.get("steps") or {}])
            if not want_steps <= set(asked):
                out.add(key)
    return out
