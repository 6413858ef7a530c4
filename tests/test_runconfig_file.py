"""Run files (--config): the RunConfig fields in YAML, command-line options on top, a recorded config.json rerun
exactly, one schema with the sweep file's cells, and the shipped examples."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import image_stack, write_arrays
from tta_bench import cli, engine, sweep
from tta_bench.config import RunConfig
from tta_bench.errors import UserError
from tta_bench.runconfig_file import config_from_file, read_run_file
from tta_bench.vocabulary import CONFIG, SUMMARY

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TINY = {"suite": "demo", "teacher": "tiny", "limit": 1, "corruptions": ["fog"], "num_workers": 0,
        "device": "cpu", "batch_size": 1}


def _file(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _cli_config(argv: list[str]) -> RunConfig:
    """The configuration `run_bench.py ARGV` would run (what cmd_run builds)."""
    return cli.run_config(argv)[0]


def test_file_fields_with_typed_options_on_top(tmp_path):
    path = _file(tmp_path / "run.yaml", {**TINY, "seed": 3, "method": "tent", "method_options": {"steps": 2}})
    cfg = _cli_config(["--config", str(path), "--lr", "0.5", "--workers", "1", "--opt", "optimizer=adam"])
    assert (cfg.suite, cfg.teacher, cfg.seed, cfg.method, cfg.limit) == ("demo", "tiny", 3, "tent", 1)
    assert cfg.num_workers == 1  # typed: wins over the file
    assert cfg.method_options == {"steps": 2, "lr": 0.5, "optimizer": "adam"}  # merged key by key
    # an option typed with its default value still overrides the file; options not typed leave the file alone
    cfg = _cli_config(["--config", str(path), "--seed", "0"])
    assert cfg.seed == 0 and cfg.method == "tent" and cfg.batch_size == 1


def test_a_files_flags_can_be_turned_off_on_the_command_line(tmp_path):
    path = _file(tmp_path / "run.yaml", {**TINY, "save_logits": True, "allow_partial": True})
    assert _cli_config(["--config", str(path)]).save_logits
    cfg = _cli_config(["--config", str(path), "--no-save-logits"])
    assert not cfg.save_logits and cfg.allow_partial


def test_unknown_keys_fail_with_the_field_a_cli_spelling_means(tmp_path, capsys):
    path = _file(tmp_path / "run.yaml", {"suite": "demo", "workers": 2, "steps": 5})
    with pytest.raises(UserError) as error:
        read_run_file(path)
    message = str(error.value)
    assert "unknown key(s) 'steps', 'workers'" in message
    assert "'workers' is num_workers" in message and "'steps' is method_options: {steps: ...}" in message
    assert cli.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read run file" in capsys.readouterr().err
    (tmp_path / "list.yaml").write_text("- suite\n")
    with pytest.raises(UserError, match="expected a mapping of RunConfig fields"):
        read_run_file(tmp_path / "list.yaml")


def test_a_recorded_config_json_reruns_the_run_exactly(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = ["--suite", "demo", "--teacher", "tiny", "--limit", "1", "--corruptions", "fog", "--workers", "0",
            "--device", "cpu", "--no-progress", "--out", str(out), "--seed", "4"]
    assert cli.main(argv) == 0
    first = json.loads((out / SUMMARY).read_text())
    recorded = config_from_file(out / CONFIG)
    assert recorded == RunConfig.from_dict(json.loads((out / CONFIG).read_text())) and recorded.seed == 4
    assert config_from_file(out) == recorded  # the run folder itself names its config.json
    calls = []
    real = engine._loop
    monkeypatch.setattr(engine, "_loop", lambda *a, **k: calls.append(1) or real(*a, **k))
    capsys.readouterr()
    assert cli.main(["--config", str(out / CONFIG), "--no-progress"]) == 0
    assert calls == [] and "is complete; reusing its summary" in capsys.readouterr().out
    assert json.loads((out / SUMMARY).read_text()) == first
    # the same file from another folder (a colleague's checkout): the same configuration, another run folder
    other = _cli_config(["--config", str(out / CONFIG), "--out", str(tmp_path / "again")])
    assert other.identity() == recorded.identity() and other.out == str(tmp_path / "again")


def test_run_file_and_sweep_cells_are_one_schema():
    run_file = read_run_file(EXAMPLES / "run.yaml")
    as_sweep = sweep.parse_sweep({"name": "one", "base": run_file, "grid": {"seed": [run_file["seed"]]}})
    (only,) = sweep.expand(as_sweep, "/tmp/sweep-out")
    assert only.cfg.identity() == config_from_file(EXAMPLES / "run.yaml").identity()
    with pytest.raises(UserError, match="'workers' is num_workers"):  # the same checks, the same hints
        sweep.parse_sweep({"name": "bad", "base": {"workers": 1}})


def test_the_shipped_examples_are_valid(tmp_path):
    """The examples adapt ResNet-20 on CIFAR-10-C at the paper's batch size (here on a stand-in for the fetched
    test set: the runs themselves are tests/test_readme.py's)."""
    clean = write_arrays(tmp_path / "cifar10", {"images": image_stack(12)}, [i % 10 for i in range(12)])
    cfg = config_from_file(EXAMPLES / "run.yaml", {"data_root": str(clean)})
    plan = engine.plan(engine.prepare(cfg))  # the data side of the run: suite, corruptions, stream
    assert "suite cifar10-c (generated, limit-300)" in plan and "batch size 200" in plan and "too small" not in plan
    assert (cfg.method, cfg.teacher, cfg.weights) == ("tent", "cifar-resnet20", None)  # weights: the release file
    runs = sweep.expand(sweep.load_sweep(EXAMPLES / "sweep.yaml"), "/tmp/sweep-out")
    assert [(r.cfg.method, r.cfg.seed) for r in runs] == [("source", 0), ("bn_adapt", 0), ("tent", 0)]
    assert {(r.cfg.suite, r.cfg.source, r.cfg.limit, r.cfg.batch_size) for r in runs} == {
        ("cifar10-c", "generated", 300, None)}


