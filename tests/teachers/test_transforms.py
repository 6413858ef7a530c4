"""Stored geometry: images stored as 224 x 224 centre crops (ImageNet-C) reach a classifier with ToTensor and
normalisation only, as RobustBench and the unified TTA benchmark feed them; CLIP keeps its own preprocessing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from conftest import SHARED, independent_effnet_lite0, needs_shared
from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.errors import DataError
from tta_bench.teachers import build_teacher
from tta_bench.teachers.transforms import PixelTransform, StoredCrop
from tta_bench.vocabulary import LOGITS, PREDICTIONS

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
          "colorwheel")
NORMALISE = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TO_TENSOR = transforms.ToTensor()


def imagenet_c_geometry(image: Image.Image) -> Image.Image:
    """How ImageNet-C cut its images before corrupting them: resize 256 (bilinear), centre crop 224."""
    return transforms.CenterCrop(224)(transforms.Resize(256)(image.convert("RGB")))


def _skimage_photos() -> list[Image.Image]:
    import skimage.data

    return [imagenet_c_geometry(Image.fromarray(getattr(skimage.data, name)())) for name in PHOTOS]


def _write_imagenet_c(root: Path, images: list[Image.Image], wnids: list[str]) -> list[str]:
    """The published layout (one corruption folder; the content is what matters here), lossless PNG."""
    relpaths = []
    for k, (image, wnid) in enumerate(zip(images, wnids)):
        folder = root / "gaussian_noise" / "5" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{k:04d}.png")
        relpaths.append(f"gaussian_noise/5/{wnid}/{k:04d}.png")
    return relpaths


def _harness(root: Path, out: Path) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """The harness's source run on published-layout ImageNet-C: records and saved logits by sample id."""
    cfg = RunConfig(suite="imagenet-c", data_root=str(root), corruptions=["gaussian_noise"], allow_partial=True,
                    teacher="effnet-lite0", num_workers=0, device="cpu", batch_size=16, save_logits=True,
                    out=str(out))
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["data"]["stored"] == 224 and summary["data"]["transform"].startswith("StoredCrop(stored=224")
    records = {(r := json.loads(line))["id"]: r for line in (out / PREDICTIONS).read_text().splitlines()}
    with np.load(out / LOGITS / "gaussian_noise-5.npz", allow_pickle=False) as z:
        logits = {str(i): row.astype(np.float32) for i, row in zip(z["ids"], z["logits"])}
    return records, logits


def _independent_logits(root: Path, relpaths: list[str]) -> np.ndarray:
    """timm/torchvision only: ToTensor + normalisation, nothing else."""
    model = independent_effnet_lite0()
    batch = torch.stack([NORMALISE(TO_TENSOR(Image.open(root / p).convert("RGB"))) for p in relpaths])
    with torch.no_grad():
        return model(batch).numpy()


def test_stored_crops_reach_a_classifier_with_to_tensor_only_sample_for_sample(tmp_path):
    relpaths = _write_imagenet_c(tmp_path / "c", _skimage_photos(), ["n02123045"] * len(PHOTOS))
    records, logits = _harness(tmp_path / "c", tmp_path / "run")
    independent = _independent_logits(tmp_path / "c", relpaths)
    np.testing.assert_allclose(np.stack([logits[p] for p in relpaths]), independent, atol=0.02, rtol=2e-3)  # float16
    assert [records[p]["pred"] for p in relpaths] == independent.argmax(1).tolist()
    assert [records[p]["top5"] for p in relpaths] == np.argsort(-independent, axis=1, kind="stable")[:, :5].tolist()


@needs_shared
def test_on_real_photographs_cut_to_imagenet_c_geometry_predictions_match_to_tensor_only(tmp_path):
    sample = SHARED / "imagenet-sample"
    paths = sorted(sample.glob("*/*.JPEG"))[::25]  # 20 photographs, evenly spread
    relpaths = _write_imagenet_c(tmp_path / "c", [imagenet_c_geometry(Image.open(p)) for p in paths],
                                 [p.parent.name for p in paths])
    records, _ = _harness(tmp_path / "c", tmp_path / "run")
    independent = _independent_logits(tmp_path / "c", relpaths).argmax(1).tolist()
    assert [records[p]["pred"] for p in relpaths] == independent


def test_a_classifier_gets_to_tensor_on_stored_crops_and_its_recipe_elsewhere():
    teacher = build_teacher("effnet-lite0")
    assert teacher.transform == PixelTransform(224, 256, "bicubic")
    stored = teacher.transform_for(224)
    assert stored == StoredCrop(224, 224, "bicubic") and teacher.transform_for(None) is teacher.transform
    image = _skimage_photos()[2]
    torch.testing.assert_close(stored(image).as_subclass(torch.Tensor), TO_TENSOR(image), rtol=0, atol=1e-6)
    assert (teacher.transform(image) - TO_TENSOR(image)).abs().mean() > 0.05  # the recipe zooms by 256/224


def test_a_clip_teacher_keeps_its_own_preprocessing_a_no_op_on_224_crops():
    teacher = build_teacher("tiny-clip")
    assert teacher.transform_for(224) is teacher.transform
    size = teacher.transform.size
    crop = transforms.CenterCrop(size)(transforms.Resize(size)(_skimage_photos()[0]))
    torch.testing.assert_close(teacher.transform(crop).as_subclass(torch.Tensor), TO_TENSOR(crop), rtol=0, atol=1e-6)


def test_a_teacher_of_another_input_size_gets_the_crop_resized_and_a_wrong_size_is_refused():
    tiny = build_teacher("tiny")  # input 32
    crop = _skimage_photos()[0]
    assert tiny.transform_for(224)(crop).shape == (3, 32, 32)
    with pytest.raises(DataError, match="an image of 256 x 240 pixels in a suite stored as 224 x 224 centre crops"):
        tiny.transform_for(224)(Image.new("RGB", (256, 240)))
