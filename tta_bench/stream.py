"""Test streams under the names and semantics of the unified TTA benchmark (mariodoebler/test-time-adaptation,
classification/test_time.py and datasets/data_loading.py get_test_loader / sort_by_dirichlet, its README's
"Settings"): the ordered samples of a run and where a method may reset.

- reset_each_shift: the domains in sequence, a reset at the start of each (TENT's protocol).
- continual: the domains in sequence, one reset at the start, no signal of a change (CoTTA's protocol).
- gradual: per corruption the severities 1 2 3 4 5 4 3 2 1, each step replaying that (corruption, severity) domain in
  full, no reset; a sample is predicted once per visit (records carry `visit`, 0 on the way up, 1 on the way down).
- mixed_domains: every domain's samples shuffled into one stream, no reset.
- correlated: continual, with each domain's samples ordered by class (Dirichlet sorter below).
- reset_each_shift_correlated, gradual_correlated, mixed_domains_correlated: the combinations, as there.
- gradual_once: tta_bench's own walk 1..5..1 in which severities 1-4 are split between the way up and the way down,
  so every sample is predicted exactly once (not the benchmark's `gradual`).

Within a domain the order is drawn from a generator seeded with the run seed alone, afresh for every domain visit, as
the reference re-seeds before building each domain's loader: equal-sized domains share one permutation and both
visits of a gradual severity play in the same order. Array layouts (CIFAR-C) keep their published order unless
class-correlated (the RobustBench/TENT protocol); folder layouts are shuffled, never played class by class.

Class-correlated order: by default the reference's sorter (sort_by_dirichlet, adapted there from NOTE): as many
chunks as classes, each class's samples split over the chunks by Dirichlet(delta) proportions, chunks that already
hold N/classes samples receiving no more, redrawn until every chunk holds at least 10 samples; then chunk by chunk,
classes in random order. delta 0 sorts by class label, as there. The default delta follows the suite family as the
reference's scripts (scripts/run.sh) run it: 0.01 for ImageNet suites, 0.1 otherwise. RoTTA's sampler
(BIT-DA/RoTTA, time slots by Dirichlet proportions) is the named alternative `--sorter rotta`.

A stream is recorded in summary.json by its setting, parameters and a hash of the ordered (split, id, visit) keys.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .choices import SORTERS
from .data.build import Split
from .errors import UserError
from .registry import Registry
from .vocabulary import sample_key

GRADUAL = (1, 2, 3, 4, 5, 4, 3, 2, 1)
NOTE_MIN_CHUNK = 10  # the reference's min_size_thresh
NOTE_ATTEMPTS = 100  # the reference gives up after 120 s; a count is deterministic
MAX_SLOTS = 100  # RoTTA: one time slot per class, at most 100


def default_dirichlet(family: str) -> float:
    """The reference scripts' delta: 0.01 on ImageNet-C, 0.1 on the other datasets they correlate."""
    return 0.01 if family == "imagenet" else 0.1


@dataclass(frozen=True)
class Item:
    split: int  # index into the run's splits
    pos: int  # position in that split's source
    visit: int = 0  # how many times this sample was already played (gradual's way down: 1)


@dataclass(frozen=True)
class Sample:
    """What a stream position is in a run folder's words: the split's name, the sample's id and label, the visit."""

    split: str
    id: str
    label: int
    visit: int = 0

    @property
    def key(self) -> tuple[str, str, int]:
        return sample_key(self.split, self.id, self.visit)


@dataclass
class Stream:
    items: list[Item]
    resets: set[int]  # stream positions before which the method is reset
    setting: str
    params: dict = field(default_factory=dict)

    def hash(self, splits: list[Split]) -> str:
        h = hashlib.sha256()
        for it in self.items:
            visit = f"|{it.visit}" if it.visit else ""
            h.update(f"{splits[it.split].name}|{splits[it.split].source.ids[it.pos]}{visit}\n".encode())
        return h.hexdigest()

    def sample(self, i: int, splits: list[Split]) -> Sample:
        item = self.items[i]
        split = splits[item.split]
        return Sample(split.name, split.source.ids[item.pos], split.source.labels[item.pos], item.visit)

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


