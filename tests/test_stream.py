"""Test streams: settings, orders, reset points and the stream hash."""
from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, WNIDS, image_stack, needs_shared, write_arrays, write_images
from tta_bench import cli, engine
from tta_bench.config import RunConfig
from tta_bench.data.build import Split, load_suite
from tta_bench.data.sources import ArraySource, FileSource
from tta_bench.errors import UserError
from tta_bench.class_order import note_order, rotta_order
from tta_bench.report.runs import run_label
from tta_bench.stream import (GRADUAL, SETTINGS, batches_of_rank, build_stream, default_array_order, default_dirichlet,
                              limit_note, published_length)
from tta_bench.vocabulary import PREDICTIONS, record_key

CORRUPTIONS = ("gaussian_noise", "fog")


def _folder_split(name: str, n: int, corruption: str | None = None, severity: int | None = None) -> Split:
    """A folder-layout split (class by class on disk); nothing is read, so the files need not exist."""
    ids = [f"{name}/{i:03d}.JPEG" for i in range(n)]
    return Split(name, FileSource(Path("/nonexistent"), ids, [i * 3 // n for i in range(n)]), corruption, severity)


def _array_split(name: str, n: int) -> Split:
    return Split(name, ArraySource(Path("/nonexistent.npy"), list(range(n)), [i % 3 for i in range(n)]))


def _graded_splits(n: int) -> list[Split]:
    return [_folder_split(f"{c}-{s}", n, c, s) for c in CORRUPTIONS for s in range(1, 6)]


@pytest.fixture(scope="module")
def graded_imagenet_c(tmp_path_factory) -> Path:
    """ImageNet-C folders with every severity of every corruption (what gradual needs), 3 images each, stored as
    ImageNet-C stores them: 224 x 224."""
    root = tmp_path_factory.mktemp("imagenet-c")
    write_images(root, {f"{c}/{s}/{w}": 1 for c in CORRUPTIONS for s in range(1, 6) for w in WNIDS}, size=224)
    return root


def test_a_non_adapting_method_predicts_the_same_under_every_setting(graded_imagenet_c, tmp_path):
    predictions, sizes = {}, {}
    for setting in SETTINGS.names():
        out = tmp_path / setting
        cfg = RunConfig(suite="imagenet-c", data_root=str(graded_imagenet_c), corruptions=list(CORRUPTIONS),
                        severities=[1, 2, 3, 4, 5], allow_partial=True, setting=setting, teacher="tiny",
                        num_workers=0, device="cpu", batch_size=4, out=str(out))
        summary = engine.run(cfg, progress=False, log=lambda *_: None)
        assert summary["setting"]["name"] == setting
        records = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
        assert len(records) == summary["data"]["n_samples"] == len({record_key(r) for r in records})
        sizes[setting] = len(records)
        predictions[setting] = {(r["split"], r["id"]): (r["pred"], r["top5"]) for r in records}
    reference = predictions["reset_each_shift"]
    assert len(reference) == 30
    for setting, preds in predictions.items():
        assert preds == reference, setting
    # gradual replays a domain per visit: 9 visits of 3 images per corruption; gradual_once sees each image once
    assert sizes["gradual"] == sizes["gradual_correlated"] == 2 * 9 * 3 and sizes["gradual_once"] == 30


def test_gradual_replays_each_severity_in_full_per_visit_as_the_unified_benchmark():
    splits = _graded_splits(5)
    stream = build_stream(splits, "gradual", seed=0)
    runs = [(splits[split].severity, len(list(group))) for split, group in itertools.groupby(it.split for it in
                                                                                               stream.items)]
    assert runs == [(sev, 5) for sev in GRADUAL] * len(CORRUPTIONS)
    corruptions = [c for c, _ in itertools.groupby(splits[it.split].corruption for it in stream.items)]
    assert corruptions == list(CORRUPTIONS)
    visits = Counter((it.split, it.pos, it.visit) for it in stream.items)
    assert set(visits.values()) == {1} and {it.visit for it in stream.items} == {0, 1}
    assert sum(it.visit == 1 for it in stream.items) == 4 * 5 * len(CORRUPTIONS)  # severities 1-4, on the way down
    assert stream.resets == {0} and "visits" in stream.params
    up, down = ([it.pos for it in stream.items if splits[it.split].name == "fog-2" and it.visit == v] for v in (0, 1))
    assert up == down  # the reference re-seeds per visit: the same order both ways


def test_gradual_once_sees_every_sample_once():
    splits = _graded_splits(5)
    stream = build_stream(splits, "gradual_once", seed=0)
    severities = [splits[split].severity for split, _ in itertools.groupby(it.split for it in stream.items)]
    assert severities == list(GRADUAL) * len(CORRUPTIONS)
    counts = Counter(stream.items)
    assert len(stream.items) == 50 and set(counts.values()) == {1} and stream.resets == {0}


def test_gradual_needs_all_five_severities():
    with pytest.raises(UserError, match=r"gradual needs severities 1-5 of fog; missing \[3\]"):
        build_stream([s for s in _graded_splits(2) if s.name != "fog-3"], "gradual", seed=0)


def _mean_run_length(labels: list[int]) -> float:
    return float(np.mean([len(list(g)) for _, g in itertools.groupby(labels)]))


@pytest.mark.parametrize("order", [note_order, rotta_order])
def test_class_correlated_runs_get_longer_as_delta_falls(order):
    labels = [c for c in range(10) for _ in range(60)]
    lengths = []
    for delta in (1.0, 0.1, 0.01, 0.001):
        per_seed = []
        for seed in range(3):
            ordered = order(labels, list(range(len(labels))), delta, np.random.default_rng(seed))
            assert sorted(ordered) == list(range(len(labels)))  # a permutation: every sample once
            per_seed.append(_mean_run_length([labels[i] for i in ordered]))
        lengths.append(np.mean(per_seed))
    assert all(a < b for a, b in zip(lengths, lengths[1:])) and lengths[-1] > 5 * lengths[0]
    assert [labels[i] for i in order(labels, list(range(600)), 0.0, np.random.default_rng(0))] == sorted(labels)


def test_the_two_sorters_reproduce_the_measured_classes_per_batch_on_imagenet():
    """ImageNet's 1000 classes x 50 images at delta 0.01, batches of 64: the unified benchmark's sorter (one chunk
    per class, balanced chunks of >= 10) gives ~26 classes per batch, RoTTA's sampler ~7.7 (measured: 26.1 vs 7.7)."""
    labels = [c for c in range(1000) for _ in range(50)]

    def classes_per_batch(order) -> float:
        ordered = order(labels, list(range(len(labels))), 0.01, np.random.default_rng(0))
        assert sorted(ordered) == list(range(len(labels)))
        return float(np.mean([len({labels[i] for i in ordered[k:k + 64]}) for k in range(0, len(ordered), 64)]))

    assert classes_per_batch(note_order) == pytest.approx(26.1, abs=1.0)
    assert classes_per_batch(rotta_order) == pytest.approx(7.7, abs=0.5)


def test_correlated_is_continual_with_class_correlation_and_its_reset_twin_resets():
    splits = [_folder_split("a", 60), _folder_split("b", 60)]
    stream = build_stream(splits, "correlated", seed=0, dirichlet=0.01)
    assert stream.params == {"dirichlet": 0.01, "sorter": "note"}
    assert stream.resets == {0}  # continual: no reset between domains
    labels = [splits[it.split].source.labels[it.pos] for it in stream.items]
    assert _mean_run_length(labels) > 5
    assert build_stream(splits, "reset_each_shift_correlated", seed=0, dirichlet=0.01).resets == {0, 60}
    assert build_stream(splits, "correlated", seed=0, dirichlet=0.01, sorter="rotta").params["sorter"] == "rotta"
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(UserError, match="--dirichlet"):
            build_stream(splits, "correlated", seed=0, dirichlet=bad)


def test_equal_domains_share_the_seeded_permutation_as_the_reference_reseeds_per_domain():
    splits = [_folder_split("a", 30), _folder_split("b", 30)]
    items = build_stream(splits, "continual", seed=4).items
    assert [it.pos for it in items[:30]] == [it.pos for it in items[30:]]


def test_correlated_sorts_by_class_and_only_mixed_domains_correlated_has_a_delta(tmp_path):
    """The unified benchmark: conf.py TEST.DELTA_DIRICHLET 0.0 for correlated (scripts/run.sh passes none); 0.01
    (ImageNet-C) / 0.1 (ImageNet-D109) only for mixed_domains_correlated."""
    write_images(tmp_path / "c", {f"fog/5/{w}": 2 for w in WNIDS})
    deltas = {}
    for setting in ("correlated", "mixed_domains_correlated"):
        cfg = RunConfig(suite="imagenet-c", data_root=str(tmp_path / "c"), corruptions=["fog"], allow_partial=True,
                        setting=setting, teacher="tiny", num_workers=0, device="cpu")
        deltas[setting] = engine.prepare(cfg).stream.params["dirichlet"]
    assert deltas == {"correlated": 0.0, "mixed_domains_correlated": 0.01}
    for family in ("imagenet", "cifar10", "cifar100"):
        for setting in ("correlated", "reset_each_shift_correlated", "gradual_correlated"):
            assert default_dirichlet(family, setting) == 0.0
    assert default_dirichlet("cifar10", "mixed_domains_correlated") == 0.1


def test_delta_zero_plays_each_domain_class_by_class_in_a_shuffled_order_within_a_class():
    """The reference shuffles the domain, then sorts it by label (a stable sort): one class after another, each
    class's samples not in file order; batches hold one class (about)."""
    splits = [_folder_split("a", 60), _folder_split("b", 60)]
    stream = build_stream(splits, "correlated", seed=0)
    for k in (0, 1):
        domain = stream.items[60 * k:60 * (k + 1)]
        labels = [splits[k].source.labels[it.pos] for it in domain]
        assert labels == sorted(labels) and {it.split for it in domain} == {k}
        first_class = [it.pos for it in domain[:20]]
        assert sorted(first_class) == list(range(20)) and first_class != list(range(20))


def test_dry_run_of_correlated_on_cifar10c_reports_delta_zero(tmp_path, capsys):
    root = write_arrays(tmp_path / "cifar10", {"images": image_stack(20)}, [i % 10 for i in range(20)])
    args = ["--suite", "cifar10-c", "--source", "generated", "--data-root", str(root), "--teacher", "tiny",
            "--corruptions", "fog", "--dry-run"]
    assert cli.main([*args, "--setting", "correlated"]) == 0
    assert "class order Dirichlet delta 0 (sorted by class)" in capsys.readouterr().out
    assert cli.main([*args, "--setting", "mixed_domains_correlated"]) == 0
    assert "class order Dirichlet delta 0.1, sorter note" in capsys.readouterr().out


def test_folder_layouts_are_shuffled_by_seed():
    folders = [_folder_split("a", 30), _folder_split("b", 30)]
    first = [it.pos for it in build_stream(folders, "reset_each_shift", seed=0).items]
    assert first[:30] != list(range(30)) and sorted(first[:30]) == list(range(30))
    assert first == [it.pos for it in build_stream(folders, "reset_each_shift", seed=0).items]
    assert first != [it.pos for it in build_stream(folders, "reset_each_shift", seed=1).items]


def test_array_layouts_play_in_the_order_of_the_settings_reference():
    """TENT's and CoTTA's CIFAR-C loaders keep the array order; the unified benchmark shuffles it (get_test_loader).
    Both are named choices; the stream records which one ran."""
    arrays = [_array_split("a", 30), _array_split("b", 30)]
    in_order = [(s, p) for s in range(2) for p in range(30)]
    for setting in ("reset_each_shift", "continual"):
        assert default_array_order(setting) == "keep"
        stream = build_stream(arrays, setting, seed=3)
        assert [(it.split, it.pos) for it in stream.items] == in_order and stream.params["array_order"] == "keep"
        shuffled = build_stream(arrays, setting, seed=3, array_order="shuffle")
        assert [(it.split, it.pos) for it in shuffled.items] != in_order
        assert sorted((it.split, it.pos) for it in shuffled.items) == in_order
        assert shuffled.params["array_order"] == "shuffle"
    for setting in ("gradual", "correlated", "mixed_domains", "mixed_domains_correlated"):
        assert default_array_order(setting) == "shuffle"
    kept = build_stream(arrays, "correlated", seed=3, array_order="keep").items
    assert [it.pos for it in kept[:10]] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]  # class 0 in array order
    assert [it.pos for it in build_stream(arrays, "correlated", seed=3).items[:10]] != [0, 3, 6, 9, 12, 15, 18, 21,
                                                                                         24, 27]
    with pytest.raises(UserError, match="--array-order"):
        build_stream(arrays, "continual", seed=0, array_order="sorted")


def _cifar_suite(tmp_path: Path, n: int, limit: int | None = None, setting: str = "continual"):
    root = write_arrays(tmp_path / "cifar10", {"images": image_stack(n)}, [i % 10 for i in range(n)])
    cfg = RunConfig(suite="cifar10-c", source="generated", data_root=str(root), corruptions=["fog", "snow"],
                    limit=limit, setting=setting, teacher="tiny", num_workers=0, device="cpu")
    return load_suite(cfg), cfg


def test_describe_records_domain_lengths_and_the_measured_label_shift(tmp_path):
    suite, _ = _cifar_suite(tmp_path, 60)
    sorted_by_class = build_stream(suite.splits, "correlated", seed=0).describe(suite, 6)
    assert sorted_by_class["domain_lengths"] == {"fog-5": 60, "snow-5": 60}
    assert sorted_by_class["published_length"] == 10000 == published_length(suite)
    assert sorted_by_class["label_shift"] == {"batch_size": 6, "classes_per_batch": 1.0, "majority_share": 1.0}
    shuffled = build_stream(suite.splits, "continual", seed=0).describe(suite, 6)["label_shift"]
    assert shuffled["classes_per_batch"] > 3.5 and shuffled["majority_share"] < 0.5


def test_limit_warns_for_length_sensitive_settings_only(tmp_path):
    suite, _ = _cifar_suite(tmp_path, 60, limit=20)
    for setting in ("continual", "gradual", "correlated", "mixed_domains_correlated"):
        note = limit_note(setting, 20, suite)
        assert note.startswith(f"--limit 20 caps each domain of this {setting} stream at 20 samples (published: 10,000)")
    assert "label shift" in limit_note("correlated", 20, suite) and "label shift" not in limit_note("continual", 20, suite)
    assert limit_note("reset_each_shift", 20, suite) is None and limit_note("continual", None, suite) is None
    whole, _ = _cifar_suite(tmp_path / "all", 60, limit=60)  # a limit at the clean set's size shortens nothing
    assert limit_note("continual", 60, whole) is None


def test_a_limited_online_run_warns_and_its_row_says_its_domains_are_short(tmp_path):
    root = write_arrays(tmp_path / "cifar10", {"images": image_stack(12)}, [i % 10 for i in range(12)])
    cfg = RunConfig(suite="cifar10-c", source="generated", data_root=str(root), corruptions=["fog", "snow"],
                    limit=8, setting="continual", method="tent", teacher="tiny", num_workers=0, device="cpu",
                    batch_size=4, out=str(tmp_path / "run"))
    lines: list[str] = []
    summary = engine.run(cfg, progress=False, log=lambda *a: lines.append(" ".join(map(str, a))))
    assert any("WARNING: --limit 8 caps each domain of this continual stream" in line for line in lines)
    assert summary["setting"]["domain_lengths"] == {"fog-5": 8, "snow-5": 8}
    assert "short domains: 8 of 10,000" in run_label(summary)
    source = engine.run(RunConfig(**{**cfg.to_dict(), "method": "source", "out": str(tmp_path / "source")}),
                        progress=False, log=lambda *_: None)
    assert "short domains" not in run_label(source)  # a frozen model does not adapt over a domain


def test_stream_hash_is_equal_for_the_same_seed_and_differs_for_another():
    splits = [_folder_split("a", 20), _folder_split("b", 20)]
    same = [build_stream(splits, "continual", seed=0).hash(splits) for _ in range(2)]
    other = build_stream(splits, "continual", seed=1).hash(splits)
    assert same[0] == same[1] != other and len(other) == 64


def test_reset_points_and_batches_follow_the_setting():
    splits = [_folder_split("a", 5), _folder_split("b", 3), _folder_split("c", 4)]
    assert build_stream(splits, "reset_each_shift", seed=0).resets == {0, 5, 8}
    assert build_stream(splits, "continual", seed=0).resets == {0}
    mixed = build_stream(splits, "mixed_domains", seed=0)
    assert mixed.resets == {0} and len({it.split for it in mixed.items[:6]}) > 1
    batches = build_stream(splits, "reset_each_shift", seed=0).batches(4)
    assert batches == [[0, 1, 2, 3], [4], [5, 6, 7], [8, 9, 10, 11]]  # never across a reset


def test_unknown_setting_lists_the_choices():
    with pytest.raises(UserError, match="unknown setting 'iid'; expected one of: continual, correlated, gradual"):
        build_stream([_folder_split("a", 2)], "iid", seed=0)


@needs_shared
def test_bn_adaptation_suffers_on_a_class_correlated_stream(tmp_path):
    """The reference's known pattern (ResNet-20, CIFAR-C gaussian noise 5): BN adaptation 50.9% shuffled vs 17.4%
    on a Dirichlet(0.01) class-correlated stream. Test-batch statistics of one class are not the domain's."""
    def run(setting: str) -> float:
        cfg = RunConfig(suite="cifar10-c", source="generated", data_root=str(SHARED / "cifar10-test-jpeg"),
                        teacher="cifar-resnet20", weights=str(SHARED / "weights" / "resnet20-12fca82f.th"),
                        method="bn_adapt", corruptions=["gaussian_noise"], limit=1000, setting=setting,
                        dirichlet=0.01, batch_size=64, num_workers=0, device="cpu", out=str(tmp_path / setting))
        return engine.run(cfg, progress=False, log=lambda *_: None)["mean_top1"]

    shuffled, correlated = run("reset_each_shift"), run("correlated")
    assert shuffled > 40.0
    assert correlated < shuffled - 15.0


def test_online_method_over_one_sequential_stream_refuses_to_shard(tmp_path, tiny_config):
    write_images(tmp_path / "val", {w: 2 for w in WNIDS}, size=8)
    cfg = tiny_config(suite="imagenet", data_root=str(tmp_path / "val"), allow_partial=True, setting="continual")
    p = engine.prepare(cfg)
    with pytest.raises(UserError, match="cannot be split over processes"):
        batches_of_rank(p.stream, 4, per_sample=False, rank=0, world=2, method="online")


def test_episodic_shards_partition_the_stream(tmp_path, tiny_config):
    write_images(tmp_path / "val", {w: 5 for w in WNIDS}, size=8)
    p = engine.prepare(tiny_config(suite="imagenet", data_root=str(tmp_path / "val"), allow_partial=True))
    for world in (1, 2, 3, 4):
        shards = [[i for b in batches_of_rank(p.stream, 2, True, r, world, "per-sample") for i in b]
                  for r in range(world)]
        flat = sorted(i for s in shards for i in s)
        assert flat == list(range(len(p.stream.items)))
