"""Test streams as TTA papers define them: the ordered samples of a run and where a method may reset.

From (splits, setting, seed) the stream is built deterministically. It is recorded in summary.json by its
setting and a hash of the ordered sample ids, so two runs can prove they saw the same stream.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .data.build import Split
from .errors import UserError

SETTINGS = {
    "reset_each_shift": "reset at the start of every domain (TENT's protocol); the default",
    "continual": "domains one after another, no reset, no signal of the change (CoTTA)",
    "gradual": "per corruption severities 1,2,3,4,5,4,3,2,1, no reset",
    "mixed_domains": "all domains' samples shuffled into one stream, no reset",
    "correlated": "reset_each_shift with class-correlated order (Dirichlet, --dirichlet DELTA)",
    "reset_each_shift_correlated": "same as correlated",
    "continual_correlated": "continual with class-correlated order within each domain",
    "gradual_correlated": "gradual with class-correlated order within each segment",
    "mixed_domains_correlated": "mixed_domains ordered by Dirichlet class proportions",
}
GRADUAL = (1, 2, 3, 4, 5, 4, 3, 2, 1)
MAX_SLOTS = 100  # RoTTA: one time slot per class, at most 100


@dataclass(frozen=True)
class Item:
    split: int  # index into the run's splits
    pos: int  # position in that split's source


@dataclass
class Stream:
    items: list[Item]
    resets: set[int]  # stream positions before which the method is reset
    setting: str
    params: dict = field(default_factory=dict)

    def hash(self, splits: list[Split]) -> str:
        h = hashlib.sha256()
        for it in self.items:
            h.update(f"{splits[it.split].name}|{splits[it.split].source.ids[it.pos]}\n".encode())
        return h.hexdigest()

    def batches(self, batch_size: int) -> list[list[int]]:
        """Consecutive stream positions, cut at every reset so that a reset always falls between batches."""
        out: list[list[int]] = []
        for i in range(len(self.items)):
            if not out or i in self.resets or len(out[-1]) == batch_size:
                out.append([])
            out[-1].append(i)
        return out


def required_severities(setting: str) -> list[int] | None:
    return [1, 2, 3, 4, 5] if setting.startswith("gradual") else None


def build_stream(splits: list[Split], setting: str, seed: int, dirichlet: float = 0.1) -> Stream:
    if setting not in SETTINGS:
        raise UserError(f"unknown setting {setting!r}; expected one of: {', '.join(SETTINGS)}")
    rng = np.random.default_rng(seed)
    correlated = setting.endswith("correlated")
    base = setting.removesuffix("_correlated").removesuffix("correlated") or "reset_each_shift"
    base = base.rstrip("_") or "reset_each_shift"

    def order(split_index: int, positions: list[int]) -> list[Item]:
        source = splits[split_index].source
        if correlated:
            positions = dirichlet_order([source.labels[p] for p in positions], positions, dirichlet, rng)
        elif not source.ordered:  # folder layouts enumerate class by class: shuffle (i.i.d.), never folder order
            positions = [positions[i] for i in rng.permutation(len(positions))]
        return [Item(split_index, p) for p in positions]

    segments: list[list[Item]] = []
    if base == "gradual":
        segments = _gradual_segments(splits, order)
    elif base == "mixed_domains":
        items = [Item(i, p) for i, s in enumerate(splits) for p in range(len(s.source))]
        if correlated:
            labels = [splits[it.split].source.labels[it.pos] for it in items]
            items = dirichlet_order(labels, items, dirichlet, rng)
        else:
            items = [items[i] for i in rng.permutation(len(items))]
        segments = [items]
    else:
        segments = [order(i, list(range(len(s.source)))) for i, s in enumerate(splits)]

    items, resets = [], set()
    for seg in segments:
        if base == "reset_each_shift" or not items:
            resets.add(len(items))
        items.extend(seg)
    params = {"dirichlet": dirichlet} if correlated else {}
    return Stream(items, resets, setting, params)


def _gradual_segments(splits: list[Split], order) -> list[list[Item]]:
    """Severities 1..5..1 per corruption; severities 1-4 appear twice, so their samples are halved between
    the way up and the way down: every sample is seen exactly once."""
    by_domain = {(s.corruption, s.severity): i for i, s in enumerate(splits)}
    corruptions = list(dict.fromkeys(s.corruption for s in splits))
    segments = []
    for c in corruptions:
        missing = [s for s in range(1, 6) if (c, s) not in by_domain]
        if missing:
            raise UserError(f"gradual needs severities 1-5 of {c}; missing {missing}")
        seen: dict[int, int] = {}
        for sev in GRADUAL:
            i = by_domain[(c, sev)]
            n = len(splits[i].source)
            half = n // 2 if sev < 5 else n
            first = seen.get(sev, 0)
            positions = list(range(first, n if first else half))
            seen[sev] = half
            segments.append(order(i, positions))
    return segments


def dirichlet_order(labels: list[int], items: list, delta: float, rng: np.random.Generator) -> list:
    """Class-correlated order (RoTTA's sampler, used by the unified TTA benchmark): each class's samples are
    cut into time slots by Dirichlet(delta) proportions, and each slot plays its class chunks in random order,
    every chunk kept together; smaller delta concentrates a class into fewer slots, giving longer runs of one
    class."""
    if delta <= 0:
        raise UserError(f"--dirichlet must be > 0, got {delta}")
    classes = sorted(set(labels))
    slots: list[list[list]] = [[] for _ in range(min(len(classes), MAX_SLOTS))]
    for c in classes:
        members = [items[i] for i, y in enumerate(labels) if y == c]
        members = [members[i] for i in rng.permutation(len(members))]
        proportions = rng.dirichlet([delta] * len(slots))
        cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(int).tolist()
        for slot, lo, hi in zip(slots, [0, *cuts], [*cuts, len(members)]):
            slot.append(members[lo:hi])
    out = []
    for slot in slots:
        for k in rng.permutation(len(slot)):
            out.extend(slot[k])
    return out
