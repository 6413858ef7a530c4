"""Bad inputs through the command line: exit code 2 and a clear message on stderr, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import WNIDS, image_stack, write_arrays, write_images
from tta_bench import engine
from tta_bench.cli import main
from tta_bench.config import RunConfig
from tta_bench.vocabulary import PREDICTIONS, SUMMARY

FAST = ["--teacher", "tiny", "--workers", "0", "--device", "cpu", "--no-progress"]


def _fails(capsys, argv: list[str], *phrases: str) -> str:
    """Run the CLI, expect exit 2, and return the error line, which must hold every phrase."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[0]
    assert line.startswith("error: ")
    for phrase in phrases:
        assert phrase in line, (phrase, err)
    return line


def _imagenet(tmp_path: Path) -> Path:
    write_images(tmp_path / "imagenet", {w: 2 for w in WNIDS})
    return tmp_path / "imagenet"


def test_missing_data_root(capsys, tmp_path):
    _fails(capsys, ["--suite", "imagenet", *FAST, "--out", str(tmp_path / "run")], "imagenet needs --data-root")


def test_data_root_that_does_not_exist(capsys, tmp_path):
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(tmp_path / "nope"), *FAST],
           f"--data-root {tmp_path / 'nope'} does not exist")


def test_images_directly_under_the_root_are_not_the_wnid_layout(capsys, tmp_path):
    write_images(tmp_path / "flat", {".": 3})
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(tmp_path / "flat"), *FAST],
           f"{tmp_path / 'flat'} holds no class folders", "<root>/<wnid>/<image>")


def test_a_folder_that_is_not_a_wnid_is_named(capsys, tmp_path):
    write_images(tmp_path / "data", {WNIDS[0]: 1, "cats": 1})
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(tmp_path / "data"), "--allow-partial", *FAST],
           "'cats'", str(tmp_path / "data" / "cats"), "is not a imagenet1k class")


@pytest.mark.parametrize("flag, value, choices", [
    ("--suite", "imagenet-z", "expected one of: aircraft, caltech101, cars"),
    ("--method", "tnet", "expected one of:"),
    ("--teacher", "resnet", "expected one of: cifar-resnet20"),
])
def test_unknown_names_list_the_valid_choices(capsys, tmp_path, flag, value, choices):
    argv = ["--suite", "imagenet", "--data-root", str(_imagenet(tmp_path)), "--allow-partial", *FAST,
            "--out", str(tmp_path / "run"), flag, value]
    line = _fails(capsys, argv, f"{flag.strip('-')} {value!r}", choices)
    if flag == "--method":
        assert "source" in line


def test_unknown_corruption_and_bad_severity(capsys, tmp_path):
    base = ["--suite", "imagenet-c", "--source", "generated", "--data-root", str(_imagenet(tmp_path)), *FAST]
    _fails(capsys, base + ["--corruptions", "rain"], "unknown corruption(s) ['rain']", "gaussian_noise")
    _fails(capsys, base + ["--severities", "6"], "severities must be in 1..5")


def _corrupt_the_fourth_image_of_the_stream(root: Path) -> Path:
    """The file the stream reaches fourth (folder layouts are shuffled), cut in half mid-JPEG."""
    p = engine.prepare(RunConfig(suite="imagenet", data_root=str(root), allow_partial=True))
    item = p.stream.items[3]
    path = root / p.suite.splits[item.split].source.ids[item.pos]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_truncated_image_stops_the_run_naming_it_and_keeps_earlier_predictions(capsys, tmp_path):
    root = _imagenet(tmp_path)
    bad = _corrupt_the_fourth_image_of_the_stream(root)
    out = tmp_path / "run"
    argv = ["--suite", "imagenet", "--data-root", str(root), "--allow-partial", *FAST, "--batch-size", "1",
            "--out", str(out)]
    _fails(capsys, argv, f"corrupt or truncated image {bad}")
    assert len((out / PREDICTIONS).read_text().splitlines()) == 3
    assert not (out / SUMMARY).exists()

    # as the message advises: the same command with --on-error skip resumes and counts the file
    assert main(argv + ["--on-error", "skip"]) == 0
    summary = json.loads((out / SUMMARY).read_text())
    split = summary["splits"]["imagenet"]
    assert (split["n"], split["skipped"]) == (5, 1)
    records = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
    (error,) = [r for r in records if r["status"] == "error"]
    assert error["id"] == bad.relative_to(root).as_posix() and str(bad) in error["error"]
    assert not error["correct"] and len(records) == 6


