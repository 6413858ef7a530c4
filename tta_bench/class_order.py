"""Class-correlated orders of a domain's samples: the unified TTA benchmark's sort_by_dirichlet (after NOTE;
mariodoebler/test-time-adaptation, classification/datasets/data_loading.py) and RoTTA's sampler (BIT-DA/RoTTA). Pure
functions of the labels, the items and a generator; stream.py decides when a setting uses them."""
from __future__ import annotations

import numpy as np

from .errors import UserError

NOTE_MIN_CHUNK = 10  # the reference's min_size_thresh
NOTE_ATTEMPTS = 100  # the reference gives up after 120 s; a count is deterministic
MAX_SLOTS = 100  # RoTTA: one time slot per class, at most 100


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
