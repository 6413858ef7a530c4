"""Loading run folders: single, nested, and the errors that name the bad folder."""
from __future__ import annotations

import json

import pytest

from tta_bench.report import RunFolderError, load_runs, load_summary
from tta_bench.report.runs import run_label

from .conftest import fixture_summaries, make_summary, split, write_runs
from tta_bench.vocabulary import CONFIG, SUMMARY


def test_loads_a_run_folder_and_a_tree_of_them(runs_root):
    one = runs_root / "imagenet-c" / "apm-run"
    assert [s["run_name"] for s in load_runs([one])] == ["apm-run"]
    names = sorted(s["run_name"] for s in load_runs([runs_root, one]))  # each run once
    assert names == sorted(s["run_name"] for s in fixture_summaries())


def test_missing_summary_names_the_folder(runs_root):
    unfinished = runs_root / "imagenet-c" / "unfinished"
    unfinished.mkdir()
    (unfinished / CONFIG).write_text("{}")
    with pytest.raises(RunFolderError, match=r"unfinished: no summary\.json"):
        load_runs([runs_root])


def test_malformed_summary_names_the_file(tmp_path):
    bad_json, bad_shape = write_runs(tmp_path, fixture_summaries()[:2])
    (bad_json / SUMMARY).write_text("{not json")
    with pytest.raises(RunFolderError, match=r"source-run.summary\.json: malformed JSON"):
        load_summary(bad_json)
    (bad_shape / SUMMARY).write_text(json.dumps({"suite": "imagenet-c", "splits": {"fog-5": 3}}))
    with pytest.raises(RunFolderError, match=r"apm-run.summary\.json: malformed summary: 'method' missing.*'fog-5'"):
        load_summary(bad_shape)


def test_folder_without_runs_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError, match="no summary.json and no run folders below it"):
        load_runs([tmp_path / "empty"])
    with pytest.raises(RunFolderError, match="not a folder"):
        load_runs([tmp_path / "nowhere"])


def test_hub_runs_are_labelled_hub_not_partial():
    summary = make_summary("hub-run", "source", "clip-vit-b16", {"imagenet-r": split(70.0)}, suite="imagenet-r",
                           source="hub")
    assert run_label(summary) == "source (clip-vit-b16) [hub]"
    summary["data"]["partial"] = True  # an incomplete Hub copy is both
    assert run_label(summary) == "source (clip-vit-b16) [hub, partial]"


def test_a_generated_suite_from_a_small_clean_set_is_marked_with_its_size():
    def generated(images, expected, subset="full"):
        summary = make_summary("gen", "source", "effnet-lite0", {"fog-5": split(20.0)}, source="generated",
                               subset=subset)
        summary["data"]["generated_from"] = {"suite": "imagenet", "images": images, "expected": expected,
                                             "complete": images >= expected}
        return run_label(summary)

    assert generated(20, 50_000) == "source (effnet-lite0) [generated from 20 images]"
    assert generated(500, 50_000, "limit-50") == "source (effnet-lite0) [generated from 500 images, limit-50]"
    assert generated(50_000, 50_000) == "source (effnet-lite0) [generated]"


def test_entries_that_are_not_finished_runs_are_skipped_with_one_warning_each(runs_root, tmp_path):
    failed = runs_root / "failed-at-setup"  # a run that stopped before its summary
    failed.mkdir()
    (failed / CONFIG).write_text("{}")
    aggregate = runs_root / "seeds-aggregate.json"  # a file among the run folders
    aggregate.write_text("{}")
    empty = runs_root / "empty"
    empty.mkdir()
    warnings: list[str] = []
    entries = sorted(runs_root.iterdir())  # what the shell's results/runs/* gives
    summaries = load_runs(entries, warn=warnings.append)
    assert len(summaries) == len(fixture_summaries())
    assert sorted(warnings) == sorted([f"skipped {aggregate}: not a folder",
                                       f"skipped {empty}: no summary.json and no run folders below it",
                                       f"skipped {failed}: no summary.json (unfinished run, or not a run folder)"])
    with pytest.raises(RunFolderError, match="no finished run folders given"):
        load_runs([aggregate, failed], warn=warnings.append)


def test_table_and_plot_commands_warn_and_go_on(runs_root, tmp_path, capsys):
    from tta_bench.cli import main

    (runs_root / "seeds-aggregate.json").write_text("{}")
    bad = runs_root / "broken"
    bad.mkdir()
    (bad / SUMMARY).write_text("{not json")
    entries = [str(p) for p in sorted(runs_root.iterdir())]
    assert main(["table", *entries]) == 0
    out, err = capsys.readouterr()
    assert "| apm (clip-vit-b16)" in out
    assert sorted(err.splitlines()) == [
        f"warning: skipped {runs_root / 'broken'}: summary.json: malformed JSON (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1))",
        f"warning: skipped {runs_root / 'seeds-aggregate.json'}: not a folder"]
    assert main(["plot", *entries, "--out", str(tmp_path / "plots")]) == 0
    assert len(capsys.readouterr().err.splitlines()) == 2
