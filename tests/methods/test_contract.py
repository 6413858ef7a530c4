"""The contract every registered method keeps, checked for each of them on the tiny offline teachers: its name is its
registry key; ``reset()`` restores its state bit for bit after it adapted; its logits are (B, C) over the teacher's
evaluated classes; a per-sample method's prediction depends on neither its history nor its batch, and an online
method run with ``--reset episodic`` (the engine resets it before every batch) not on its history; bad options are
refused before anything is built."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from tta_bench.data.labels import label_space
from tta_bench.errors import UserError
from tta_bench.methods import METHODS, build_method
from tta_bench.methods.base import Batch, Method
from tta_bench.teachers.ready import ready_teacher

from .conftest import CPU, SINGLE, images

EVALUATED = [1, 3, 5, 7, 9]  # half of CIFAR-10's classes: the logits must cover exactly these
FAST = {  # small enough for a unit test; every other option at the method's default
    "apm": {"steps": 3},
    "cotta": {"n_augmentations": 2, "threshold": 1.0},  # 1.0: the augmented pseudo-label path runs
    "eata": {"e_margin": 1.0, "d_margin": 1.0},  # every sample reliable and new: the random teacher adapts
    "memo": {"n_views": 4, "bn_prior": 4},
    "rotta": {"memory_size": 8, "update_every": 4},
    "tpt": {"n_views": 8},
    "tda": {"n_views": 4},
    "zero": {"n_views": 8},
}
NAMES = [entry.name for entry in METHODS]


def _teacher_of(name: str) -> str:
    return "tiny-clip" if METHODS.entry(name).accepts.startswith("CLIP only") else "tiny"


def _build(name: str, **options) -> Method:
    spec = _teacher_of(name)
    teacher = ready_teacher(spec, CPU, label_space("cifar10"), EVALUATED, SINGLE)
    method = build_method(name, teacher, {**FAST.get(name, {}), **options}, CPU)
    if method.source_samples():  # EATA's Fisher information, from a few clean images
        method.prepare_source(iter([images(4, _size(spec), seed=9)]))
    return method


def _size(teacher: str) -> int:
    return 64 if teacher == "tiny-clip" else 32


def _batches(name: str, n: int = 3) -> list[Batch]:
    size = _size(_teacher_of(name))
    return [Batch(images(4, size, seed=k), [10 * k + j for j in range(4)]) for k in range(n)]


# What a reset keeps on purpose, as its reference does: EATA's moving-average prediction (EATA.reset keeps it), SAR's
# count of model recoveries, APM's student scratch space and cost measurements (each sample starts from its seed).
KEPT = {"eata": {"probs"}, "sar": {"recoveries"},
        "apm": {"student", "stacked", "group", "_last_group", "_compiled", "teacher_flops", "flops_per_sample"}}


def _state(method: Method) -> dict[str, object]:
    """A copy of every attribute of the method (modules and optimizers by their state dicts), but the snapshot itself
    and what KEPT says a reset keeps: all of it is either declared in ``restored`` or must not change."""
    kept = KEPT.get(method.name, set()) | {"_initial"}
    return {name: copy.deepcopy(value.state_dict() if hasattr(value, "load_state_dict") else value)
            for name, value in vars(method).items() if name not in kept}


def _differences(a: object, b: object, where: str = "") -> list[str]:
    """Where two states differ, bitwise: tensors by value and dtype, containers and objects field by field."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [where]
    if hasattr(a, "state_dict") and hasattr(b, "state_dict"):
        return _differences(a.state_dict(), b.state_dict(), where)
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [where]
        return [d for k in a for d in _differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [where]
        return [d for k, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{k}]")]
    if hasattr(a, "__dict__") and type(a) is type(b):
        return _differences(vars(a), vars(b), where)
    return [] if a == b else [where]


@pytest.mark.parametrize("name", NAMES)
def test_the_name_is_the_registry_key_written_once(name):
    cls = METHODS.get(name)
    assert cls.name == name and "name" not in vars(cls)


@pytest.mark.parametrize("name", NAMES)
def test_reset_restores_the_state_bit_for_bit_after_adapting(name):
    method = _build(name)
    before = _state(method)
    batches = _batches(name)
    first = [method.predict(b).logits for b in batches]
    adapted = _differences(before, _state(method))  # per-sample methods restore themselves after every sample
    assert adapted or METHODS.get(name).per_sample or not method.restored
    method.reset()
    assert _differences(before, _state(method)) == []
    again = [method.predict(b).logits for b in batches]
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # the same run again, from the same start


@pytest.mark.parametrize("name", NAMES)
def test_logits_are_one_row_per_sample_over_the_evaluated_classes(name):
    method = _build(name)
    for batch in _batches(name, 2):
        out = method.predict(batch)
        assert out.logits.shape == (4, len(EVALUATED)) and out.logits.dtype.is_floating_point
        assert torch.isfinite(out.logits).all()
        assert len(out.extras) in (0, 4)
    assert method.teacher.classes == EVALUATED


@pytest.mark.parametrize("name", NAMES)
def test_a_prediction_does_not_depend_on_what_came_before_it(name):
    """Per-sample methods: neither on earlier batches nor on the rest of the batch. Online methods under
    ``--reset episodic``: not on earlier batches (the engine resets before each; the reset is all it takes)."""
    per_sample = METHODS.get(name).per_sample
    options = {} if per_sample else {"reset": "episodic"}
    used, fresh = _build(name, **options), _build(name, **options)
    first, later = _batches(name, 2)
    used.predict(first)
    if not per_sample:
        used.reset()  # what the engine does before every batch under --reset episodic
    assert torch.equal(used.predict(later).logits, fresh.predict(later).logits)
    if per_sample:
        alone = [_build(name).predict(Batch(later.images[k:k + 1], later.seeds[k:k + 1])).logits for k in range(4)]
        torch.testing.assert_close(fresh.predict(later).logits, torch.cat(alone), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_are_refused_with_what_is_accepted(name):
    cls = METHODS.get(name)
    options = cls.build_options(dict(FAST.get(name, {})), _teacher_of(name), CPU)
    assert set(dataclasses.asdict(options)) == {f.name for f in dataclasses.fields(cls.options_class)}
    for bad in ({"steps": -1}, {"steps": 1.5}, {"steps": "many"}, {"lr": float("inf")}, {"reset": "sometimes"}):
        with pytest.raises(UserError, match=f"^--{next(iter(bad))} must be"):
            cls.build_options(bad, _teacher_of(name), CPU)
    with pytest.raises(UserError, match=f"method {name} has no option.*nonsense.*; it accepts: .*lr"):
        cls.build_options({"nonsense": 1}, _teacher_of(name), CPU)
