"""Sweeps: grid expansion, validation, sharding, skip-and-resume, dry run, tables of a sweep folder, reproduce."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tta_bench import cli, engine, sweep
from tta_bench.records import default_out
from tta_bench.errors import UserError
from tta_bench.records import SUMMARY

# A 2-run grid on the offline demo suite: 1 photo, 1 corruption, the random tiny CNN (about a second per run).
DEMO_BASE = {"suite": "demo", "teacher": "tiny", "limit": 1, "corruptions": ["gaussian_noise"], "num_workers": 0,
             "device": "cpu", "batch_size": 1}
DEMO = {"name": "demo-seeds", "base": DEMO_BASE, "grid": {"method": ["source"], "seed": [0, 1]}}
PUBLISHED_HEADER = "method,backbone,suite,split,metric,value,source,verified,note\n"


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def count_engine_runs(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    monkeypatch.setattr(engine, "run", lambda cfg, **_: calls.append(cfg) or {})  # the asserts on `calls` decide
    return calls


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sweep file, sweep folder) after running the 2-run demo sweep once."""
    root = tmp_path_factory.mktemp("sweep")
    path = write_yaml(root / "demo.yaml", DEMO)
    assert sweep.sweep_command(str(path), out=str(root / "out"), progress=False) == 0
    return path, root / "out"


def test_expand_orders_the_grid_and_applies_overrides_and_exclude(tmp_path: Path) -> None:
    s = sweep.parse_sweep({
        "name": "g",
        "base": {"limit": 5, "method_options": {"lr": 0.5}},
        "grid": {"suite": ["demo", "cifar10-c"], "method": ["source", "tent", "not-registered-yet"], "seed": [0, 1]},
        "overrides": [{"match": {"method": "tent"}, "set": {"batch_size": 200}},
                      {"match": {"method": "not-registered-yet"}, "set": {"method_options": {"steps": 25}}}],
        "exclude": [{"suite": "cifar10-c", "seed": 1}],
    })
    runs = sweep.expand(s, tmp_path)
    cells = [tuple(r.cell.values()) for r in runs]
    assert cells[:3] == [("demo", "source", 0), ("demo", "source", 1), ("demo", "tent", 0)]  # last axis fastest
    assert len(runs) == 2 * 3 * 2 - 3 and not any(c[0] == "cifar10-c" and c[2] == 1 for c in cells)
    assert [r.index for r in runs] == list(range(len(runs)))
    by_method = {r.cfg.method: r.cfg for r in runs}
    assert by_method["tent"].batch_size == 200 and by_method["source"].batch_size is None  # None: the table's
    assert by_method["not-registered-yet"].method_options == {"lr": 0.5, "steps": 25}  # merged, not replaced
    assert by_method["source"].method_options == {"lr": 0.5} and all(r.cfg.limit == 5 for r in runs)
    outs = [Path(r.cfg.out) for r in runs]
    assert len(set(outs)) == len(runs) and all(o.parent == tmp_path for o in outs)
    assert all(o.name == default_out(r.cfg).name for o, r in zip(outs, runs))
    # command-line --set wins over everything; cells that become identical are one run
    assert len(sweep.expand(s, tmp_path, {"seed": 3})) == 2 * 3


def test_data_roots_per_suite_and_reproduce_parent_folder(tmp_path: Path) -> None:
    s = sweep.parse_sweep({"name": "r", "base": {"data_root": "/x", "data_roots": {"imagenet-a": "/a"}},
                           "grid": {"suite": ["imagenet", "imagenet-a"]}})
    assert [r.cfg.data_root for r in sweep.expand(s, tmp_path)] == ["/x", "/a"]
    (tmp_path / "ImageNet-A").mkdir()
    (tmp_path / "single").mkdir()
    assert sweep.roots_under(tmp_path, ["imagenet", "imagenet-a"]) == {
        "imagenet": str(tmp_path / "imagenet"), "imagenet-a": str(tmp_path / "ImageNet-A")}
    assert sweep.roots_under(tmp_path / "single", ["imagenet-c"]) == {"imagenet-c": str(tmp_path / "single")}


