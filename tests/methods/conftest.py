"""Fixtures for method tests: the seeded tiny teachers over CIFAR-10's classes, fixed image batches, and a
bitwise state comparison."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

from tests.conftest import image_stack, write_arrays
from tta_bench.config import RunConfig
from tta_bench.data.labels import label_space
from tta_bench.teachers.base import Teacher
from tta_bench.teachers.ready import ready_teacher

CPU = torch.device("cpu")
SINGLE = ("a photo of a {}.",)


def teacher(name: str) -> Teacher:
    """A frozen teacher in eval mode over CIFAR-10's classes, ready as the engine hands it to a method."""
    return ready_teacher(name, CPU, label_space("cifar10"), range(10), SINGLE)


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    """Names of the state entries that are not bitwise equal to ``before``."""
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


@pytest.fixture
def cifar_run(tmp_path: Path) -> Callable[..., RunConfig]:
    """A RunConfig for a fast end-to-end run on generated CIFAR-10-C from 8 synthetic images."""
    root = write_arrays(tmp_path / "cifar10", {"images": image_stack(8)}, [i % 10 for i in range(8)])

    def make(**overrides) -> RunConfig:
        base = dict(suite="cifar10-c", source="generated", data_root=str(root), corruptions=["gaussian_noise"],
                    teacher="tiny", num_workers=0, device="cpu", batch_size=4, out=str(tmp_path / "run"))
        return RunConfig(**{**base, **overrides})

    return make


def photographs(n: int, size: int) -> torch.Tensor:
    """``n`` real photographs (the demo suite's, from scikit-image) as (n, 3, size, size) in [0, 1]: each photo whole
    and in fixed off-centre crops, so a batch holds distinct natural images on any machine, offline."""
    from torchvision.transforms.v2 import functional as TF

    from tta_bench.data.layouts.demo import demo_photos

    source = demo_photos(None, label_space("imagenet1k"), "demo")[0][1]
    photos = [TF.to_image(source.load(i)) for i in range(len(source.ids))]
    boxes = [(0.0, 0.0, 1.0), (0.0, 0.0, 0.7), (0.3, 0.3, 0.7), (0.15, 0.1, 0.8), (0.3, 0.0, 0.6), (0.0, 0.3, 0.6)]
    out = []
    for k in range(n):
        photo = photos[k % len(photos)]
        top, left, side = boxes[(k // len(photos)) % len(boxes)]
        h, w = photo.shape[-2:]
        s = int(side * min(h, w))
        crop = TF.crop(photo, int(top * (h - s)), int(left * (w - s)), s, s)
        out.append(TF.resize(crop, [size, size], antialias=True))
    return torch.stack(out).float() / 255


def red_sided(side: int) -> torch.Tensor:
    """A uint8 picture (3, side, 3 x side): a grey centre square, which a teacher's centre crop keeps, and red sides
    outside it."""
    picture = torch.full((3, side, 3 * side), 128, dtype=torch.uint8)
    red = torch.tensor([255, 0, 0], dtype=torch.uint8)[:, None, None]
    picture[:, :, :side] = picture[:, :, 2 * side:] = red
    return picture


@contextmanager
def encoded_inputs(teacher: Teacher) -> Iterator[list[torch.Tensor]]:
    """The image batches the teacher's ``encode`` receives inside the block."""
    seen: list[torch.Tensor] = []
    encode = teacher.encode
    teacher.encode = lambda x: (seen.append(x.detach().clone()), encode(x))[1]
    try:
        yield seen
    finally:
        del teacher.encode


REAL_LIMIT, REAL_BATCH = 200, 50  # small enough for CI; four batches, so that updates act on later batches


def real_cifar_c(tmp_path: Path, method: str, options: dict | None = None, limit: int = REAL_LIMIT,
                 setting: str = "reset_each_shift", batch_size: int | None = REAL_BATCH,
                 dirichlet: float = 0.1, corruption: str = "gaussian_noise") -> dict:
    """The summary of ``method`` with ResNet-20 (real CIFAR-10 weights) on generated CIFAR-10-C (gaussian noise 5:
    a shift where BN statistics matter, source 18.7%, BN adaptation 50.6% on all 2,000) from the shared JPEG test
    images (``limit`` of them, spread over the classes). Call under ``needs_shared``."""
    from tests.conftest import SHARED
    from tta_bench import engine

    cfg = RunConfig(suite="cifar10-c", source="generated", data_root=str(SHARED / "cifar10-test-jpeg"),
                    teacher="cifar-resnet20", weights=str(SHARED / "weights" / "resnet20-12fca82f.th"), method=method,
                    method_options=dict(options or {}), corruptions=[corruption], limit=limit, setting=setting,
                    dirichlet=dirichlet, batch_size=batch_size, num_workers=0, device="cpu",
                    out=str(tmp_path / f"{method}-{setting}-{corruption}"))
    return engine.run(cfg, progress=False, log=lambda *_: None)


@pytest.fixture(scope="session")
def real_source_top1(tmp_path_factory: pytest.TempPathFactory) -> float:
    """The source model's top-1 on ``real_cifar_c``'s images (computed once per session)."""
    return real_cifar_c(tmp_path_factory.mktemp("real-source"), "source")["mean_top1"]
