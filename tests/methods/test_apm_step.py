"""APM's step choices train the same students: MasterAdam against torch's Adam (float32 and with a bf16 copy),
and `fit` with every update and both bias forms, stacked students against one at a time. (The CUDA graph and the
compiled update: tests/methods/test_cuda.py.)"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from tta_bench.methods.apm import PRESET_OPTIONS, Targets, fit
from tta_bench.methods.apm_step import UPDATES, MasterAdam, Step, build_optimizer, training_steps
from tta_bench.models.apm_student import APMStudent, StackedAPMStudent, preset

CPU = torch.device("cpu")


def tensors(seed: int, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for shape in shapes]


SHAPES = ((3, 5, 4), (3, 4), (7,))


def test_master_adam_in_float32_is_torch_adam_with_its_schedule() -> None:
    """Outside autocast each parameter is its own master: the trajectory is torch.optim.Adam's (single-tensor
    form), StepLR included (the learning rate is a device tensor the scheduler fills)."""
    ours = [torch.nn.Parameter(t) for t in tensors(0, *SHAPES)]
    theirs = [torch.nn.Parameter(t.clone()) for t in ours]
    opt_ours = MasterAdam(ours, 1e-2, torch.float32)
    opt_theirs = torch.optim.Adam(theirs, lr=1e-2, foreach=False)
    schedules = [torch.optim.lr_scheduler.StepLR(o, 3, 0.1) for o in (opt_ours, opt_theirs)]
    for k in range(8):
        for a, b, g in zip(ours, theirs, tensors(100 + k, *SHAPES)):
            a.grad, b.grad = g.clone(), g.clone()
        for o, s in zip((opt_ours, opt_theirs), schedules):
            o.step()
            s.step()
    assert all(p.dtype == torch.float32 for p in ours)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert float(opt_ours.param_groups[0]["lr"]) == pytest.approx(1e-4)


def test_master_adam_keeps_a_bf16_copy_of_float32_masters() -> None:
    """With a bf16 forward the parameters hold bf16 copies (and take bf16 gradients); the masters follow torch's
    Adam fed the same gradients in float32, each copy is its master rounded, and release() restores the masters."""
    ours = [torch.nn.Parameter(t) for t in tensors(1, *SHAPES)]
    theirs = [torch.nn.Parameter(t.clone()) for t in ours]
    opt_ours = MasterAdam(ours, 1e-2, torch.bfloat16)
    opt_theirs = torch.optim.Adam(theirs, lr=1e-2, foreach=False)
    assert all(p.dtype == torch.bfloat16 for p in ours)
    for k in range(5):
        for a, b, g in zip(ours, theirs, tensors(200 + k, *SHAPES)):
            a.grad, b.grad = g.bfloat16(), g.bfloat16().float()
        opt_ours.step()
        opt_theirs.step()
    for a, b in zip(ours, theirs):
        master = opt_ours.state[a]["master"]
        torch.testing.assert_close(master, b.detach(), rtol=1e-6, atol=1e-7)
        assert torch.equal(a.detach(), master.bfloat16())
    opt_ours.release()
    for a, b in zip(ours, theirs):
        assert a.dtype == torch.float32 and a.grad is None
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_prime_moves_nothing_and_forgets_itself() -> None:
    params = [torch.nn.Parameter(t) for t in tensors(2, *SHAPES)]
    before = [p.detach().clone() for p in params]
    opt = MasterAdam(params, 1e-2, torch.float32)
    for p, g in zip(params, tensors(3, *SHAPES)):
        p.grad = g
    opt.prime()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert float(opt.count) == 0 and float(opt.param_groups[0]["lr"]) == pytest.approx(1e-2)
    assert all(not s["exp_avg"].any() and not s["exp_avg_sq"].any() for s in opt.state.values())


def test_step_choices_are_checked() -> None:
    with pytest.raises(ValueError, match="update must be one of"):
        Step(update="sgd")
    with pytest.raises(ValueError, match="needs the master update"):
        Step(update="fused", graph=True)
    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(p, 1e-3, Step("master", graph=True))
    schedule = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        next(training_steps(lambda: (None, p[0].sum()[None]), opt, schedule, 1, Step("master", graph=True), CPU))


def problem(bias_in_product: bool, seeds=(3, 4, 5)):
    cfg = dataclasses.replace(preset("cpu", 32), readout="attention", heads=4, hidden=(96, 48), grid=4, patch=8)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(len(seeds), 1, 3, cfg.image_size, cfg.image_size, generator=g)
    target = 0.1 * torch.randn(len(seeds), 1, cfg.feature_dim, generator=g)
    return cfg, StackedAPMStudent(cfg, list(seeds), bias_in_product=bias_in_product), x, Targets(target, None, None)


def trained(student, x, targets, step: Step, steps: int = 6, precision: str = "fp32"):
    options = dataclasses.replace(PRESET_OPTIONS["cpu"], steps=steps, lr=1e-3, schedule="step", step_size=4)
    region = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
    with region:
        results = [(out.feature.float().detach(), loss)
                   for _, out, loss in fit(student, list(student.parameters()), x, targets, options, step)]
    return results[-1][0], torch.stack([loss for _, loss in results])


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("bias_in_product", [False, True])
def test_every_step_choice_trains_the_stacked_students_as_separate_ones(update: str, bias_in_product: bool) -> None:
    """Float32: the stacked students under each update and bias form end where separate students trained by torch's
    Adam end, and the parameters are float32 afterwards."""
    cfg, stacked, x, targets = problem(bias_in_product)
    feature, losses = trained(stacked, x, targets, Step(update))
    assert all(p.dtype == torch.float32 for p in stacked.parameters())
    assert losses[-1].sum() < losses[0].sum()
    for s, seed in enumerate((3, 4, 5)):
        student = APMStudent(cfg, seed=seed)
        one = Targets(targets.feature[s], None, None)
        one_feature, _ = trained(student, x[s], one, Step("fused"))
        torch.testing.assert_close(feature[s], one_feature, rtol=1e-4, atol=1e-6)


def test_master_update_under_bf16_trains_as_torch_adam_does() -> None:
    """Under bf16 autocast the master update (bf16 weights in the forward, bf16 gradients into the update) and
    torch's fused Adam (float32 weights cast by autocast) compute the same products from the same roundings: on the
    CPU the results are bitwise equal. The bound, a tenth of what bf16 itself moves the features here (2.5e-3
    against float32), tells a forward that silently ran in float32 from one in bf16."""
    _, a, x, targets = problem(False)
    _, b, _, _ = problem(False)
    feature_master, loss_master = trained(a, x, targets, Step("master"), precision="bf16")
    feature_fused, loss_fused = trained(b, x, targets, Step("fused"), precision="bf16")
    assert all(p.dtype == torch.float32 for p in a.parameters())
    torch.testing.assert_close(loss_master, loss_fused, rtol=5e-5, atol=1e-7)
    relative = float((feature_master - feature_fused).norm() / feature_fused.norm())
    assert relative < 2.5e-4, relative