class Domains:
    """What a setting arranges into a stream: ``order`` gives one domain's samples (split index, positions in it, the
    visit number) in the run's order within a domain; ``mix`` plays a list of items from several domains as one
    shuffled (or, under a correlated setting, class-ordered) sequence."""

    def __init__(self, order: Callable[..., list[Item]], mix: Callable[[list[Item]], list[Item]]) -> None:
        self.order, self.mix = order, mix


@dataclass(frozen=True)
class StreamSetting:
    """A stream setting: the segments its domains become, played one after the other; the method is reset at the
    start of each segment (``reset_each``) or of the stream only. ``correlated``: each domain ordered by class."""

    segments: Callable[[list[Split], Domains], list[list[Item]]]
    reset_each: bool = False
    correlated: bool = False
    params: dict = field(default_factory=dict)  # recorded in the summary's setting


def in_sequence(splits: list[Split], domains: Domains) -> list[list[Item]]:
    """The domains one after the other, each whole."""
    return [domains.order(i, list(range(len(s.source)))) for i, s in enumerate(splits)]


def mixed(splits: list[Split], domains: Domains) -> list[list[Item]]:
    """Every domain's samples in one sequence."""
    return [domains.mix([Item(i, p) for i, s in enumerate(splits) for p in range(len(s.source))])]


def gradual(splits: list[Split], domains: Domains) -> list[list[Item]]:
    return _gradual_segments(splits, domains.order, once=False)


def gradual_once(splits: list[Split], domains: Domains) -> list[list[Item]]:
    return _gradual_segments(splits, domains.order, once=True)


VISITS = {"visits": "a split's accuracy pools its visits (severities 1-4: on the way up and down)"}
SETTINGS: Registry[StreamSetting] = Registry("setting")
SETTINGS.register("reset_each_shift", "domains in sequence, reset at the start of each (TENT); the default")(
    StreamSetting(in_sequence, reset_each=True))
SETTINGS.register("continual", "domains in sequence, no reset, no signal of the change (CoTTA)")(
    StreamSetting(in_sequence))
SETTINGS.register("gradual", "per corruption severities 1,2,3,4,5,4,3,2,1, each domain replayed in full per visit, no "
                  "reset")(StreamSetting(gradual, params=VISITS))
SETTINGS.register("mixed_domains", "all domains' samples shuffled into one stream, no reset")(StreamSetting(mixed))
SETTINGS.register("correlated", "continual, each domain ordered by class (Dirichlet, --dirichlet DELTA)")(
    StreamSetting(in_sequence, correlated=True))
SETTINGS.register("reset_each_shift_correlated", "reset_each_shift, each domain ordered by class")(
    StreamSetting(in_sequence, reset_each=True, correlated=True))
SETTINGS.register("gradual_correlated", "gradual, each visit ordered by class")(
    StreamSetting(gradual, correlated=True, params=VISITS))
SETTINGS.register("mixed_domains_correlated", "mixed_domains, the whole stream ordered by class")(
    StreamSetting(mixed, correlated=True))
SETTINGS.register("gradual_once", "tta_bench's walk 1..5..1 seeing every sample once (severities 1-4 halved between "
                  "up and down)")(StreamSetting(gradual_once))


