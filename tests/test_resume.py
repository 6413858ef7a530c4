"""Runs survive SIGKILL and Ctrl-C: a rerun of the same command completes with every sample exactly once,
saved logits stay aligned, and a summary being rewritten when the process dies stays intact."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import pytest

from tta_bench.records import read_records
from tta_bench.report.recompute import recompute

from conftest import WNIDS, write_images
from tta_bench.vocabulary import PREDICTIONS, SUMMARY

ROOT = Path(__file__).resolve().parents[1]
N_PER_CLASS = 60


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "run_bench.py"), "--suite", "imagenet", "--data-root", str(data),
            "--allow-partial", "--teacher", "tiny", "--batch-size", "1", "--workers", "0", "--device", "cpu",
            "--out", str(out), "--no-progress", "--save-logits", *extra]


def _start_and_stop(cmd: list[str], out: Path, sig: int, after_lines: int = 5) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = out / PREDICTIONS
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= after_lines:
            proc.send_signal(sig)
            break
        time.sleep(0.005)
    proc.stdout_text, proc.stderr_text = proc.communicate(timeout=60)
    return proc


def _data(tmp_path: Path) -> Path:
    write_images(tmp_path / "val", {w: N_PER_CLASS for w in WNIDS}, size=8)
    return tmp_path / "val"


@pytest.mark.slow
def test_sigkill_then_resume_predicts_every_sample_once(tmp_path):
    data, out = _data(tmp_path), tmp_path / "run"
    killed = _start_and_stop(_command(data, out), out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    partial = read_records(out / PREDICTIONS)
    total = N_PER_CLASS * len(WNIDS)
    assert 0 < len(partial) < total, "the kill must land mid-run"
    assert not (out / SUMMARY).exists()

    done = subprocess.run(_command(data, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = read_records(out / PREDICTIONS)
    keys = [(r["split"], r["id"]) for r in records]
    assert len(keys) == len(set(keys)) == total
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["splits"]["imagenet"]["n"] == total
    # the resumed run's saved logits are aligned with its predictions and recompute the summary exactly
    with np.load(out / "logits" / "imagenet.npz", allow_pickle=False) as z:
        pred_of = {r["id"]: r["pred"] for r in records}
        classes = z["classes"]
        assert [int(classes[k]) for k in np.argsort(-z["logits"].astype(np.float32), 1, kind="stable")[:, 0]] == \
               [pred_of[i] for i in z["ids"]]
    assert recompute(out, ("top1",))["imagenet"]["top1"] == summary["splits"]["imagenet"]["top1"]


def test_same_command_and_seed_give_identical_predictions(tmp_path, tiny_config):
    from tta_bench import engine

    data = _data(tmp_path)
    for name in ("a", "b", "c"):
        cfg = tiny_config(suite="imagenet", data_root=str(data), allow_partial=True, limit=20, out=str(tmp_path / name),
                          seed=7 if name == "c" else 0, save_logits=True)
        engine.run(cfg, progress=False, log=lambda *_: None)
    a, b, c = ((tmp_path / n / PREDICTIONS).read_bytes() for n in "abc")
    assert a == b
    assert a != c  # another seed shuffles the stream into another order


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resumes(tmp_path):
    data, out = _data(tmp_path), tmp_path / "run"
    stopped = _start_and_stop(_command(data, out), out, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr_text
    assert "rerun the same command to resume" in stopped.stderr_text
    assert "Traceback" not in stopped.stderr_text
    before = read_records(out / PREDICTIONS)
    subprocess.run(_command(data, out), check=True, capture_output=True, timeout=300)
    after = read_records(out / PREDICTIONS)
    assert {(r["split"], r["id"]) for r in before} <= {(r["split"], r["id"]) for r in after}
    assert len(after) == N_PER_CLASS * len(WNIDS)


@pytest.mark.slow
def test_kill_during_summary_write_keeps_the_previous_summary(tmp_path):
    path = tmp_path / SUMMARY
    previous = {"splits": {"x": {"top1": 50.0}}}
    path.write_text(json.dumps(previous))
    writer = ("import sys; from pathlib import Path; from tta_bench.files import write_json; "
              "write_json(Path(sys.argv[1]), {'blob': ['x' * 1000] * 400000})")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path)], cwd=ROOT)
    tmp = tmp_path / ".summary.json.tmp"
    deadline = time.time() + 60
    while not tmp.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    assert tmp.exists(), "the writer must have been killed mid-write"
    assert json.loads(path.read_text()) == previous


def test_torn_last_line_is_dropped_on_resume(tmp_path, tiny_config):
    from tta_bench import engine

    data = _data(tmp_path)
    cfg = tiny_config(suite="imagenet", data_root=str(data), allow_partial=True, limit=6)
    engine.run(cfg, progress=False, log=lambda *_: None)
    path = Path(cfg.out) / PREDICTIONS
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]) + lines[3][:10])  # a crash in the middle of line 4
    (Path(cfg.out) / SUMMARY).unlink()
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    records = read_records(path)
    assert len(records) == len({(r["split"], r["id"]) for r in records}) == 6 * 1
    assert summary["splits"]["imagenet"]["n"] == 6


@pytest.mark.parametrize("damage", [lambda line: line[:20] + b"\n", lambda line: b"\0" * (len(line) - 1) + b"\n",
                                    lambda line: b'{"split": "imagenet"}\n', lambda line: b"[1, 2]\n"])
def test_a_damaged_line_is_named_with_how_to_keep_the_lines_before_it(tmp_path, damage):
    """A complete line that is no record (cut by a copy, zeros from a crashed filesystem) ended in a traceback."""
    from tta_bench.errors import UserError

    record = {"split": "imagenet", "label": 1, "pred": 2, "top5": [2, 1], "correct": False, "status": "ok"}
    lines = [json.dumps({**record, "id": f"n/{k}.JPEG"}).encode() + b"\n" for k in range(6)]
    path = tmp_path / PREDICTIONS
    path.write_bytes(b"".join(lines[:4] + [damage(lines[4])] + lines[5:]))
    with pytest.raises(UserError) as damaged:
        read_records(path)
    message = str(damaged.value)
    assert "\n" not in message and f"{path}:5 is damaged" in message and "keep the 4 line(s) before it" in message
    assert f"head -n 4 {path} > " in message


@pytest.mark.slow
def test_the_advice_for_a_damaged_line_works_and_the_rerun_completes(tmp_path, capsys):
    from tta_bench.cli import main

    data, out = _data(tmp_path), tmp_path / "run"
    argv = ["--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny", "--limit", "8",
            "--workers", "0", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    path = out / PREDICTIONS
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4] + [lines[4][:20] + b"\n"] + lines[5:6]))  # killed, one line damaged
    (out / SUMMARY).unlink()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}:5 is damaged" in err
    subprocess.run(err.split("run `", 1)[1].split("`", 1)[0], shell=True, check=True)
    assert main(argv) == 0
    records = read_records(path)
    assert len(records) == len({(r["split"], r["id"]) for r in records}) == 8


def test_an_online_method_killed_mid_segment_resumes_to_the_uninterrupted_predictions(tmp_path, monkeypatch):
    """TENT's state after batch k depends on batches 1..k: a resume must replay the unfinished segment from its
    start. Replaying only the unfinished batches (from a fresh model) would change predictions; checked below."""
    from tests.conftest import image_stack, write_arrays
    from tta_bench import engine
    from tta_bench.config import RunConfig
    from tta_bench.methods.tent import Tent

    root = write_arrays(tmp_path / "c10", {"images": image_stack(48)}, [i % 10 for i in range(48)])

    def cfg(name: str) -> RunConfig:
        return RunConfig(suite="cifar10-c", source="generated", data_root=str(root), corruptions=["gaussian_noise"],
                         teacher="tiny", method="tent", batch_size=4, num_workers=0, device="cpu",
                         out=str(tmp_path / name), method_options={"lr": 0.5})

    def preds(name: str) -> list:
        return [(r["id"], r["pred"]) for r in read_records(tmp_path / name / PREDICTIONS)]

    engine.run(cfg("whole"), progress=False, log=lambda *_: None)
    real, calls = Tent.predict, []

    def dies_at_batch_6(self, batch):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt  # the process is stopped with 5 batches on disk
        return real(self, batch)

    monkeypatch.setattr(Tent, "predict", dies_at_batch_6)
    with pytest.raises(KeyboardInterrupt):
        engine.run(cfg("resumed"), progress=False, log=lambda *_: None)
    monkeypatch.setattr(Tent, "predict", real)
    assert len(preds("resumed")) == 20
    engine.run(cfg("resumed"), progress=False, log=lambda *_: None)
    assert preds("resumed") == preds("whole")
    # what a batch-level resume would give: the last 28 samples predicted by a model that never saw the first 20
    assert _predict_tail(cfg("tail"), start=20) != preds("whole")[20:], "the data must make TENT's history matter"


def _predict_tail(cfg, start: int) -> list:
    """(id, pred) of the stream from position `start` on, by a fresh method fed the engine's batches."""
    import torch

    from tta_bench import engine
    from tta_bench.methods import build_method
    from tta_bench.methods.base import Batch
    from tta_bench.teachers import build_teacher

    p = engine.prepare(cfg)
    teacher = build_teacher(cfg.teacher, num_classes=len(p.suite.space)).eval().requires_grad_(False)
    teacher.set_classes(p.suite.space, p.suite.classes)
    method = build_method(cfg.method, teacher, p.defaults.options, torch.device("cpu"))
    out = []
    for batch in p.stream.batches(cfg.batch_size):
        if batch[0] < start:
            continue
        items = [p.stream.items[i] for i in batch]
        sources = [p.suite.splits[it.split].source for it in items]
        images = torch.stack([teacher.transform(s.load(it.pos)) for s, it in zip(sources, items)])
        logits = method.predict(Batch(images, [0] * len(items))).logits
        out += [(s.ids[it.pos], p.suite.classes[int(k)]) for s, it, k in zip(sources, items, logits.argmax(1))]
    return out