@pytest.mark.parametrize("data, bad", [
    ({"name": "b", "grid": {"methd": ["source"]}}, "'methd' in grid"),
    ({"name": "b", "base": {"btach_size": 3}}, "'btach_size' in base"),
    ({"name": "b", "base": {"out": "x"}}, "'out' in base"),
    ({"name": "b", "overrides": [{"match": {"method": "tent"}, "set": {"lrr": 1}}]}, "'lrr' in overrides[0].set"),
    ({"name": "b", "grids": {}}, "'grids' in the top level"),
    ({"name": "b", "grid": {"seed": 0}}, "grid.seed must be a non-empty list"),
    ({"grid": {"seed": [0]}}, "'name'"),
])
def test_bad_keys_name_the_key_and_the_file(tmp_path: Path, data: dict, bad: str) -> None:
    path = write_yaml(tmp_path / "bad.yaml", data)
    with pytest.raises(UserError) as error:
        sweep.load_sweep(path)
    assert bad in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("n_runs", [0, 1, 7, 12])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 13])
def test_shards_cover_the_grid_once(n_runs: int, count: int) -> None:
    runs = list(range(n_runs))
    shards = [sweep.shard(runs, i, count) for i in range(count)]
    assert sorted(x for s in shards for x in s) == runs
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced


def test_shard_spec_from_flag_or_slurm() -> None:
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert sweep.parse_shard(None, {}) == (0, 1)
    assert sweep.parse_shard(None, slurm) == (3, 4)
    assert sweep.parse_shard(None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4",
                                    "SLURM_ARRAY_TASK_MIN": "1"}) == (3, 4)  # --array=1-4
    assert sweep.parse_shard("1/2", slurm) == (1, 2)  # the flag wins
    for text in ("1", "a/b", "-1/2"):
        with pytest.raises(UserError, match="I/N"):
            sweep.parse_shard(text, {})
    with pytest.raises(UserError, match="0 <= I < N"):
        sweep.shard([1, 2], 2, 2)


def test_rerun_skips_finished_runs_and_resumes_the_rest(finished, tmp_path: Path, monkeypatch) -> None:
    path, out = finished
    runs = sweep.expand(sweep.load_sweep(path), out)
    assert len(runs) == 2 and {sweep.status(r) for r in runs} == {sweep.DONE}
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    calls = count_engine_runs(monkeypatch)
    result = sweep.run_sweep(runs, progress=False, log=lambda _: None)
    assert calls == [] and (result.ran, result.reused, len(result.summaries)) == (0, 2, 2)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes
    # an interrupted run (no summary) is run again, the finished one is not
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    runs = sweep.expand(sweep.load_sweep(path), copy)
    (Path(runs[1].cfg.out) / SUMMARY).unlink()
    assert [sweep.status(r) for r in runs] == [sweep.DONE, sweep.PARTIAL]
    monkeypatch.undo()
    result = sweep.run_sweep(runs, progress=False, log=lambda _: None)
    assert (result.ran, result.reused) == (1, 1) and [s["seed"] for s in result.summaries] == [0, 1]


def test_a_failing_run_does_not_stop_the_sweep(tmp_path: Path, capsys) -> None:
    data = {**DEMO, "grid": {"method": ["no-such-method", "source"]}}
    path = write_yaml(tmp_path / "s.yaml", data)
    assert sweep.sweep_command(str(path), out=str(tmp_path / "out"), progress=False) == 1
    text = capsys.readouterr().out
    assert "1 run(s) run, 0 reused, 1 failed" in text and "unknown method 'no-such-method'" in text