def build_stream(splits: list[Split], setting: str, seed: int, dirichlet: float = 0.1, sorter: str = "note") -> Stream:
    if setting not in SETTINGS:
        raise UserError(f"unknown setting {setting!r}; expected one of: {', '.join(SETTINGS.names())}")
    spec = SETTINGS.get(setting)
    if sorter not in SORTERS:
        raise UserError(f"unknown --sorter {sorter!r}; expected one of: {', '.join(SORTERS)}")
    if not (dirichlet >= 0 and np.isfinite(dirichlet)):
        raise UserError(f"--dirichlet must be a finite number >= 0 (0 sorts by class), got {dirichlet}")
    correlated = spec.correlated

    def sort(labels: list[int], members: list, rng: np.random.Generator) -> list:
        if sorter == "rotta":
            return rotta_order(labels, members, dirichlet, rng)
        return note_order(labels, members, dirichlet, rng)

    def order(split_index: int, positions: list[int], visit: int = 0) -> list[Item]:
        source = splits[split_index].source
        rng = np.random.default_rng(seed)  # afresh per domain visit, as the reference re-seeds per loader
        if correlated:
            positions = sort([source.labels[p] for p in positions], positions, rng)
        elif not source.ordered:
            positions = [positions[i] for i in rng.permutation(len(positions))]
        return [Item(split_index, p, visit) for p in positions]

    def mix(items: list[Item]) -> list[Item]:
        rng = np.random.default_rng(seed)
        if correlated:
            return sort([splits[it.split].source.labels[it.pos] for it in items], items, rng)
        return [items[i] for i in rng.permutation(len(items))]

    items: list[Item] = []
    resets: set[int] = set()
    for seg in spec.segments(splits, Domains(order, mix)):
        if spec.reset_each or not items:
            resets.add(len(items))
        items.extend(seg)
    params: dict = {"dirichlet": dirichlet, "sorter": sorter} if correlated else {}
    return Stream(items, resets, setting, {**params, **spec.params})


def _gradual_segments(splits: list[Split], order, once: bool) -> list[list[Item]]:
    """Severities 1..5..1 per corruption. `once`: severities 1-4 appear twice, so their samples are halved between
    the way up and the way down (every sample seen once); else every visit replays the whole domain."""
    by_domain = {(s.corruption, s.severity): i for i, s in enumerate(splits)}
    corruptions = list(dict.fromkeys(s.corruption for s in splits))
    segments = []
    for c in corruptions:
        missing = [s for s in range(1, 6) if (c, s) not in by_domain]
        if missing:
            raise UserError(f"gradual needs severities 1-5 of {c}; missing {missing}")
        visits: dict[int, int] = {}
        for sev in GRADUAL:
            i = by_domain[(c, sev)]
            visit = visits.get(sev, 0)
            visits[sev] = visit + 1
            n = len(splits[i].source)
            if once:
                half = n // 2 if sev < 5 else n
                positions = list(range(half, n) if visit else range(half))
                segments.append(order(i, positions))
            else:
                segments.append(order(i, list(range(n)), visit))
    return segments


