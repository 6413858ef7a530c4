"""The method interface every test-time method implements, its options, and the lifecycle the base class runs.

The engine owns the stream: it calls ``reset()`` where the setting allows a reset (stream start, each domain start
under ``reset_each_shift``; every batch under ``--reset episodic``) and ``predict(batch)`` for every batch in stream
order. A method never sees labels or domain names. Per-sample methods adapt on each sample alone and reset after
every sample themselves, so no setting can change their result; online methods keep state across batches.

What a reset restores is declared once, as the attribute names in ``restored``: the base class snapshots them when
construction ends and ``reset()`` puts them back bit for bit (modules, optimizers and WeightSets through their state
dicts, anything else, counters and memory banks, as a deep copy).
"""
from __future__ import annotations

import copy
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import torch

from ..errors import UserError
from ..teachers.base import Teacher
from .options import Options


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, H, W) in [0, 1] at the teacher's input size, on the device
    seeds: list[int]  # per-sample seeds from (run seed, split, sample id): position-independent randomness
    record_steps: tuple[int, ...] = ()  # steps at which iterative methods record a prediction (--record-steps)
    # Each sample's full decoded image, uint8 (3, H, W) at its own size, on the CPU: what the data source returned
    # before the teacher's resize and centre crop (for a generated corruption suite, the corrupted image as the
    # published files hold it). The engine fills it only for a method whose ``raw_images`` is True: methods that
    # draw their views from the whole picture, as their reference code does (RandomResizedCrop of the full image).
    raw: list[torch.Tensor] | None = None

    def raw_image(self, k: int) -> torch.Tensor:
        """Sample ``k``'s full image (uint8); where the caller gave none (unit tests, the GPU check), its
        teacher-input image (float in [0, 1], on the device)."""
        return self.raw[k] if self.raw is not None else self.images[k]


@dataclass
class Output:
    logits: torch.Tensor  # (B, C) over the teacher's evaluated classes
    extras: list[dict[str, Any]] = field(default_factory=list)  # per-sample fields merged into the records
    adaptation_steps: int = 0  # optimizer steps spent on this batch (cost accounting)
    teacher_forwards: int = 0  # teacher forward passes spent on this batch
    loss: float | None = None  # the objective of the batch's last update, where the method has one (--log)


class RegisteredName:
    """A method's name is its registry key, written once (methods/__init__.py); a class outside the registry (a
    test's own) is called by its class name."""

    def __get__(self, obj: object, cls: type) -> str:
        from . import METHODS

        return METHODS.name_of(cls) or cls.__name__


class Lifecycle(ABCMeta):
    """Construction ends with the snapshot of what the method declared in ``restored``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        method = super().__call__(*args, **kwargs)
        method._initial = [_save(getattr(method, name)) for name in method.restored]
        return method


class Method(metaclass=Lifecycle):
    name: ClassVar[str] = RegisteredName()  # type: ignore[assignment]
    per_sample: ClassVar[bool] = False  # adapts on each sample alone and resets after every sample
    # The attributes that hold what the method adapts (the teacher, an optimizer, a WeightSet, a memory bank, a
    # counter): reset() restores them to their values at the end of construction, bit for bit.
    restored: ClassVar[tuple[str, ...]] = ()
    # Arithmetic on CUDA unless --precision says otherwise: what the method's reference code used (float32 for the
    # classifier TTA methods, as their official code and the unified benchmark run them; mixed precision for the
    # CLIP test-time methods, whose official code runs under autocast). bf16 moves logits by ~1% through a
    # network, and BN layers normalising with batch statistics amplify it (benchmarks/RESULTS.md).
    precision: ClassVar[str] = "fp32"
    prompts: ClassVar[str] = "single"  # the CLIP prompt templates its reference code classifies with
    options_class: ClassVar[type[Options]] = Options
    # True where the method needs each sample's full decoded image (``Batch.raw``); an instance may set it from its
    # options (TDA needs it only with views). Costs the engine one uint8 copy per sample.
    raw_images: bool = False
    # An online method that updates its state after each sample, inside a batch as well (TDA's caches): its
    # predictions do not depend on the batch size, so a batch as long as a reset segment does not degrade it.
    per_sample_updates: ClassVar[bool] = False
    # Normalises with the statistics of the test batch itself (BatchNorm layers in train mode): below
    # common.MIN_STATISTICS_BATCH samples those are noise, and the run warns (common.small_batch_note).
    batch_statistics: ClassVar[bool] = False

    def __init__(self, teacher: Teacher, options: Options, device: torch.device) -> None:
        self.teacher, self.options, self.device = teacher, options, device

    @classmethod
    def parse_options(cls, given: dict[str, Any]) -> Options:
        options = cls.options_class.parse(given, cls.name)
        if cls.per_sample and options.reset != "episodic":
            raise UserError(f"{cls.name} adapts on each sample alone and resets after it: --reset online does not apply")
        return options

    @classmethod
    def build_options(cls, given: dict[str, Any], teacher: str, device: torch.device) -> Options:
        """Options for a run of teacher ``teacher`` (its name) on ``device``, validated before anything runs;
        methods whose defaults depend on them override it."""
        return cls.parse_options(given)

    def source_samples(self) -> int:
        """How many clean source-domain images the method needs before the stream (0: none). The engine loads them
        (--source-data, or a generated suite's clean set), records where from, and calls ``prepare_source``."""
        return 0

    def prepare_source(self, batches: Iterator[torch.Tensor]) -> None:
        """Compute what the method keeps from clean source data; `batches` yields (B, 3, H, W) images in [0, 1] at
        the teacher's input size, on the method's device."""
        return None

    def reset(self) -> None:
        """Restore the state the method started the stream with: every attribute named in ``restored``."""
        for name, saved in zip(self.restored, self._initial):
            _restore(self, name, saved)
        torch.clear_autocast_cache()  # cached bf16 copies of the weights just overwritten in place

    @abstractmethod
    def predict(self, batch: Batch) -> Output: ...

    def on_out_of_memory(self) -> bool:
        """Shrink the working set after an out-of-memory error; True if the batch is worth retrying."""
        return False


class StepRecorder:
    """One sample's predictions (label-space classes) at the listed adaptation steps (``--record-steps``; step 0 =
    before adapting). Methods call it with the step count before each step and once after the last."""

    def __init__(self, wanted: tuple[int, ...], logits_now: Callable[[], torch.Tensor], classes: list[int]) -> None:
        self.wanted, self.logits_now, self.classes, self.records = set(wanted), logits_now, classes, {}

    def __call__(self, step: int) -> None:
        if step in self.wanted:
            with torch.no_grad():
                self.records[str(step)] = {"pred": self.classes[int(self.logits_now().argmax())]}

    def extras(self) -> dict[str, Any]:
        return {"steps": self.records} if self.wanted else {}


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """One update, then gradients cleared. Also drops autocast's cache of weight casts: inside one autocast region
    (the engine's spans a whole batch) a trainable weight is cast to bf16 once and the copy reused, so without this
    every later forward of the region would run on the weights from before the update."""
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    torch.clear_autocast_cache()


def _save(value: Any) -> Any:
    """What restores ``value``: a deep copy of its state dict where it has one, else of itself."""
    return copy.deepcopy(value.state_dict() if hasattr(value, "load_state_dict") else value)


def _restore(method: Method, name: str, saved: Any) -> None:
    value = getattr(method, name)
    if hasattr(value, "load_state_dict"):
        value.load_state_dict(copy.deepcopy(saved))
    else:
        setattr(method, name, copy.deepcopy(saved))