def test_dry_run_lists_runs_status_and_cost_without_running(finished, tmp_path: Path, monkeypatch, capsys) -> None:
    path, out = finished
    calls, built = count_engine_runs(monkeypatch), []
    monkeypatch.setattr("tta_bench.teachers.build_teacher", lambda *a, **k: built.append(a))
    data = {**DEMO, "grid": {"method": ["source", "not-registered-yet"], "seed": [0, 1]}}
    wider = write_yaml(tmp_path / "wider.yaml", data)
    assert cli.main(["sweep", str(wider), "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line[:1].isdigit() and "seed=" in line]
    assert len(lines) == 4 and calls == [] and built == []
    assert [line.split()[1] for line in lines] == ["done", "done", "todo", "todo"]
    assert "unknown method 'not-registered-yet'" in lines[2]
    assert lines[0].split()[4:7] == ["1", "0", "1"]  # samples, steps, sample-steps
    assert "4 of 4 runs in this shard, 2 finished" in text
    assert cli.main(["sweep", str(path), "--dry-run", "--out", str(out), "--shard", "1/2"]) == 0
    assert "1 of 2 runs in this shard" in capsys.readouterr().out


def test_table_of_a_sweep_folder_shows_its_runs(finished, capsys) -> None:
    _, out = finished
    assert cli.main(["table", str(out)]) == 0
    text = capsys.readouterr().out
    assert "gaussian_noise-5" in text and "source (tiny) [generated from 4 images, limit-1] (n=2 seeds)" in text


def test_reproduce_runs_what_is_missing_then_prints_the_differences(finished, tmp_path: Path, monkeypatch,
                                                                     capsys) -> None:
    path, out = finished
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    data = {**DEMO, "published": [{"match": {"method": "source"}, "method": "source", "backbone": "tiny"}]}
    table = write_yaml(tmp_path / "table.yaml", data)
    published = tmp_path / "published.csv"
    published.write_text(PUBLISHED_HEADER + "source,tiny,demo,gaussian_noise-5,top1,40.0,paper,true,\n"
                         "source,tiny,demo,mean,error,50.0,paper,true,\nother,x,demo,mean,top1,1.0,paper,true,\n")
    runs = sweep.expand(sweep.load_sweep(table), copy)
    shutil.rmtree(runs[0].cfg.out)
    args = dict(out=str(copy), progress=False, published_path=str(published))
    assert sweep.reproduce_command(str(table), **args) == 0  # runs the missing one
    first = capsys.readouterr().out
    top1 = [json.loads((Path(r.cfg.out) / SUMMARY).read_text())["splits"]["gaussian_noise-5"]["top1"] for r in runs]
    mean = sum(top1) / 2
    calls = count_engine_runs(monkeypatch)
    assert sweep.reproduce_command(str(table), **args) == 0
    second = capsys.readouterr().out
    assert calls == [] and second[second.index("## "):] == first[first.index("## "):]  # nothing recomputed
    assert "source (tiny) [published: paper]" in second and "other (x)" not in second
    delta = next(line for line in second.splitlines() if " vs source (tiny) [paper]" in line)
    assert [c.strip() for c in delta.split("|")[2:4]] == [f"{mean - 40:+.1f}", f"{mean - 50:+.1f}"]


def test_named_sweeps_load_and_expand(tmp_path: Path) -> None:
    assert {"tpt-table1", "apm-table2-imagenet-c", "tent-cifar10c"} <= set(sweep.sweep_names())
    sizes = {name: len(sweep.expand(sweep.named_sweep(name), tmp_path)) for name in sweep.sweep_names()}
    assert sizes["tpt-table1"] == 15 and sizes["apm-table2-imagenet-c"] == 2 and sizes["tent-cifar10c"] == 3
    assert sizes["tpt-table2"] == 40  # 10 fine-grained suites x (CLIP single, CLIP ensemble, TPT, APM)
    with pytest.raises(UserError, match="tpt-table1"):
        sweep.named_sweep("no-such-table")


def test_tpt_table2_compares_zero_shot_and_tpt_rows_with_the_papers_table_2() -> None:
    from report.conftest import make_summary, split
    from tta_bench.report import load_published

    table = sweep.named_sweep("tpt-table2")
    runs = sweep.expand(table, "/tmp/unused")
    assert {run.cfg.suite for run in runs} == {"flowers102", "dtd", "pets", "cars", "ucf101", "caltech101",
                                               "food101", "sun397", "aircraft", "eurosat"}
    assert all(run.cfg.method_options == {"preset": "paper"} for run in runs if run.cfg.method == "apm")
    summaries = [make_summary(f"zs-{suite}", "source", "clip:ViT-B-16/openai", {suite: split(value)}, suite=suite)
                 for suite, value in (("pets", 90.25), ("eurosat", 40.0))]
    for summary in summaries:  # run with the default prompts: the summary names the ones the method used
        summary["prompts"] = {"spec": "single", "sha256": None}
    delta = sweep.delta_table(table, summaries, load_published())
    row = delta.loc["source (clip:ViT-B-16/openai) vs clip-zeroshot (clip-vit-b16) [TPT (Shu et al. NeurIPS 2022) Table 2]"]
    assert (row["pets"], row["eurosat"]) == ("+2.0", "-2.0")  # published 88.25 and 42.01
    text = sweep.reproduction_text(table, summaries, load_published())
    assert "tpt (clip-vit-b16) [published, unverified: TPT (Shu et al. NeurIPS 2022) Table 2]" in text
    assert "apm (unknown) [published, unverified: aggregator sites]" in text


def test_reproduce_finds_each_suite_under_its_usual_folder_name(tmp_path: Path) -> None:
    for name in ("oxford_flowers", "DTD", "caltech-101"):
        (tmp_path / name).mkdir()
    roots = sweep.roots_under(tmp_path, ["flowers102", "dtd", "caltech101", "eurosat"])
    assert roots == {"flowers102": str(tmp_path / "oxford_flowers"), "dtd": str(tmp_path / "DTD"),
                     "caltech101": str(tmp_path / "caltech-101"), "eurosat": str(tmp_path / "eurosat")}


def test_unified_cifar10c_lists_three_settings_by_eight_methods_at_the_benchmarks_protocol(tmp_path, capsys) -> None:
    """The unified benchmark's CIFAR10-C tables: continual, mixed_domains, correlated x the eight methods both have,
    seeds 1-5 (one seed: --set seed=1), severity 5, the 15 corruptions in order, shuffled arrays, no --limit."""
    table = sweep.named_sweep("unified-cifar10c")
    runs = sweep.expand(table, tmp_path)
    assert len(runs) == 3 * 8 * 5 and {run.cfg.seed for run in runs} == {1, 2, 3, 4, 5}
    one_seed = sweep.expand(table, tmp_path, {"seed": 1})
    assert [(run.cfg.setting, run.cfg.method) for run in one_seed] == [
        (setting, method) for setting in ("continual", "mixed_domains", "correlated")
        for method in ("source", "bn_adapt", "tent", "eata", "sar", "cotta", "rotta", "lame")]
    for run in one_seed:
        cfg = run.cfg
        assert (cfg.severities, cfg.limit, cfg.array_order, cfg.dirichlet) == ([5], None, "shuffle", None)
        assert cfg.corruptions[0] == "gaussian_noise" and len(cfg.corruptions) == 15
        assert cfg.batch_size == (200 if cfg.method == "rotta" else None)  # cfgs/cifar10_c/rotta.yaml: 200


def _unified_summary(setting: str, method: str, error: float, seed: int = 1) -> dict:
    from report.conftest import make_summary, split

    summary = make_summary(f"{setting}-{method}-{seed}", method, "cifar-resnet20",
                           {"gaussian_noise-5": split(100 - error - 1), "fog-5": split(100 - error + 1)},
                           suite="cifar10-c", seed=seed)
    summary["config"]["setting"] = summary["setting"]["name"] = setting
    return summary


def test_unified_cifar10c_ranks_the_methods_per_setting_and_correlates_with_benchmark_md() -> None:
    """Per setting: our mean error and rank beside the published ones, and Spearman's rho of the two orderings
    (scipy.stats.spearmanr); the published row of each setting is its own (mean-<setting>), never TENT's README."""
    from tta_bench.report import load_published

    table, published = sweep.named_sweep("unified-cifar10c"), load_published()
    ours = {"source": 50.0, "bn_adapt": 30.0, "tent": 28.0, "lame": 70.0}  # published continual: 43.5 20.4 20.0 64.3
    summaries = [_unified_summary("continual", m, e) for m, e in ours.items()]
    summaries += [_unified_summary("continual", "tent", 30.0, seed=2)]  # tent: 28 and 30 over two seeds -> 29
    summaries += [_unified_summary("correlated", m, e) for m, e in {"source": 40.0, "tent": 30.0, "lame": 50.0}.items()]
    cells = sweep.paper.ranking_cells(table, summaries, published)["cifar-resnet20"]
    assert cells["continual"]["tent"].ours == [28.0, 30.0] and cells["continual"]["tent"].theirs == 20.0
    assert cells["correlated"]["lame"].theirs == 11.3 and cells["correlated"]["lame"].published_as == \
        "lame (resnet-26-gn)"
    text = sweep.paper.ranking_text(table, summaries, published)
    assert "continual: Spearman rho = +1.00 over 4 methods" in text  # the same order: tent, bn_adapt, source, lame
    assert "correlated: Spearman rho = -1.00 over 3 methods" in text  # published lame 11.3 < source 32.7 < tent 87.6
    assert "29.0 ± 1.4 (1)" in text and "64.3 (4)" in text
    delta = sweep.delta_table(table, summaries, published)
    assert list(delta.columns) == ["mean"] and not any("TENT repository README" in label for label in delta.index)
    assert sweep.paper.spearman([1, 2, 3, 4], [1, 2, 4, 3])[0] == pytest.approx(0.8)


def test_a_ranking_where_every_method_ties_has_no_correlation() -> None:
    from tta_bench.report import load_published

    table = sweep.named_sweep("unified-cifar10c")
    summaries = [_unified_summary("continual", m, 40.0) for m in ("source", "tent")]
    assert "continual: every method ties in one of the orderings; no rank correlation" in \
        sweep.paper.ranking_text(table, summaries, load_published())


@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs", "a/b", "..", ".hidden", ""])
def test_a_sweep_name_is_a_plain_folder_name(tmp_path: Path, monkeypatch, capsys, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_yaml(tmp_path / "s.yaml", {**DEMO, "name": name})
    assert cli.main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: 'name' (the sweep's folder under results/sweeps) must be a plain folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


@pytest.mark.parametrize("env, phrase", [
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_ID='x' is not a task number"),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": ""}, "SLURM_ARRAY_TASK_COUNT='' is not a task number"),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "one"},
     "SLURM_ARRAY_TASK_MIN='one' is not a task number"),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4"}, "shard 5/4: expected I/N with 0 <= I < N"),
])
def test_bad_slurm_variables_stop_in_one_line(tmp_path: Path, monkeypatch, capsys, env, phrase) -> None:
    path = write_yaml(tmp_path / "s.yaml", DEMO)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert phrase in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("shard, phrase", [("1", "--shard expects I/N"), ("a/b", "--shard expects I/N"),
                                           ("1/0", "shard 1/0: expected I/N with 0 <= I < N"),
                                           ("2/2", "shard 2/2"), ("1/2/3", "--shard expects I/N")])
