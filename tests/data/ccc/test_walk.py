"""CCC's walks and pair sequence: the bottom-up walk equals the reference's recursion, and the plan is a seeded,
prefix-stable chain of pairs."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from tta_bench.data.ccc.walk import Plan, find_walk


def reference_walk(arr: np.ndarray, target: float) -> list[tuple[int, int]]:
    """oripress/CCC generate.py find_path / traverse_graph, restated as a memoised recursion."""
    cost: dict = {}
    path: dict = {}

    def visit(i: int, j: int) -> None:
        if (i, j) in cost:
            return
        if j >= arr.shape[1]:
            cost[(i, j)], path[(i, j)] = float("inf"), [None]
            return
        if i == 0:
            cost[(i, j)], path[(i, j)] = arr[0][j], [(0, j)]
            return
        visit(i - 1, j)
        visit(i, j + 1)
        down = abs((cost[(i - 1, j)] + arr[i][j]) / (len(path[(i - 1, j)]) + 1) - target)
        right = abs((cost[(i, j + 1)] + arr[i][j]) / (len(path[(i, j + 1)]) + 1) - target)
        nxt = (i - 1, j) if down < right else (i, j + 1)
        cost[(i, j)], path[(i, j)] = cost[nxt] + arr[i][j], [(i, j)] + path[nxt]

    best, walk = float("inf"), None
    for i in range(1, arr.shape[0]):
        visit(i, 0)
        gap = abs(cost[(i, 0)] / len(path[(i, 0)]) - target)
        if gap < best:
            best, walk = gap, path[(i, 0)]
    return walk


@pytest.mark.parametrize("seed", range(6))
def test_the_walk_is_the_references_on_random_and_monotone_matrices(seed):
    rng = np.random.default_rng(seed)
    n = 9
    if seed % 2:  # accuracy falling with both severities, as a real matrix mostly does
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        arr = 70 - 6 * i - 5 * j + rng.normal(0, 3, (n, n))
    else:
        arr = rng.uniform(0, 80, (n, n))
    target = float(rng.uniform(5, 40))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        expected = reference_walk(arr, target)
    finally:
        sys.setrecursionlimit(old)
    walk = find_walk(arr, target)
    assert walk == expected
    assert walk[0][1] == 0 and walk[-1][0] == 0  # from the first corruption alone to the second alone
    assert all(b in ((a[0] - 1, a[1]), (a[0], a[1] + 1)) for a, b in zip(walk, walk[1:]))


def test_the_walk_keeps_its_mean_accuracy_near_the_target():
    i, j = np.meshgrid(np.arange(21), np.arange(21), indexing="ij")
    arr = 60.0 - 2.5 * i - 2.0 * j  # 60% clean, 0% when both are strong
    for target in (20.0, 40.0):
        walk = find_walk(arr, target)
        assert abs(np.mean([arr[c] for c in walk]) - target) < 1.0


def _plan(seed: int, speed: int = 3) -> Plan:
    walks = {}

    def walk_of(first: str, second: str) -> list[tuple[float, float]]:
        length = 2 + len(first + second) % 3  # a different walk length per pair
        walks[(first, second)] = [(2.0 - k / length, k / length) for k in range(length + 1)]
        return walks[(first, second)]

    return Plan(["a", "bb", "ccc", "dddd"], walk_of, speed, seed)


def test_the_plan_chains_pairs_and_is_the_same_for_any_prefix():
    plan = _plan(7)
    plan.extend_to(200)
    for one, two in zip(plan.segments, plan.segments[1:]):
        assert one.second == two.first and one.first != one.second
        assert two.start == one.start + len(one.severities) * plan.speed
    short = _plan(7)
    assert [short.at(p) for p in range(60)] == [plan.at(p) for p in range(60)]
    assert [_plan(8).at(p) for p in range(60)] != [plan.at(p) for p in range(60)]


def test_each_walk_cell_lasts_speed_samples():
    plan = _plan(1, speed=4)
    plan.extend_to(1)
    first = plan.segments[0]
    cells = [plan.at(p)[1::2] for p in range(len(first.severities) * 4)]
    assert cells == [c for c in first.severities for _ in range(4)]
