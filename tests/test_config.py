"""RunConfig: one declaration per option (field + metadata), one conversion for every source of values, one check
(validate), strict JSON, and run-folder names that do not move."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tta_bench.config import RunConfig, convert, hints
from tta_bench.records import default_out
from tta_bench.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


# -- run-folder names -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg, name", [
    (RunConfig(), "demo-source-effnet-lite0-seed0-6d87995f"),
    (RunConfig(suite="cifar10-c", method="tent", teacher="cifar-resnet20", weights="/w/resnet20.th",
               data_root="/data/CIFAR-10-C", corruptions=["fog", "contrast"], severities=[5], seed=3, batch_size=200,
               method_options={"lr": 0.001, "steps": 1}), "cifar10-c-tent-cifar-resnet20-seed3-c2929fe9"),
    (RunConfig(suite="imagenet-c", method="apm", teacher="clip:ViT-L-14/openai", setting="continual", limit=100,
               method_options={"preset": "paper"}, dirichlet=0.01, num_workers=4, device="cuda", save_logits=True),
     "imagenet-c-apm-clip-ViT-L-14-openai-seed0-30d84b64"),
])
def test_run_folder_names_are_those_of_earlier_versions(cfg, name):
    """The names computed by the version before the configuration was declared from field metadata."""
    assert default_out(cfg).name == name


def test_a_field_added_later_renames_no_run_folder_while_at_its_default():
    @dataclasses.dataclass
    class Later(RunConfig):
        shiny: int = 0

    base = RunConfig(suite="demo", seed=2)
    assert Later(suite="demo", seed=2).identity() == base.identity()
    assert Later(suite="demo", seed=2, shiny=1).identity() == {**base.identity(), "shiny": 1}


# -- conversion -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, expected", [
    ("seed", "1", 1), ("batch_size", "16", 16), ("batch_size", None, None), ("dirichlet", 1, 1.0),
    ("dirichlet", "0.5", 0.5), ("corruptions", "fog,contrast", ["fog", "contrast"]), ("corruptions", "fog", ["fog"]),
    ("severities", "3, 5", [3, 5]), ("severities", 5, [5]), ("save_logits", "true", True), ("overwrite", "no", False),
    ("source", "hub", "hub"), ("method_options", {"steps": 2}, {"steps": 2}),
])
def test_values_are_converted_to_their_fields_type(field, value, expected):
    converted = RunConfig.build({field: value})
    assert getattr(converted, field) == expected
    assert type(getattr(converted, field)) is type(expected)


@pytest.mark.parametrize("field, value, words", [
    ("seed", 1.5, "seed must be an integer, got 1.5"),
    ("seed", "x", "seed must be an integer, got 'x'"),
    ("batch_size", True, "batch_size must be an integer, got True"),
    ("severities", "5,x", "severities must be a list of integers"),
    ("method_options", ["steps", 1], "method_options must be a mapping, got ['steps', 1]"),
    ("source", "disk", "source must be one of published, hub, generated, got 'disk'"),
    ("setting", "iid", "setting must be one of reset_each_shift, continual"),
    ("suite", 3, "suite must be a string, got 3"),
    ("allow_partial", "maybe", "allow_partial must be true or false"),
])
def test_values_of_the_wrong_type_are_refused_naming_the_field(field, value, words):
    with pytest.raises(UserError, match="^where: ") as error:
        RunConfig.build({field: value}, "where")
    assert words in str(error.value)


def test_unknown_fields_are_refused():
    with pytest.raises(UserError, match="unknown field.*'nonsense'"):
        RunConfig.build({"nonsense": 1})


def test_conversion_of_unions_keeps_a_member_and_converts_text():
    assert convert(bool | str, "auto", "x") == "auto" and convert(bool | str, True, "x") is True
    assert convert(int | None, "7", "x") == 7 and convert(int | None, None, "x") is None
    assert convert(tuple[int, ...], "1,2", "x") == (1, 2)
    with pytest.raises(UserError, match="x must be an integer, got 'seven'"):
        convert(int | None, "seven", "x")


# -- validation -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, words", [
    ({"seed": -1}, "--seed must be >= 0, got -1"),
    ({"seed": "1"}, "--seed must be an integer, got '1'"),
    ({"batch_size": 0}, "--batch-size must be >= 1, got 0"),
    ({"limit": 0}, "--limit must be >= 1, got 0"),
    ({"num_workers": -1}, "--workers must be >= 0, got -1"),
    ({"dirichlet": math.nan}, "--dirichlet must be a finite number >= 0, got nan"),
    ({"record_steps": [3, -1]}, "--record-steps entries must be >= 0, got [3, -1]"),
    ({"corruptions": ["fog", "fog"]}, "--corruptions/--domains lists fog more than once (fog,fog)"),
    ({"severities": [5, 3, 5]}, "--severities lists 5 more than once"),
    ({"precision": "fp16"}, "--precision must be one of auto, fp32, bf16, got 'fp16'"),
    ({"device": "tpu"}, "--device must be one of auto, cpu, cuda"),
    ({"on_error": "ignore"}, "--on-error must be one of stop, skip"),
    ({"sorter": "x"}, "--sorter must be one of note, rotta"),
    ({"label_index": "x"}, "--label-index must be one of imagenet1k, suite"),
    ({"setting": "iid"}, "--setting must be one of reset_each_shift"),
    ({"weights": "/no/such/w.th"}, "--weights /no/such/w.th does not exist"),
    ({"head": "/no/such/head.pt"}, "--head /no/such/head.pt does not exist"),
    ({"source_data": "/no/such/folder"}, "--source-data /no/such/folder does not exist or is not a folder"),
    ({"prompts": "/no/such/prompts.txt"}, "--prompts /no/such/prompts.txt does not exist"),
    ({"method_options": ["steps"]}, "method_options must be a mapping"),
])
def test_validate_covers_every_field(changes, words):
    with pytest.raises(UserError) as error:
        RunConfig(**changes).validate()
    assert words in str(error.value)


def test_validate_names_fields_by_flag_or_by_name_and_lists_every_problem():
    cfg = RunConfig(seed=-1, num_workers=-2)
    with pytest.raises(UserError, match=r"^--seed must be >= 0, got -1; --workers must be >= 0, got -2$"):
        cfg.validate()
    with pytest.raises(UserError, match=r"^seed must be >= 0, got -1; num_workers must be >= 0, got -2$"):
        cfg.validate("fields")


def test_named_prompt_sets_and_existing_files_pass(tmp_path):
    (tmp_path / "p.txt").write_text("a photo of a {}.\n")
    RunConfig(prompts="ensemble").validate()
    RunConfig(prompts=str(tmp_path / "p.txt"), weights=str(tmp_path / "p.txt"), source_data=str(tmp_path)).validate()
    with pytest.raises(UserError, match="is a folder; give a file"):
        RunConfig(weights=str(tmp_path)).validate()


def test_paths_that_exist_are_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("w.th", "head.pt", "prompts.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "data").mkdir()
    cfg = RunConfig.build({"weights": "w.th", "head": "./head.pt", "prompts": "prompts.txt", "data_root": "data",
                           "source_data": "data", "out": "run"})
    assert (cfg.weights, cfg.head, cfg.prompts) == tuple(str(tmp_path / n) for n in ("w.th", "head.pt", "prompts.txt"))
    assert cfg.data_root == cfg.source_data == str(tmp_path / "data")
    assert cfg.out == "run"  # where results go is the user's to say
    kept = RunConfig.build({"prompts": "ensemble", "data_root": "user/hub-copy", "weights": "missing.th"})
    assert (kept.prompts, kept.data_root, kept.weights) == ("ensemble", "user/hub-copy", "missing.th")


def test_config_json_is_strict_json():
    assert json.loads(RunConfig(seed=4).to_json())["seed"] == 4
    with pytest.raises(UserError, match="config.json cannot record .*'lr': inf"):
        RunConfig(method_options={"lr": math.inf}).to_json()


def test_every_field_is_declared_for_the_command_line():
    for f in dataclasses.fields(RunConfig):
        assert f.metadata["help"], f"{f.name} has no help text"
        assert f.name in hints()


@pytest.mark.slow
def test_a_new_field_is_on_the_command_line_and_in_run_files_with_no_other_edit(tmp_path):
    """Adds one field to a copy of config.py, and nothing else: the flag, the run-file key, validation and
    config.json follow, and existing run folder names do not move."""
    for folder in ("tta_bench", "suites"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)  # a checkout: suites/ read from beside the package
    config = tmp_path / "tta_bench" / "config.py"
    anchor = "    method_options: dict[str, Any] = option("
    text = config.read_text()
    assert anchor in text
    config.write_text(text.replace(anchor, '    warmup_batches: int = option(0, "batches seen before scoring", '
                                           'minimum=0)\n' + anchor))
    (tmp_path / "run.yaml").write_text("suite: demo\nwarmup_batches: 3\n")
    code = f"""