def test_bad_shards_stop_in_one_line(tmp_path: Path, capsys, shard: str, phrase: str) -> None:
    path = write_yaml(tmp_path / "s.yaml", DEMO)
    assert cli.main(["sweep", str(path), "--dry-run", "--shard", shard]) == 2
    err = capsys.readouterr().err
    assert phrase in err and len(err.strip().splitlines()) == 1


def test_sweep_files_are_read_as_safely_as_run_files(tmp_path: Path) -> None:
    from test_runconfig_file import BOMB

    (tmp_path / "dup.yaml").write_text("name: a\nname: b\n")
    with pytest.raises(UserError, match=r"dup.yaml: duplicate key 'name' \(line 2\)"):
        sweep.load_sweep(tmp_path / "dup.yaml")
    (tmp_path / "bomb.yaml").write_text(BOMB.replace("suite: *i", "name: bomb\nbase: {method_options: {x: *i}}"))
    with pytest.raises(UserError, match="expands to more than"):
        sweep.load_sweep(tmp_path / "bomb.yaml")
    with pytest.raises(UserError, match="--set: duplicate key 'a'"):
        sweep.parse_sets(["method_options={a: 1, a: 2}"])


def test_a_run_with_bad_method_options_fails_alone_before_writing(tmp_path: Path, capsys) -> None:
    data = {**DEMO, "grid": {"method": ["tent", "source"]}, "overrides": [
        {"match": {"method": "tent"}, "set": {"method_options": {"steps": 1.5}}}]}
    path = write_yaml(tmp_path / "s.yaml", data)
    assert sweep.sweep_command(str(path), out=str(tmp_path / "out"), progress=False) == 1
    assert "--steps must be an integer, got 1.5" in capsys.readouterr().out
    assert len(list((tmp_path / "out").iterdir())) == 1  # the source run's folder only
