"""CCC's walks: how the severities of a pair of corruptions change so that the source model's accuracy stays near
a target, and the endless sequence of pairs a stream follows.

Follows oripress/CCC generate.py: ``find_path`` / ``traverse_graph`` (over the grid of severity pairs, accuracy
matrix ``arr[i][j]`` with the first corruption at severity i * step and the second at j * step, a walk starts at
(i, 0), moves to (i - 1, j) or (i, j + 1) whichever keeps the running mean accuracy of the walk closer to the
target, and ends on row 0; the start i whose whole walk has the mean closest to the target wins), and
GenerateDataset (the first pair drawn at random, then the second corruption of a pair becomes the first of the
next, its partner drawn among the others; ``speed`` images per walk cell). Written from that description.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Cell = tuple[int, int]


def find_walk(accuracy: np.ndarray, target: float) -> list[Cell]:
    """The walk (list of (i, j) cells from (start, 0) to (0, end)) whose cells' mean accuracy is nearest ``target``.

    The reference's recursion, evaluated bottom-up: for each cell, the walk continuing from it is the better of the
    two continuations (down a row, or right a column) by |running mean - target|; a column past the grid is a dead
    end. Ties go right, as the reference's strict comparison does."""
    n, m = accuracy.shape
    total = np.full((n, m + 1), math.inf)  # sum of accuracies along the best walk from (i, j)
    length = np.ones((n, m + 1), dtype=int)
    step: dict[Cell, Cell | None] = {}
    for j in range(m):
        total[0, j] = accuracy[0, j]
        step[(0, j)] = None
    for i in range(1, n):
        for j in range(m - 1, -1, -1):
            down = (total[i - 1, j] + accuracy[i, j]) / (length[i - 1, j] + 1)
            right = (total[i, j + 1] + accuracy[i, j]) / (length[i, j + 1] + 1)
            nxt = (i - 1, j) if abs(down - target) < abs(right - target) else (i, j + 1)
            total[i, j] = total[nxt] + accuracy[i, j]
            length[i, j] = length[nxt] + 1
            step[(i, j)] = nxt
    start = min(range(1, n), key=lambda i: abs(total[i, 0] / length[i, 0] - target))
    walk: list[Cell] = [(start, 0)]
    while (nxt := step[walk[-1]]) is not None:
        walk.append(nxt)
    return walk


@dataclass(frozen=True)
class Segment:
    """One pair's walk: ``first`` fades out while ``second`` fades in, ``speed`` samples per cell."""

    first: str
    second: str
    severities: tuple[tuple[float, float], ...]  # per cell: (severity of first, severity of second)
    start: int  # stream position of its first sample


class Plan:
    """The stream's sequence of segments, drawn with ``seed`` and extended lazily: the first N positions are the
    same whatever length is later asked for (a prefix of a longer stream, a resumed run)."""

    def __init__(self, noises: Sequence[str], walk_of: Callable[[str, str], list[tuple[float, float]]], speed: int,
                 seed: int) -> None:
        if len(noises) < 2:
            raise ValueError("a CCC stream needs at least two corruptions")
        self.noises, self.walk_of, self.speed = list(noises), walk_of, speed
        self.rng = np.random.default_rng(seed)
        self.segments: list[Segment] = []
        self._end = 0  # first position after the last segment
        first = self._draw(None)
        self._second = self._draw(first)
        self._first = first

    def _draw(self, other: str | None) -> str:
        choices = [n for n in self.noises if n != other]
        return choices[int(self.rng.integers(len(choices)))]

    def extend_to(self, n: int) -> None:
        while self._end < n:
            cells = tuple(self.walk_of(self._first, self._second))
            self.segments.append(Segment(self._first, self._second, cells, self._end))
            self._end += len(cells) * self.speed
            self._first, self._second = self._second, self._draw(self._second)

    def at(self, position: int) -> tuple[str, float, str, float]:
        """(first corruption, its severity, second corruption, its severity) of a stream position."""
        self.extend_to(position + 1)
        lo, hi = 0, len(self.segments) - 1
        while lo < hi:  # the last segment starting at or before the position
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.segments[mid].start <= position else (lo, mid - 1)
        segment = self.segments[lo]
        s1, s2 = segment.severities[(position - segment.start) // self.speed]
        return segment.first, s1, segment.second, s2