import json
from tta_bench import cli
from tta_bench.config import RunConfig
from tta_bench.records import default_out
from tta_bench.errors import UserError
assert cli.run_config(["--warmup-batches", "2"])[0].warmup_batches == 2
assert cli.run_config(["--config", {str(tmp_path / "run.yaml")!r}])[0].warmup_batches == 3
assert json.loads(RunConfig(warmup_batches=5).to_json())["warmup_batches"] == 5
try:
    RunConfig(warmup_batches=-1).validate()
except UserError as exc:
    assert "--warmup-batches must be >= 0" in str(exc), exc
else:
    raise AssertionError("not validated")
assert default_out(RunConfig()).name == "demo-source-effnet-lite0-seed0-6d87995f"
assert "--warmup-batches" in cli.run_parser().format_help()
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_config_json_of_an_earlier_version_reads_relative_paths_from_the_working_directory(tmp_path, monkeypatch):
    """Earlier versions recorded --weights as typed: such a folder still resumes from where it was started."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.th").write_text("x")
    recorded = RunConfig.from_dict({"suite": "demo", "weights": "w.th", "unknown_later_field": 1})
    assert recorded.weights == str(tmp_path / "w.th")
    assert recorded.identity() == RunConfig.build({"suite": "demo", "weights": "w.th"}).identity()
