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
visits of a gradual severity play in the same order. Folder layouts are shuffled, never played class by class.
Array layouts (CIFAR-C) have two named orders (``--array-order``): ``shuffle``, as the unified benchmark
(get_test_loader shuffles every dataset with ``.samples``, CIFAR-C included), and ``keep``, the published array
order, as TENT's cifar10c.py and CoTTA's (RobustBench load_cifar10c with shuffle=False). The default is the order of
the setting's reference: ``keep`` for reset_each_shift (TENT) and continual (CoTTA), ``shuffle`` for the settings the
unified benchmark introduced. A class-correlated order is drawn from that order, as the reference shuffles, then
sorts.

Class-correlated order: by default the reference's sorter (sort_by_dirichlet, adapted there from NOTE): as many
chunks as classes, each class's samples split over the chunks by Dirichlet(delta) proportions, chunks that already
hold N/classes samples receiving no more, redrawn until every chunk holds at least 10 samples; then chunk by chunk,
classes in random order. delta 0 sorts by class label (a stable sort of the shuffled domain, as there). The default
delta follows the reference's scripts (scripts/run.sh) and conf.py: ``correlated`` and the other combinations run at
conf.py's TEST.DELTA_DIRICHLET 0.0 (sorted by class; the correlated block passes none); only
``mixed_domains_correlated`` passes one: 0.01 on ImageNet-C, 0.1 on the other datasets (ImageNet-D109). RoTTA's
sampler (BIT-DA/RoTTA, time slots by Dirichlet proportions) is the named alternative `--sorter rotta`.

