"""The DomainNet-126 source ResNet-50: an AdaContrast-format checkpoint (DDP prefixes, weight-normalised classifier,
extra keys) loads, and the folded classifier gives the logits of the weight-normalised model."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from tta_bench.data.labels import label_space
from tta_bench.errors import UserError
from tta_bench.teachers import build_teacher
from tta_bench.teachers.domainnet_resnet import DomainNetResNet, eval_transform


def adacontrast_checkpoint(path) -> nn.Module:
    """A random model in the reference's layout, saved as AdaContrast saves it; returns the reference model."""
    torch.manual_seed(0)
    model = DomainNetResNet()
    for module in model.modules():  # non-trivial BatchNorm statistics, so that eval mode matters
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    model.fc = nn.utils.weight_norm(nn.Linear(256, 126), dim=0)
    with torch.no_grad():
        model.fc.weight_g.uniform_(0.5, 2.0)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.momentum_queue"] = torch.zeros(3)  # keys the teacher does not use
    torch.save({"state_dict": state, "epoch": 30}, path)
    return model.eval()


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_an_adacontrast_checkpoint_loads_and_classifies_as_the_weight_normalised_model(tmp_path):
    reference = adacontrast_checkpoint(tmp_path / "best_real_2020.pth")
    teacher = build_teacher("domainnet126-resnet50", str(tmp_path / "best_real_2020.pth"), num_classes=126).eval()
    space = label_space("domainnet126")
    teacher.set_classes(space, list(range(126)))
    x = torch.rand(2, 3, 224, 224)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference.fc(reference.features((x - mean) / std))
        assert torch.allclose(teacher(x), expected, atol=1e-4)
    teacher.set_classes(space, [3, 5])
    with torch.no_grad():
        assert torch.allclose(teacher(x), expected[:, [3, 5]], atol=1e-4)


def test_it_needs_weights_of_its_own_shape(tmp_path):
    with pytest.raises(UserError, match="--weights"):
        build_teacher("domainnet126-resnet50", None, num_classes=126)
    torch.save({"state_dict": {"fc.weight": torch.zeros(126, 256)}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="missing"):
        build_teacher("domainnet126-resnet50", str(tmp_path / "other.pth"), num_classes=126)


def test_the_test_transform_squashes_to_256_square_then_crops_224():
    image = Image.new("RGB", (400, 200))
    image.paste((255, 0, 0), (0, 0, 40, 200))  # a red band at the left tenth
    out = eval_transform()(image)
    assert out.shape == (3, 224, 224)
    # squashed to 256 wide, the band is 25.6 px; the crop drops 16 px per side, so about 9.6 px of red remain
    red = (out[0] > 0.9) & (out[1] < 0.1)
    assert 8 <= int(red[0].sum()) <= 11
