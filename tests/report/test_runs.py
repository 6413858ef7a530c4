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
