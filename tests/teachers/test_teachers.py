"""Each teacher kind: output shapes, restricted heads, a real classifier on a known photo, safe weight loading."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED, needs_shared
from test_downloads import release
from tta_bench.downloads import WEIGHTS, cache_dir
from tta_bench.data.labels import label_space, prompt_templates
from tta_bench.errors import UserError
from tta_bench.registry import UnknownNameError
from tta_bench.teachers import TEACHERS, build_teacher
from tta_bench.teachers.checkpoints import load_state_dict
from tta_bench.teachers.cifar_resnet import CifarResNet

CIFAR10, IMAGENET = label_space("cifar10"), label_space("imagenet1k")
PROMPTS = prompt_templates("single")


def _batch(teacher, n: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(n)]
    return torch.stack([teacher.transform(im) for im in images])


@pytest.mark.parametrize("kind", ["tiny", "tiny-clip"])
def test_restricting_the_head_selects_the_same_columns(kind):
    teacher = build_teacher(kind, num_classes=10).eval()
    x = _batch(teacher)
    assert x.min() >= 0 and x.max() <= 1
    with torch.no_grad():
        teacher.set_classes(CIFAR10, range(10), PROMPTS)
        full = teacher(x)
        teacher.set_classes(CIFAR10, [9, 2, 4], PROMPTS)
        restricted = teacher(x)
    assert full.shape == (3, 10) and restricted.shape == (3, 3)
    torch.testing.assert_close(restricted, full[:, [9, 2, 4]])
    assert teacher.encode(x).shape == (3, teacher.feature_dim)


def test_tiny_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = build_teacher("tiny", num_classes=7), build_teacher("tiny", num_classes=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert a.transform(Image.new("RGB", (50, 40))).shape == (3, 32, 32)


def test_effnet_lite0_classifies_chelsea_as_a_tabby_cat():
    import skimage.data

    teacher = build_teacher("effnet-lite0").eval()
    teacher.set_classes(IMAGENET, range(1000), PROMPTS)
    x = teacher.transform(Image.fromarray(skimage.data.chelsea())).unsqueeze(0)
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        logits = teacher(x)
    assert logits.shape == (1, 1000)
    assert 281 in logits.topk(5).indices[0].tolist()


def test_cifar_resnet_without_weights_loads_the_downloaded_release(tmp_path, monkeypatch):
    served, model = release(tmp_path / "server")
    monkeypatch.setitem(WEIGHTS, "cifar-resnet20", served.as_uri())
    teacher = build_teacher("cifar-resnet20", num_classes=10).eval()
    teacher.set_classes(CIFAR10, range(10), PROMPTS)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model(teacher.normalize(x)))
    assert (cache_dir() / "weights" / served.name).is_file()


def test_cifar_resnet_loads_a_weights_only_checkpoint_and_refuses_other_label_spaces(tmp_path):
    torch.manual_seed(0)
    model = CifarResNet(20)
    torch.save({"best_prec1": 90.0, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               tmp_path / "r20.th")
    teacher = build_teacher("cifar-resnet20", weights=str(tmp_path / "r20.th")).eval()
    teacher.set_classes(CIFAR10, range(10), PROMPTS)
    x = _batch(teacher)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model.eval()(teacher.normalize(x)))
    with pytest.raises(UserError, match="classifies cifar10 classes, but the suite uses the imagenet1k"):
        teacher.set_classes(IMAGENET, range(1000), PROMPTS)
    with pytest.raises(UserError, match="does not fit cifar-resnet56"):
        build_teacher("cifar-resnet56", weights=str(tmp_path / "r20.th"))


@needs_shared
def test_real_resnet20_checkpoint_loads():
    state = load_state_dict(SHARED / "weights" / "resnet20-12fca82f.th")
    assert not any(k.startswith("module.") for k in state)
    CifarResNet(20).load_state_dict(state)  # strict: every key and shape fits


def test_unknown_teacher_lists_the_choices():
    with pytest.raises(UnknownNameError, match="unknown teacher 'resnet'; expected one of: .*effnet-lite0.*tiny"):
        build_teacher("resnet")
    assert {"clip", "timm", "dino", "effnet-lite0", "cifar-resnet20", "tiny", "tiny-clip"} <= set(TEACHERS.names())


class _Payload:
    """Unpickling this object would create ``marker``: a checkpoint that runs code when loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_malicious_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="refused to load .*evil.pt: not a weights-only torch checkpoint"):
        load_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()


def test_checkpoint_loader_formats_and_errors(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "w.safetensors"))
    assert torch.equal(load_state_dict(tmp_path / "w.safetensors")["w"], torch.ones(2))
    torch.save({"model": {"module.w": torch.ones(1)}}, tmp_path / "nested.pt")
    assert list(load_state_dict(tmp_path / "nested.pt")) == ["w"]
    torch.save({"w": [1, 2]}, tmp_path / "not_tensors.pt")
    with pytest.raises(UserError, match="expected a state dict of tensors"):
        load_state_dict(tmp_path / "not_tensors.pt")
    with pytest.raises(UserError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pt")


@pytest.mark.parametrize("name, content, phrase", [
    ("empty.th", b"", "is empty"),
    ("garbage.th", b"not a checkpoint at all", "not a weights-only torch checkpoint"),
    ("garbage.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}", "not a readable safetensors file"),
])
def test_broken_checkpoint_files_give_one_line(tmp_path, name, content, phrase):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=phrase) as info:
        load_state_dict(tmp_path / name)
    assert "\n" not in str(info.value) and "weights_only` set to `False`" not in str(info.value)


def test_a_checkpoint_whose_name_carries_a_sha256_prefix_is_verified(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "tmp.th")
    digest = hashlib.sha256((tmp_path / "tmp.th").read_bytes()).hexdigest()
    good = tmp_path / f"net-{digest[:8]}.th"
    (tmp_path / "tmp.th").rename(good)
    assert torch.equal(load_state_dict(good)["w"], torch.ones(3))
    swapped = tmp_path / "net-12fca82f.th"  # the name of the released ResNet-20, another file's content
    swapped.write_bytes(good.read_bytes())
    with pytest.raises(UserError, match="does not match the sha256 prefix in its name"):
        load_state_dict(swapped)


def test_a_pickle_given_to_a_clip_teacher_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"extra": _Payload(str(marker))}, tmp_path / "clip.pt")
    with pytest.raises(UserError, match="refused to load"):
        build_teacher("clip:ViT-B-32/openai", weights=str(tmp_path / "clip.pt"))
    assert not marker.exists()