def note_order(labels: list[int], items: list, delta: float, rng: np.random.Generator) -> list:
    """The reference's class-correlated order (sort_by_dirichlet, after NOTE; see the module docstring); delta 0
    sorts by class label. Chunks are as many as the classes present (the reference: max label + 1). The minimum chunk
    size is the reference's 10 where a stream is long enough for it (the reference's streams hold 50 samples per
    chunk); a shorter stream keeps the same proportion, N / (5 x chunks), where the reference would search until
    its time-out."""
    if delta == 0:
        return [items[i] for i in sorted(range(len(items)), key=lambda i: labels[i])]
    classes = sorted(set(labels))
    n, chunks = len(labels), len(classes)
    min_size = max(1, min(NOTE_MIN_CHUNK, n // (5 * chunks)))
    by_class = [np.asarray(members) for members in _by_class(labels, range(len(labels)))]
    for _ in range(NOTE_ATTEMPTS):
        filled = np.zeros(chunks, dtype=np.int64)
        placed = []  # (members, their chunks) per class, in class order
        for members in by_class:
            members = members.copy()
            rng.shuffle(members)
            drawn = rng.dirichlet(np.repeat(delta, chunks))
            proportions = drawn * (filled < n / chunks)  # balance: no more for chunks already holding N / chunks
            if proportions.sum() <= 0:  # every chunk full (the reference divides by zero here): keep the draw
                proportions = drawn
            proportions = proportions / proportions.sum()
            cuts = (np.cumsum(proportions) * len(members)).astype(int)[:-1]
            chunk_of = np.searchsorted(cuts, np.arange(len(members)), side="right")
            filled += np.bincount(chunk_of, minlength=chunks)
            placed.append((members, chunk_of))
        if filled.min() >= min_size:
            break
    else:
        raise UserError(f"could not order {n} samples of {chunks} classes by Dirichlet({delta}) with at least "
                        f"{min_size} per chunk; try another --dirichlet or --sorter rotta")
    class_rank = np.empty((chunks, chunks), dtype=np.int64)  # per chunk, the random order of the classes
    for k in range(chunks):
        class_rank[k, rng.permutation(chunks)] = np.arange(chunks)
    keys = [(int(chunk), int(class_rank[chunk, c]), t, int(member))
            for c, (members, chunk_of) in enumerate(placed) for t, (member, chunk) in enumerate(zip(members, chunk_of))]
    return [items[member] for *_, member in sorted(keys)]


def rotta_order(labels: list[int], items: list, delta: float, rng: np.random.Generator) -> list:
    """RoTTA's sampler (BIT-DA/RoTTA): each class's samples are cut into time slots by Dirichlet(delta) proportions,
    and each slot plays its class chunks in random order, every chunk kept together."""
    if delta == 0:
        return note_order(labels, items, 0.0, rng)
    groups = _by_class(labels, items)
    slots: list[list[list]] = [[] for _ in range(min(len(groups), MAX_SLOTS))]
    for members in groups:
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


def _by_class(labels: list[int], items) -> list[list]:
    """`items` grouped by label, classes in ascending order, each group in stream order."""
    groups: dict[int, list] = {}
    for label, item in zip(labels, items):
        groups.setdefault(label, []).append(item)
    return [groups[c] for c in sorted(groups)]


def one_batch_note(stream: Stream, batch_size: int, method: str) -> str | None:
    """An online method whose every reset segment fits in one batch predicts each segment before its first update:
    it reduces to BN adaptation (seen: TENT = BN adaptation exactly on a 100-sample-per-domain CIFAR-10-C run)."""
    starts = sorted(stream.resets) + [len(stream.items)]
    longest = max(b - a for a, b in zip(starts[:-1], starts[1:]))
    if batch_size < longest:
        return None
    return (f"one-batch segments: batch size {batch_size} >= the longest reset segment ({longest} samples), so "
            f"{method} predicts every sample before any update of its segment")


def batches_of_rank(stream: Stream, batch_size: int, per_sample: bool, rank: int, world: int,
                    method: str) -> list[list[int]]:
    """The batches one of ``world`` processes runs: a per-sample method's samples are sharded round-robin; an online
    method's state spans a reset segment, so only whole segments can be sharded."""
    if world == 1:
        return stream.batches(batch_size)
    if per_sample:
        mine = Stream([stream.items[i] for i in range(rank, len(stream.items), world)], {0}, stream.setting)
        positions = list(range(rank, len(stream.items), world))
        return [[positions[j] for j in b] for b in mine.batches(batch_size)]
    if len(stream.resets) < 2:
        raise UserError(f"{method} adapts online over one sequential stream (setting {stream.setting}): it cannot be "
                        "split over processes; run it without torchrun")
    starts = sorted(stream.resets) + [len(stream.items)]
    out = []
    for k, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        if k % world == rank:
            seg = Stream(stream.items[a:b], {0}, stream.setting)
            out += [[a + j for j in batch] for batch in seg.batches(batch_size)]
    return out


def unfinished(batches: list[list[int]], stream: Stream, splits: list[Split], done: set[tuple[str, str, int]],
               per_sample: bool) -> list[list[int]]:
    """What a resumed run still has to run: a per-sample method's results do not depend on what came before, so its
    finished samples are skipped; an online method's state depends on its whole reset segment, so every segment that
    holds an unfinished sample is replayed from its start."""
    def todo(i: int) -> bool:
        return stream.sample(i, splits).key not in done

    if per_sample:
        return [b for b in ([i for i in b if todo(i)] for b in batches) if b]
    out, segment = [], []
    for b in batches + [[len(stream.items)]]:
        if b[0] in stream.resets or b[0] == len(stream.items):
            if any(todo(i) for batch in segment for i in batch):
                out.extend(segment)
            segment = []
        segment.append(b)
    return out