def test_data_folders_become_absolute(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig.build({"suite": "imagenet", "data_root": "data", "source_data": "absent"})
    assert cfg.data_root == str(tmp_path / "data") and os.path.isabs(cfg.data_root)
    assert cfg.source_data == "absent"  # not a folder here (a Hub id, or a typo the data loader reports)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi")) + "suite: *i\n"


def test_an_alias_bomb_is_refused_at_once(tmp_path, capsys):
    """500 bytes that stand for 9**9 strings: refused while reading, before anything expands them."""
    assert len(BOMB) < 600
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(UserError, match="expands to more than 100,000 values"):
        read_run_file(path)
    assert cli.main(["--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: the document expands") and len(err.strip().splitlines()) == 1
    (tmp_path / "self.yaml").write_text("method_options: &m {x: *m}\n")
    with pytest.raises(UserError, match="refers to a node that contains it"):
        read_run_file(tmp_path / "self.yaml")


def test_anchors_used_sparingly_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("corruptions: &c [fog, contrast]\nmethod_options: {steps: 1}\n")
    assert read_run_file(path)["corruptions"] == ["fog", "contrast"]


@pytest.mark.parametrize("name, text, phrase", [
    ("dup.yaml", "suite: demo\nseed: 1\nseed: 2\n", "duplicate key 'seed' (line 3)"),
    ("dup.yaml", "method_options:\n  steps: 1\n  steps: 2\n", "duplicate key 'steps' (line 3)"),
    ("dup.json", '{"seed": 1, "suite": "demo", "seed": 2}', "duplicate key(s) 'seed'"),
])
def test_duplicate_keys_are_refused_naming_the_key_and_file(tmp_path, capsys, name, text, phrase):
    path = tmp_path / name
    path.write_text(text)
    assert cli.main(["--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: ") and phrase in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("options, phrase", [
    ({"steps": 1.5}, "--steps must be an integer, got 1.5"),
    ({"lr": "fast"}, "--lr must be a number, got 'fast'"),
    ({"nonsense": 1}, "method tent has no option(s) ['nonsense']"),
])
def test_method_options_in_a_run_file_are_typed_as_on_the_command_line(tmp_path, capsys, options, phrase):
    path = _file(tmp_path / "run.yaml", {**TINY, "method": "tent", "method_options": options,
                                         "out": str(tmp_path / "run")})
    for extra in ([], ["--dry-run"]):
        assert cli.main(["--config", str(path), *extra]) == 2
        assert phrase in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_run_file_values_are_typed_naming_the_file(tmp_path, capsys):
    path = _file(tmp_path / "run.yaml", {**TINY, "seed": "x"})
    assert cli.main(["--config", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {path}: seed must be an integer, got 'x'"
    path = _file(tmp_path / "run.yaml", {**TINY, "corruptions": "fog,contrast", "seed": "2"})
    cfg = _cli_config(["--config", str(path)])
    assert cfg.corruptions == ["fog", "contrast"] and cfg.seed == 2
    assert _cli_config(["--config", str(path), "--domains", "snow"]).corruptions == ["snow"]


def test_command_line_spellings_in_a_file_are_explained(tmp_path):
    path = _file(tmp_path / "run.yaml", {"domains": ["real"], "apm_preset": "paper", "opt": {}, "dry_run": True})
    with pytest.raises(UserError) as error:
        read_run_file(path)
    message = str(error.value)
    assert "'domains' is corruptions" in message and "'apm_preset' is method_options: {preset: ...}" in message
    assert "'opt' is method_options: {KEY: VALUE}" in message and "'dry_run' is a command-line option" in message