def test_cifar_c_array_length_mismatch(capsys, tmp_path):
    write_arrays(tmp_path / "c", {"fog": image_stack(3)}, [0, 1])
    _fails(capsys, ["--suite", "cifar10-c", "--data-root", str(tmp_path / "c"), "--corruptions", "fog",
                    "--allow-partial", *FAST], "fog.npy holds 3 images but labels.npy holds 2 labels")


def test_pickle_bearing_npy_is_refused(capsys, tmp_path):
    write_arrays(tmp_path / "c", {}, [0, 1])
    np.save(tmp_path / "c" / "images.npy", np.array([object(), None], dtype=object), allow_pickle=True)
    _fails(capsys, ["--suite", "cifar10", "--data-root", str(tmp_path / "c"), "--allow-partial", *FAST],
           "images.npy: refused to load")


def test_an_output_folder_that_cannot_be_written(capsys, tmp_path):
    (tmp_path / "file").write_text("a regular file")
    out = tmp_path / "file" / "run"
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(_imagenet(tmp_path)), "--allow-partial", *FAST,
                    "--out", str(out)], f"cannot write the run folder {out}")


def test_a_good_run_exits_0_and_prints_the_table(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["--suite", "imagenet", "--data-root", str(_imagenet(tmp_path)), "--allow-partial", *FAST,
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"run folder: {out}" in captured.out and "|" in captured.out
    assert "Traceback" not in captured.err and (out / SUMMARY).exists()


@pytest.mark.parametrize("extra, phrase", [
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--batch-size", "-3"], "--batch-size must be >= 1, got -3"),
    (["--limit", "0"], "--limit must be >= 1, got 0"),
    (["--limit", "-1"], "--limit must be >= 1"),
    (["--method", "tent", "--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--method", "tent", "--lr", "0"], "--lr must be a finite number > 0"),
    (["--method", "tent", "--steps", "-1"], "--steps must be >= 0, got -1"),
    (["--setting", "correlated", "--dirichlet", "nan"], "--dirichlet must be a finite number >= 0"),
    (["--setting", "correlated", "--dirichlet", "inf"], "--dirichlet must be a finite number >= 0"),
    (["--seeds", ""], "--seeds needs at least one seed"),
    (["--method", "tent", "--steps", "2", "--record-steps", "5"], "--record-steps 5 is beyond the 2 steps tent takes"),
    (["--prompts", "ensemble"], "--prompts ensemble builds a CLIP text head; teacher tiny"),
])
def test_bad_values_stop_with_one_line(capsys, tmp_path, extra, phrase):
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(_imagenet(tmp_path)), "--allow-partial", *FAST,
                    "--out", str(tmp_path / "run"), *extra], phrase)


def test_labels_outside_the_suites_classes_are_refused(capsys, tmp_path):
    root = write_arrays(tmp_path / "c10", {"images": image_stack(4)}, [0, 3, 12, 1])
    _fails(capsys, ["--suite", "cifar10", "--data-root", str(root), "--allow-partial", *FAST],
           "labels.npy: 1 labels outside the cifar10 classes 0..9 (e.g. 12)")


def test_a_corrupt_image_stops_with_one_line_naming_the_file(capsys, tmp_path):
    root = _imagenet(tmp_path)
    bad = root / WNIDS[1] / "img_002.JPEG"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    line = _fails(capsys, ["--suite", "imagenet", "--data-root", str(root), "--allow-partial", "--teacher", "tiny",
                           "--workers", "1", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")],
                  str(bad), "--on-error skip")
    assert "DataLoader worker" not in line and "Original Traceback" not in line


def test_a_bug_is_not_mistaken_for_bad_input(monkeypatch, capsys):
    """Only user errors print one line; a ValueError raised by a bug shows its traceback (it propagates)."""
    from tta_bench import cli

    def broken(argv):
        raise ValueError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "list", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["list"])