Domain length is part of a protocol: an online method adapts over as many batches as a domain gives, and a
class-correlated order's label shift fades as domains shrink. ``Stream.describe`` records each domain's length, the
suite's published length and the label shift measured on the run's batches (distinct classes per batch, the majority
class's share); ``limit_note`` warns when ``--limit`` caps the domains of a stream whose result depends on it.

A stream is recorded in summary.json by its setting, parameters and a hash of the ordered (split, id, visit) keys.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .choices import ARRAY_ORDERS, SORTERS, ArrayOrder
from .class_order import note_order, rotta_order
from .config import RunConfig
from .data.build import Split, SuiteData
from .errors import UserError
from .registry import Registry
from .vocabulary import sample_key

GRADUAL = (1, 2, 3, 4, 5, 4, 3, 2, 1)
STANDARD_SUBSET_LENGTH = {"5k": 5000}  # a standard subset's domain length (RobustBench's ImageNet-C list)


def default_dirichlet(family: str, setting: str) -> float:
    """The reference's delta for a setting: 0 (sorted by class, conf.py's TEST.DELTA_DIRICHLET) for ``correlated``
    and the other combinations; for ``mixed_domains_correlated`` what scripts/run.sh passes, 0.01 on ImageNet-C and
    0.1 on the other datasets."""
    if setting != "mixed_domains_correlated":
        return 0.0
    return 0.01 if family == "imagenet" else 0.1


def default_array_order(setting: str) -> str:
    """The order an array layout plays in, as the setting's reference loads CIFAR-C (module docstring)."""
    return SETTINGS.get(setting).array_order


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

    def explain(self) -> str:
        """The order's parameters in words, for the run plan ("" where the setting has none)."""
        parts = []
        if "dirichlet" in self.params:
            delta = self.params["dirichlet"]
            parts.append(f"class order Dirichlet delta {delta:g}" + (" (sorted by class)" if delta == 0 else "")
                         + f", sorter {self.params['sorter']}")
        if "array_order" in self.params:
            parts.append(f"array order {self.params['array_order']}")
        return "; ".join(parts)

    def describe(self, suite: SuiteData, batch_size: int) -> dict:
        """What a reader needs to compare this stream with a published protocol (summary.json's setting): each
        domain's length, the suite's published length per domain, and the label shift measured on the run's batches
        (mean distinct classes per batch; mean share of a batch held by its most frequent class)."""
        labels = np.asarray([suite.splits[it.split].source.labels[it.pos] for it in self.items], dtype=np.int64)
        classes, majority = [], []
        for batch in self.batches(batch_size):
            _, counts = np.unique(labels[batch], return_counts=True)
            classes.append(len(counts))
            majority.append(counts.max() / len(batch))
        return {"domain_lengths": {s.name: len(s.source) for s in suite.splits},
                "published_length": published_length(suite),
                "label_shift": {"batch_size": batch_size,
                                "classes_per_batch": round(float(np.mean(classes)), 3) if classes else None,
                                "majority_share": round(float(np.mean(majority)), 3) if majority else None}}

    def batches(self, batch_size: int) -> list[list[int]]:
        """Consecutive stream positions, cut at every reset so that a reset always falls between batches."""
        out: list[list[int]] = []
        for i in range(len(self.items)):
            if not out or i in self.resets or len(out[-1]) == batch_size:
                out.append([])
            out[-1].append(i)
        return out


def published_length(suite: SuiteData) -> int | None:
    """The length of one domain in the suite's published protocol: a standard subset's size, else the published
    dataset's per split (the shortest where splits differ); None where the suite publishes none or is a generated
    stream (CCC's length is its own parameter)."""
    if suite.spec.kind == "ccc":
        return None
    if suite.subset.split("+")[0] in STANDARD_SUBSET_LENGTH:
        return STANDARD_SUBSET_LENGTH[suite.subset.split("+")[0]]
    sizes = [n for s in suite.splits if (n := suite.spec.expected_for(s.name)) is not None]
    return min(sizes) if sizes else None


def limit_note(setting: str, limit: int | None, suite: SuiteData) -> str | None:
    """One line when ``--limit`` caps the domains of a stream whose result depends on their length."""
    if not limit or not SETTINGS.get(setting).length_sensitive:
        return None
    published = published_length(suite)
    available = suite.clean_images if suite.generated else published
    if (available is not None and limit >= available) or not any(len(s.source) == limit for s in suite.splits):
        return None
    return (f"--limit {limit:,} caps each domain of this {setting} stream at {limit:,} samples"
            + (f" (published: {published:,})" if published else "") + ": online methods adapt over shorter domains"
            + (", with less label shift" if SETTINGS.get(setting).correlated else ""))


def stream_for(suite: SuiteData, cfg: RunConfig) -> Stream:
    """The run's stream, with the setting's reference delta and array order where the configuration leaves them."""
    dirichlet = default_dirichlet(suite.spec.family, cfg.setting) if cfg.dirichlet is None else cfg.dirichlet
    return build_stream(suite.splits, cfg.setting, cfg.seed, dirichlet, cfg.sorter, cfg.array_order)


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
    start of each segment (``reset_each``) or of the stream only. ``correlated``: each domain ordered by class.
    ``array_order``: the order an array layout plays in within a domain, as the setting's reference loads CIFAR-C
    (TENT's and CoTTA's loaders keep it, the unified benchmark shuffles). ``length_sensitive``: the result depends on
    how long a domain is (online adaptation over it, a label shift within it), so ``--limit`` warns."""

    segments: Callable[[list[Split], Domains], list[list[Item]]]
    reset_each: bool = False
    correlated: bool = False
    array_order: ArrayOrder = "shuffle"
    length_sensitive: bool = False
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
    StreamSetting(in_sequence, reset_each=True, array_order="keep"))
SETTINGS.register("continual", "domains in sequence, no reset, no signal of the change (CoTTA)")(
    StreamSetting(in_sequence, array_order="keep", length_sensitive=True))
SETTINGS.register("gradual", "per corruption severities 1,2,3,4,5,4,3,2,1, each domain replayed in full per visit, no "
                  "reset")(StreamSetting(gradual, length_sensitive=True, params=VISITS))
SETTINGS.register("mixed_domains", "all domains' samples shuffled into one stream, no reset")(StreamSetting(mixed))
SETTINGS.register("correlated", "continual, each domain sorted by class (or Dirichlet-ordered: --dirichlet DELTA)")(
    StreamSetting(in_sequence, correlated=True, length_sensitive=True))
SETTINGS.register("reset_each_shift_correlated", "reset_each_shift, each domain ordered by class")(
    StreamSetting(in_sequence, reset_each=True, correlated=True, length_sensitive=True))
SETTINGS.register("gradual_correlated", "gradual, each visit ordered by class")(
    StreamSetting(gradual, correlated=True, length_sensitive=True, params=VISITS))
SETTINGS.register("mixed_domains_correlated", "mixed_domains, the whole stream ordered by class")(
    StreamSetting(mixed, correlated=True, length_sensitive=True))
SETTINGS.register("gradual_once", "tta_bench's walk 1..5..1 seeing every sample once (severities 1-4 halved between "
                  "up and down)")(StreamSetting(gradual_once))


def build_stream(splits: list[Split], setting: str, seed: int, dirichlet: float = 0.0, sorter: str = "note",
                 array_order: str | None = None) -> Stream:
    """The ordered samples of ``setting``; ``array_order`` None: the setting's reference order (default_array_order)."""
    if setting not in SETTINGS:
        raise UserError(f"unknown setting {setting!r}; expected one of: {', '.join(SETTINGS.names())}")
    spec = SETTINGS.get(setting)
    if sorter not in SORTERS:
        raise UserError(f"unknown --sorter {sorter!r}; expected one of: {', '.join(SORTERS)}")
    if not (dirichlet >= 0 and np.isfinite(dirichlet)):
        raise UserError(f"--dirichlet must be a finite number >= 0 (0 sorts by class), got {dirichlet}")
    array_order = array_order or default_array_order(setting)
    if array_order not in ARRAY_ORDERS:
        raise UserError(f"unknown --array-order {array_order!r}; expected one of: {', '.join(ARRAY_ORDERS)}")
    correlated = spec.correlated

    def sort(labels: list[int], members: list, rng: np.random.Generator) -> list:
        if sorter == "rotta":
            return rotta_order(labels, members, dirichlet, rng)
        return note_order(labels, members, dirichlet, rng)

    def order(split_index: int, positions: list[int], visit: int = 0) -> list[Item]:
        source = splits[split_index].source
        rng = np.random.default_rng(seed)  # afresh per domain visit, as the reference re-seeds per loader
        if not source.ordered or array_order == "shuffle":
            positions = [positions[i] for i in rng.permutation(len(positions))]
        if correlated:  # the reference shuffles, then sorts
            positions = sort([source.labels[p] for p in positions], positions, rng)
        return [Item(split_index, p, visit) for p in positions]

    def mix(items: list[Item]) -> list[Item]:
        rng = np.random.default_rng(seed)
        items = [items[i] for i in rng.permutation(len(items))]  # mixed whatever the layout, as the reference
        if correlated:
            return sort([splits[it.split].source.labels[it.pos] for it in items], items, rng)
        return items

    items: list[Item] = []
    resets: set[int] = set()
    for seg in spec.segments(splits, Domains(order, mix)):
        if spec.reset_each or not items:
            resets.add(len(items))
        items.extend(seg)
    params: dict = {"dirichlet": dirichlet, "sorter": sorter} if correlated else {}
    if spec.segments is not mixed and any(s.source.ordered for s in splits):
        params["array_order"] = array_order
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
