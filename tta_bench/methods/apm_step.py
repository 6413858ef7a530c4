"""How APM's training step runs (`methods.apm.fit`): which Adam updates the students, and whether a fixed-shape
step is recorded once as a CUDA graph and replayed.

Every choice trains the same students up to float rounding (tests/methods/test_apm_step.py compares them with
torch's Adam); benchmarks/apm_gpu.py floor measures each on a GPU against the step's floor, the step's matrix
products at the bf16 GEMM rate plus Adam's float32 state moved at the copy bandwidth.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .base import optimizer_step

UPDATES = ("fused", "foreach", "master")
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as the official code uses them
WARMUP_STEPS = 2  # forward+backward passes before a CUDA graph records the step (lazy initialisations)


@dataclass(frozen=True)
class Step:
    """``update``: ``fused`` / ``foreach``, torch.optim.Adam's implementations over the float32 weights (under bf16
    autocast the forward casts each weight to bf16 and the backward casts each gradient back); ``master``, MasterAdam.
    ``graph``: the step (forward, backward, update) recorded once as a CUDA graph and replayed, which removes the
    per-kernel launch cost; CUDA only, with the ``master`` update (whose step count and learning rate live on the
    device)."""

    update: str = "fused"
    graph: bool = False

    def __post_init__(self) -> None:
        if self.update not in UPDATES:
            raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {self.update!r}")
        if self.graph and self.update != "master":
            raise ValueError("a CUDA-graph step needs the master update")


STEP = Step()  # the step APM runs; the alternatives are measured by benchmarks/apm_gpu.py floor


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype the forward multiplies in: the autocast dtype inside an autocast region, else float32."""
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else torch.float32


def build_optimizer(parameters: list[Tensor], lr: float, step: Step) -> torch.optim.Optimizer:
    if step.update == "master":
        device = parameters[0].device
        return MasterAdam(parameters, lr, compute_dtype(device), compiled=device.type == "cuda")
    return torch.optim.Adam(parameters, lr=lr, fused=step.update == "fused" or None,
                            foreach=step.update == "foreach" or None)


def _adam_pass(master: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, copy: Tensor | None,
               step_size: Tensor, bias_correction2_sqrt: Tensor, beta1: float, beta2: float, eps: float) -> None:
    """torch.optim.Adam's update of one tensor (its single-tensor formula), on float32 `master`, from a gradient of
    any float dtype; then `copy` (the parameter the forward uses, when it is not the master) takes the new value."""
    g = grad.float()
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    master.sub_(exp_avg / (exp_avg_sq.sqrt() / bias_correction2_sqrt + eps) * step_size)
    if copy is not None:
        copy.copy_(master)


_COMPILED_PASS: Callable[..., None] | None = None


def _compiled_pass() -> Callable[..., None]:
    """One compiled kernel per tensor (shapes symbolic: one compilation serves every layer and group size)."""
    global _COMPILED_PASS
    if _COMPILED_PASS is None:
        _COMPILED_PASS = torch.compile(_adam_pass, dynamic=True, fullgraph=True)
    return _COMPILED_PASS