def test_list_shows_every_suite_with_its_size_and_where_its_test_set_comes_from(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "2,463" in lines["flowers102"] and "19,850" in lines["sun397"] and "3,333" in lines["aircraft"]
    assert "clipart 18,523" in lines["domainnet126"] and "7,500,000 per stream" in lines["ccc-medium"]
    assert "test set: CoOp split_zhou_OxfordFlowers.json" in out and "oripress/CCC generate.py --baseline 20" in out
    assert "clip-benchmark/wds_vtab-flowers, holds another test split (official)" in out


def test_domains_is_the_domain_selector_of_domain_suites(capsys, tmp_path):
    _fails(capsys, ["--suite", "domainnet126", "--data-root", str(tmp_path), "--domains", "quickdraw", "--dry-run"],
           "unknown domain(s) ['quickdraw']", "real, clipart, painting, sketch")


def test_list_shows_every_method_with_its_description_and_the_teachers_it_accepts(capsys):
    from tta_bench.methods import METHODS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    methods = out[out.index("\nmethods:\n"):out.index("\nteachers:\n")].splitlines()[2:]
    for entry in METHODS:
        at = next(i for i, line in enumerate(methods) if line.split()[:1] == [entry.name])
        assert entry.help in methods[at] and entry.help
        assert methods[at + 1].strip() == f"teachers: {entry.accepts}" and entry.accepts
    assert METHODS.entry("rotta").accepts != METHODS.entry("cotta").accepts  # said per method, not one default


# -- the configuration is checked before anything is written ---------------------------------------------------------
@pytest.mark.parametrize("extra, phrase", [
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--seed", "x"], "--seed must be an integer, got 'x'"),
    (["--batch-size", "1.5"], "--batch-size must be an integer, got '1.5'"),
    (["--teacher", "cifar-resnet20", "--weights", "resnet20.thh"], "--weights resnet20.thh does not exist"),
    (["--teacher", "dino:vit_small_patch16_224", "--head", "head.pth"], "--head head.pth does not exist"),
    (["--source-data", "no-such-folder"], "--source-data no-such-folder does not exist or is not a folder"),
    (["--prompts", "my_prompts.txt"], "--prompts my_prompts.txt does not exist"),
    (["--corruptions", "fog,fog"], "--corruptions/--domains lists fog more than once (fog,fog)"),
    (["--domains", "clipart,clipart"], "lists clipart more than once"),
    (["--setting", "iid"], "--setting must be one of reset_each_shift, continual"),
    (["--sorter", "random"], "--sorter must be one of note, rotta"),
    (["--method", "tent", "--opt", "nonsense=1"], "method tent has no option(s) ['nonsense']"),
    (["--method", "tent", "--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--method", "tent", "--opt", "steps=1.5"], "--steps must be an integer, got '1.5'"),
    (["--nonsense"], "unrecognized arguments: --nonsense (see run_bench.py --help)"),
])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_bad_configurations_stop_in_one_line_before_anything_is_written(capsys, tmp_path, monkeypatch, extra,
                                                                        phrase, dry_run):
    monkeypatch.chdir(tmp_path)  # relative names are looked up here, and nothing may appear here
    _fails(capsys, ["--suite", "demo", *FAST, *extra, *dry_run], phrase)
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_writes_nothing_and_a_valid_one_exits_0(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--suite", "demo", *FAST, "--method", "tent", "--lr", "0.01", "--dry-run"]) == 0
    assert "run folder: results/runs/demo-tent-tiny-seed0-" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_the_paths_a_run_reads_are_recorded_absolute_and_it_reruns_from_elsewhere(capsys, tmp_path, monkeypatch):
    """`--config RUN/config.json` from another working directory reads the same files: the prompt file and the
    data folders are recorded absolute."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "prompts.txt").write_text("a photo of a {}.\n")
    monkeypatch.chdir(here)
    argv = ["--suite", "demo", *FAST, "--teacher", "tiny-clip", "--limit", "1", "--corruptions", "fog",
            "--prompts", "prompts.txt", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["prompts"] == str(here / "prompts.txt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["--config", str(tmp_path / "run" / "config.json"), "--no-progress"]) == 0
    assert "is complete; reusing its summary" in capsys.readouterr().out


def test_the_apm_preset_help_describes_the_network_the_code_builds(capsys):
    """--help and the documentation's methods table give the paper preset's MLP as the student builds it (input =
    2 x grid², then the hidden widths), and `list` names the flag that exists."""
    from readme import section
    from tta_bench.models.apm_student import PRESETS

    paper = PRESETS["paper"]
    widths = "-".join(map(str, (paper.query_dim, *paper.hidden)))
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    readme = " ".join(section("Methods").split())
    assert f"MLP {widths} + a head to the teacher's feature width" in help_text
    assert f"MLP {widths} + a head to the teacher's feature width" in readme
    assert main(["list"]) == 0
    (apm,) = [line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["apm"]]
    assert "--apm-preset auto|cpu|paper" in apm and "--opt preset" not in apm


@pytest.mark.slow
@pytest.mark.parametrize("argv, env, phrase", [
    (["--seed", "-1"], {}, "--seed must be >= 0, got -1"),
    (["--teacher", "cifar-resnet20", "--weights", "resnet20.thh", "--dry-run"], {}, "--weights resnet20.thh does not"),
    (["--config", "bomb.yaml"], {}, "bomb.yaml: the document expands to more than"),
    (["sweep", "escape.yaml"], {}, "must be a plain folder name"),
    (["sweep", "sweep.yaml", "--dry-run"], {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"},
     "SLURM_ARRAY_TASK_ID='x' is not a task number"),
])
def test_the_commands_refuse_bad_configurations_in_one_line(tmp_path, argv, env, phrase):
    import os
    import subprocess
    import sys

    from test_runconfig_file import BOMB

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "bomb.yaml").write_text(BOMB)
    (tmp_path / "escape.yaml").write_text("name: ../../escape\ngrid: {seed: [0]}\n")
    (tmp_path / "sweep.yaml").write_text("name: ok\ngrid: {seed: [0, 1]}\n")
    made = set(tmp_path.iterdir())
    done = subprocess.run([sys.executable, str(root / "run_bench.py"), *argv], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1 and phrase in done.stderr
    assert set(tmp_path.iterdir()) == made and not (tmp_path.parent / "escape").exists()


@pytest.mark.parametrize("extra, phrase", [
    (["--method", "memo", "--opt", "crop=centre"], "memo option crop must be one of resized, pad, got 'centre'"),
    (["--method", "cotta", "--opt", "restore=2"], "cotta option restore must be a finite number <= 1, got 2.0"),
    (["--method", "tent", "--opt", "optimizer=sgd", "--opt", "momentum=0"], "nesterov needs momentum > 0"),
])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_method_option_ranges_and_choices_stop_before_anything_is_written(capsys, tmp_path, monkeypatch, extra, phrase,
                                                                        dry_run):
    """Not only an option's type: its range, its choices and the method's own rules, before a run folder exists."""
    monkeypatch.chdir(tmp_path)
    _fails(capsys, ["--suite", "demo", *FAST, *extra, *dry_run], phrase)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, phrase", [({"steps": -3}, "--steps must be >= 0, got -3"),
                                             ({"steps": 1.5}, "--steps must be an integer, got 1.5"),
                                             ({"lr": 0}, "--lr must be a finite number > 0, got 0.0")])
def test_a_run_file_with_bad_method_options_writes_nothing(capsys, tmp_path, options, phrase):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(json.dumps({"suite": "demo", "method": "tent", "method_options": options}))
    _fails(capsys, ["--config", str(run_file), *FAST, "--out", str(tmp_path / "run")], phrase)
    assert not (tmp_path / "run").exists()
