"""Output-only options (--save-logits, --record-steps) are not a run's identity: added to a finished run they
compute only what is missing, in the same folder; episodic methods rerun just the samples lacking the output,
online methods replay whole reset segments."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.outputs import STEPS_ASKED, merged
from tta_bench.records import default_out, read_records
from tta_bench.vocabulary import CONFIG, LOGITS, PREDICTIONS, SUMMARY

BASE = dict(suite="demo", teacher="tiny", corruptions=["fog", "contrast"], num_workers=0, device="cpu", batch_size=2)


@pytest.fixture
def predicted(monkeypatch) -> list[int]:
    """Number of images of every batch the method is asked to predict."""
    counts: list[int] = []
    real = engine._predict
    monkeypatch.setattr(engine, "_predict", lambda method, batch: counts.append(len(batch.images)) or real(method, batch))
    return counts


def _run(out: Path, **fields) -> dict:
    return engine.run(RunConfig(**{**BASE, "out": str(out), **fields}), progress=False, log=lambda *_: None)


def _preds(out: Path) -> dict:
    return {(r["split"], r["id"]): r["pred"] for r in read_records(out / PREDICTIONS)}


def test_output_options_are_not_identity():
    plain = RunConfig(**BASE)
    both = RunConfig(**{**BASE, "num_workers": 2}, save_logits=True, record_steps=[0, 5])
    assert plain.identity() == both.identity() and default_out(plain) == default_out(both)


def test_adding_save_logits_computes_them_in_the_same_folder(tmp_path, predicted):
    out = tmp_path / "run"
    first = _run(out, method="source")
    before = _preds(out)
    assert sum(predicted) == 8 and not (out / LOGITS).exists()
    second = _run(out, method="source", save_logits=True)
    assert sum(predicted) == 16  # every sample lacked its logits
    assert _preds(out) == before and second["splits"] == first["splits"]
    assert len(read_records(out / PREDICTIONS)) == 8  # replaced, not appended
    assert second["cost"]["seconds"] == first["cost"]["seconds"]  # the run's cost stays the run's
    assert second["cost"]["outputs_added"]["samples"] == 8 and second["cost"]["outputs_added"]["changed_predictions"] == 0
    for split in ("fog-5", "contrast-5"):
        with np.load(out / LOGITS / f"{split}.npz", allow_pickle=False) as z:
            assert len(z["ids"]) == 4 and z["logits"].dtype == np.float16
    assert json.loads((out / CONFIG).read_text())["save_logits"] is True
    _run(out, method="source")  # without the flag: the folder keeps its logits, nothing to compute
    assert sum(predicted) == 16 and (out / LOGITS / "fog-5.npz").exists()


def test_episodic_method_reruns_just_the_samples_lacking_logits(tmp_path, predicted):
    out = tmp_path / "run"
    _run(out, method="source", save_logits=True)
    before = _preds(out)
    with np.load(out / LOGITS / "fog-5.npz", allow_pickle=False) as z:
        kept = {k: z[k] for k in z.files}
    (out / LOGITS / "contrast-5.npz").unlink()  # one split's logits lost
    np.savez(out / LOGITS / "fog-5.npz", logits=kept["logits"][:3], ids=kept["ids"][:3], classes=kept["classes"])
    predicted.clear()
    _run(out, method="source", save_logits=True)
    assert sum(predicted) == 4 + 1  # contrast's 4 samples and fog's one, nothing else
    assert _preds(out) == before
    with np.load(out / LOGITS / "fog-5.npz", allow_pickle=False) as z:
        assert sorted(z["ids"]) == sorted(kept["ids"]) and np.array_equal(
            z["logits"][list(z["ids"]).index(kept["ids"][0])], kept["logits"][0])


def test_online_method_replays_whole_reset_segments(tmp_path, predicted):
    out = tmp_path / "run"
    _run(out, method="tent", save_logits=True)
    before = _preds(out)
    with np.load(out / LOGITS / "contrast-5.npz", allow_pickle=False) as z:
        kept = {k: z[k] for k in z.files}
    # the last sample of the contrast segment lost its logits: TENT's state there depends on the segment before it
    np.savez(out / LOGITS / "contrast-5.npz", logits=kept["logits"][:3], ids=kept["ids"][:3], classes=kept["classes"])
    predicted.clear()
    summary = _run(out, method="tent", save_logits=True)
    assert predicted == [2, 2]  # the whole 4-sample segment, replayed from its reset; the fog segment untouched
    assert _preds(out) == before and summary["cost"]["outputs_added"]["changed_predictions"] == 0
    with np.load(out / LOGITS / "contrast-5.npz", allow_pickle=False) as z:
        assert len(z["ids"]) == 4
        row = list(z["ids"]).index(kept["ids"][0])
        assert np.array_equal(z["logits"][row], kept["logits"][0])  # the replay reproduces the same logits


def test_adding_record_steps(tmp_path, predicted):
    out = tmp_path / "run"
    options = {"steps": 2, "n_views": 2, "bn_prior": -1}
    _run(out, method="memo", method_options=options, batch_size=1, limit=1)
    assert sum(predicted) == 2
    _run(out, method="memo", method_options=options, batch_size=1, limit=1, record_steps=[0, 2])
    assert sum(predicted) == 4
    records = read_records(out / PREDICTIONS)
    assert all(sorted(r["steps"], key=int) == ["0", "2"] and r[STEPS_ASKED] == [0, 2] for r in records)
    _run(out, method="memo", method_options=options, batch_size=1, limit=1, record_steps=[0])  # held: nothing to do
    _run(out, method="memo", method_options=options, batch_size=1, limit=1, record_steps=[2])
    assert sum(predicted) == 4
    assert json.loads((out / SUMMARY).read_text())["config"]["record_steps"] == [0, 2]


def test_merged_keeps_what_the_folder_holds():
    stored = RunConfig(**BASE, save_logits=True, record_steps=[10])
    asked = RunConfig(**BASE, record_steps=[0])
    assert (merged(stored, asked).save_logits, merged(stored, asked).record_steps) == (True, [0, 10])
    other = RunConfig(**{**BASE, "seed": 1})
    assert merged(stored, other) == other and merged(None, asked) == asked
