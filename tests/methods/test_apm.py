"""APM as a method: per-sample reset, chunked and parallel forms give the same predictions, the student really fits
the teacher, --record-steps, failures, options, and a real learning check on ImageNet photographs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import SHARED, needs_shared
from tests.methods.conftest import CPU, images, teacher
from tta_bench import engine
from tta_bench.device import autocast
from tta_bench.config import RunConfig
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.apm import APM, APMOptions, student_input
from tta_bench.methods.base import Batch
from tta_bench.models.apm_student import APMStudent, analytic_flops_per_step
from tta_bench.records import RunFolder

FAST = {"steps": 12}


def apm(name: str = "tiny", **options) -> APM:
    return build_method("apm", teacher(name), {**FAST, **options}, CPU)


def predict(method: APM, x: torch.Tensor, seeds: list[int], record: tuple[int, ...] = ()):
    return method.predict(Batch(x, seeds, record))


def test_sample_result_does_not_depend_on_earlier_samples() -> None:
    x = images(3, 32)
    method = apm()
    predict(method, x[:2], [11, 12])
    after_others = predict(method, x[2:], [13])
    alone = predict(apm(), x[2:], [13])
    assert torch.equal(after_others.logits, alone.logits)  # bitwise: nothing carries over from earlier samples
    together = predict(method, x, [11, 12, 13])
    # in one batch the teacher's batched convolution may round differently; the student adds nothing
    torch.testing.assert_close(together.logits[2:], alone.logits, rtol=1e-5, atol=1e-6)
    assert together.adaptation_steps == 3 * FAST["steps"] and together.teacher_forwards == 3


def test_seed_decides_the_initialisation() -> None:
    x = images(1, 32)
    assert not torch.equal(predict(apm(), x, [1]).logits, predict(apm(), x, [2]).logits)


@pytest.mark.parametrize("readout", ["mean", "attention"])
def test_chunked_equals_full(readout: str) -> None:
    x, seeds = images(2, 32), [3, 4]
    full = predict(apm(readout=readout), x, seeds)
    chunked = predict(apm(readout=readout, chunk_size=5), x, seeds)
    torch.testing.assert_close(chunked.logits, full.logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny", "tiny-clip"])
def test_parallel_equals_sequential(name: str) -> None:
    x, seeds = images(3, 32 if name == "tiny" else 64), [7, 8, 9]
    sequential = predict(apm(name, parallel="false"), x, seeds, (0, 5))
    parallel = predict(apm(name, parallel="true"), x, seeds, (0, 5))
    torch.testing.assert_close(parallel.logits, sequential.logits, rtol=1e-3, atol=1e-4)
    assert [e["steps"]["5"]["pred"] for e in parallel.extras] == [e["steps"]["5"]["pred"] for e in sequential.extras]


def test_out_of_memory_trains_fewer_samples_together() -> None:
    x, seeds = images(4, 32), [1, 2, 3, 4]
    method = apm(parallel="true")
    whole = predict(method, x, seeds)
    assert method.on_out_of_memory() and method.group == 2
    halves = predict(method, x, seeds)
    torch.testing.assert_close(halves.logits, whole.logits, rtol=1e-4, atol=1e-5)
    assert method.on_out_of_memory() and method.group == 1
    predict(method, x, seeds)
    assert not method.on_out_of_memory()
    assert not apm(parallel="false").on_out_of_memory()


def test_loss_falls_a_hundredfold_with_the_cpu_preset() -> None:
    method = build_method("apm", teacher("tiny"), {}, CPU)
    steps = method.options.steps
    extra = predict(method, images(1, 32), [0], (0, steps)).extras[0]
    assert extra["steps"][str(steps)]["loss"] < extra["steps"]["0"]["loss"] / 100
    assert extra["loss"] == extra["steps"][str(steps)]["loss"]
    assert extra["steps"][str(steps)]["agree"]


def test_record_steps() -> None:
    method = apm()
    x, seed = images(1, 32), 5
    extra = predict(method, x, [seed], (0, 1, 5, 12, 500)).extras[0]
    assert set(extra["steps"]) == {"0", "1", "5", "12"}  # steps beyond the run's are not recorded
    assert all(set(e) == {"pred", "loss", "agree"} for e in extra["steps"].values())
    with torch.no_grad():
        untrained = APMStudent(method.cfg, seed=seed)(student_input(x, method.cfg)).feature
    assert extra["steps"]["0"]["pred"] == method.teacher.head(untrained).argmax(1).item()
    final = predict(method, x, [seed]).logits.argmax(1).item()
    assert extra["steps"]["12"]["pred"] == final and "steps" not in predict(method, x, [seed]).extras[0]


def test_nan_loss_marks_the_sample_failed_and_the_run_goes_on() -> None:
    method = apm()
    encode = method.teacher.encode

    def broken(x: torch.Tensor) -> torch.Tensor:
        out = encode(x).clone()
        out[1] = float("nan")
        return out

    method.teacher.encode = broken
    out = predict(method, images(3, 32), [1, 2, 3], (0,))
    assert out.extras[1]["status"] == "failed" and out.extras[1]["loss"] is None
    assert "status" not in out.extras[0] and "status" not in out.extras[2]
    assert out.logits.isfinite().all()
    json.dumps(out.extras, allow_nan=False)  # records stay valid JSON


def test_dense_and_rgb_terms() -> None:
    method = apm(dense_weight=1.0, rgb_weight=1.0)
    with pytest.raises(UserError, match="patch grid"):
        predict(method, images(1, 32), [0])
    grid = torch.randn(1, method.teacher.feature_dim, 4, 4, generator=torch.Generator().manual_seed(0))
    method.teacher.encode_dense = lambda x: grid.expand(len(x), -1, -1, -1)
    out = predict(method, images(2, 32), [0, 1], (0, 12))
    assert out.teacher_forwards == 4
    assert all(e["steps"]["12"]["loss"] < e["steps"]["0"]["loss"] for e in out.extras)


def test_options_presets_and_validation() -> None:
    paper = APM.parse_options({"preset": "paper"})
    assert (paper.steps, paper.lr, paper.schedule, paper.step_size, paper.gamma, paper.readout) == \
        (250, 1e-4, "step", 200, 0.1, "attention")
    assert APM.parse_options({"preset": "paper", "lr": "3e-4", "steps": "7"}).lr == 3e-4
    assert APM.parse_options({}) == APMOptions()
    method = apm()
    assert method.options.parallel is False  # auto: off on CPU
    assert method.cfg.grid == 8 and method.cfg.feature_dim == method.teacher.feature_dim
    for bad in ({"preset": "huge"}, {"reset": "online"}, {"readout": "max"}, {"schedule": "cyclic"},
                {"parallel": "maybe"}, {"steps": "0"}):
        with pytest.raises(UserError):
            build_method("apm", teacher("tiny"), bad, CPU)


def test_engine_run_records_teacher_and_steps(cifar_run) -> None:
    cfg = cifar_run(method="apm", method_options={"steps": 6}, record_steps=[0, 6])
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    records = RunFolder(Path(cfg.out)).records()
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    for r in records:
        assert set(r["steps"]) == {"0", "6"} and r["steps"]["6"]["pred"] == r["pred"]
        assert r["steps"]["6"]["agree"] == (r["pred"] == r["teacher_pred"])
    split = next(iter(summary["splits"].values()))
    assert {"teacher_top1", "agreement"} <= set(split)
    assert summary["method_options"]["preset"] == "cpu" and summary["method_options"]["steps"] == 6
    cost = summary["cost"]
    assert cost["adaptation_steps"] == 8 * 6
    assert cost["flops_per_sample"] > 6 * analytic_flops_per_step(build_method("apm", teacher("tiny"), {}, CPU).cfg)


@needs_shared
def test_student_agrees_with_a_real_teacher_on_imagenet_photographs(tmp_path: Path) -> None:
    cfg = RunConfig(suite="imagenet", data_root=str(SHARED / "imagenet-sample"), limit=50, allow_partial=True,
                    method="apm", teacher="effnet-lite0", num_workers=0, device="cpu", batch_size=25,
                    out=str(tmp_path / "run"))
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["data"]["n_samples"] == 50
    assert summary["mean_agreement"] >= 90
    assert summary["mean_top1"] >= summary["teacher_mean_top1"] - 10


def test_student_learns_inside_one_autocast_region() -> None:
    """The engine wraps a whole batch in one bf16 autocast region, where a trainable weight's bf16 copy is cached at
    its first cast; unless every update clears that cache, all later steps run on the initial weights and the loss
    never moves (as it did before the fix)."""
    x = images(2, 32)
    method = apm(steps=12)
    with autocast(CPU, "bf16"):
        out = predict(method, x, [1, 2], (0, 12))
    for e in out.extras:
        assert e["steps"]["12"]["loss"] < 0.5 * e["steps"]["0"]["loss"]


def test_the_student_sees_the_whole_picture_resized_not_the_teachers_crop():
    """The official code resizes the full image to 448 x 448 (the paper preset; (g·p)² here) for the student;
    the teacher's centre crop of a grey-centred, red-sided picture has no red, the student's input has it at both
    sides, squeezed into the square."""
    from tests.methods.conftest import red_sided
    from tta_bench.methods.apm import IMAGENET_MEAN, IMAGENET_STD, student_inputs

    assert APM.raw_images  # so the engine hands it Batch.raw
    method = build_method("apm", teacher("tiny"), {"steps": 1}, CPU)
    picture = red_sided(32)  # (3, 32, 96)
    crop = picture[:, :, 32:64].float()[None] / 255  # what the teacher's centre crop keeps: grey only
    x = student_inputs(Batch(crop, [0], raw=[picture]), method.cfg)
    size = method.cfg.image_size
    assert x.shape == (1, 3, size, size)
    red = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    for column in (0, size - 1):  # both sides: red, as the resized whole picture has them
        torch.testing.assert_close(x[0, :, size // 2, column], red, atol=1e-4, rtol=0)
    grey = (torch.full((3,), 128 / 255) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(x[0, :, size // 2, size // 2], grey, atol=1e-4, rtol=0)
    without_raw = student_inputs(Batch(crop, [0]), method.cfg)  # unit callers without raw: the given images
    torch.testing.assert_close(without_raw[0, :, size // 2, 0], grey, atol=1e-4, rtol=0)