class MasterAdam(torch.optim.Optimizer):
    """Adam on float32 master weights while the parameters hold the copy the forward multiplies with (`dtype`:
    bf16 inside a bf16 autocast region; float32 outside, where each parameter is its own master).

    Under bf16 autocast torch's Adam keeps float32 parameters, so every step the forward casts each weight to bf16
    (read 4, write 2 bytes a weight) and the backward casts each bf16 gradient to float32 (read 2, write 4). Here the
    backward leaves bf16 gradients that the update reads as they are, and the update writes the next bf16 copy in
    the same pass: (master, gradient, two moments) in, (master, two moments, copy) out, 28 bytes a weight, Adam's
    float32 floor. Compiled (CUDA), that pass is one kernel per tensor; eager it is a few passes (the CPU).
    The step count and the learning rate are float64 device tensors (LR schedulers fill the latter), so nothing
    waits for the host and a CUDA graph can replay the update. `release()` gives the parameters their float32
    masters back.
    """

    def __init__(self, params: list[Tensor], lr: float, dtype: torch.dtype, compiled: bool = False) -> None:
        device = params[0].device
        super().__init__(params, {"lr": torch.tensor(lr, dtype=torch.float64, device=device)})
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.pass_ = _compiled_pass() if compiled else _adam_pass
        self.separate = any(p.dtype != dtype for p in self.params)  # the forward's copy is not the master
        with torch.no_grad():
            for p in self.params:
                master = p.detach().float()
                self.state[p] = {"master": master, "exp_avg": torch.zeros_like(master),
                                 "exp_avg_sq": torch.zeros_like(master)}
                if self.separate:
                    p.data = master.to(dtype)

    @property
    def params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        self.count += 1
        beta1, beta2 = BETAS
        lr = self.param_groups[0]["lr"]
        step_size = lr / (1 - beta1 ** self.count)
        bias_correction2_sqrt = (1 - beta2 ** self.count).sqrt()
        for p in self.params:
            if p.grad is None:
                continue
            s = self.state[p]
            copy = p.data.view(-1) if self.separate else None
            self.pass_(s["master"].view(-1), p.grad.reshape(-1), s["exp_avg"].view(-1), s["exp_avg_sq"].view(-1),
                       copy, step_size, bias_correction2_sqrt, beta1, beta2, EPS)

    @torch.no_grad()
    def prime(self) -> None:
        """One update at learning rate 0 with the current gradients, then forgotten (moments and count zeroed): it
        compiles the kernels before a CUDA graph records them, and no weight moves (w - 0·u = w)."""
        lr = self.param_groups[0]["lr"]
        kept = lr.clone()
        lr.zero_()
        self.step()
        lr.copy_(kept)
        self.count.zero_()
        for s in self.state.values():
            s["exp_avg"].zero_()
            s["exp_avg_sq"].zero_()

    @torch.no_grad()
    def release(self) -> None:
        """The parameters hold their float32 masters again (the trained values)."""
        for p in self.params:
            p.grad = None
            if self.separate:
                p.data = self.state[p]["master"]


def release(optimizer: torch.optim.Optimizer) -> None:
    """What fit calls when training ends, however it ends: float32 parameters again."""
    if isinstance(optimizer, MasterAdam):
        optimizer.release()


def training_steps(objective: Callable[[], tuple[Any, Tensor]], optimizer: torch.optim.Optimizer,
                   schedule: torch.optim.lr_scheduler.LRScheduler, steps: int, step: Step,
                   device: torch.device) -> Iterator[tuple[Any, Tensor]]:
    """`steps` updates of what `objective` computes (the output and the per-sample loss); yields each step's output
    and loss, those of the weights before its update. A yielded output is valid until the next step."""
    if step.graph:
        if device.type != "cuda":
            raise ValueError(f"a CUDA-graph step needs a CUDA device, not {device}")
        yield from _replayed(objective, optimizer, schedule, steps)
        return
    for _ in range(steps):
        out, loss = objective()
        loss.sum().backward()  # a sum: each student's gradient is that of its own loss
        optimizer_step(optimizer)
        schedule.step()
        yield out, loss.detach()


def _replayed(objective: Callable[[], tuple[Any, Tensor]], optimizer: torch.optim.Optimizer,
              schedule: torch.optim.lr_scheduler.LRScheduler, steps: int) -> Iterator[tuple[Any, Tensor]]:
    """The step recorded once as a CUDA graph (PyTorch's whole-network capture: warm-up on a side stream, gradients
    unset before the capture so that every replay writes them afresh) and replayed `steps` times."""
    if steps == 0:
        return
    assert isinstance(optimizer, MasterAdam)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for k in range(WARMUP_STEPS):
            _, loss = objective()
            loss.sum().backward()
            if k == 0:
                optimizer.prime()
            optimizer.zero_grad(set_to_none=True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, loss = objective()
        loss.sum().backward()
        optimizer.step()
    torch.clear_autocast_cache()
    for _ in range(steps):
        graph.replay()
        schedule.step()
        yield out, loss.detach().clone()
    optimizer.zero_grad(set_to_none=True)  # the gradients live in the graph's memory, freed with it
