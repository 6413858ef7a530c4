"""--dry-run checks the teacher name (and the files a teacher needs) without building it."""
from __future__ import annotations

import pytest

from tta_bench.cli import main
from tta_bench.errors import UserError
from tta_bench.registry import UnknownNameError
from tta_bench.teachers.names import check_teacher

DRY = ["--dry-run", "--corruptions", "fog", "--limit", "1"]


@pytest.mark.parametrize("spec", ["tiny", "effnet-lite0", "clip:ViT-B-16/openai", "timm:resnet18.a1_in1k",
                                  "timm:resnet18"])
def test_valid_names_pass(spec):
    check_teacher(spec)


@pytest.mark.parametrize("spec, weights, head, phrase", [
    ("resnet", None, None, "unknown teacher 'resnet'; expected one of: cifar-resnet20"),
    ("clip:ViT-Q-99/openai", None, None, "open_clip knows no architecture 'ViT-Q-99'"),
    ("clip:ViT-B-16/opneai", None, None, "no pretrained weights 'opneai' for ViT-B-16; expected one of: openai"),
    ("timm:resnet_18", None, None, "timm knows no model 'resnet_18'"),
    ("timm:resnet18.b9_in1k", None, None, "timm has no pretrained weights 'resnet18.b9_in1k'"),
    ("dino:vit_small_patch14_dinov2.lvd142m", None, None, "give a linear head with --head FILE"),
    ("domainnet126-resnet50", None, None, "needs its weights file: --weights PATH"),
    ("cifar-resnet20", "/nonexistent/resnet20.th", None, "--weights /nonexistent/resnet20.th does not exist"),
    ("effnet-lite0:b7", None, None, "takes no ':' argument"),
])
def test_bad_names_fail_with_the_reason(spec, weights, head, phrase):
    with pytest.raises((UserError, UnknownNameError), match=None) as error:
        check_teacher(spec, weights, head)
    assert phrase in str(error.value)


def test_dry_run_refuses_a_bad_teacher_name(capsys):
    assert main(["--teacher", "clip:ViT-B-16/opneai", *DRY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: teacher clip:ViT-B-16/opneai") and err.count("\n") == 1
    assert main(["--teacher", "tiny", *DRY]) == 0
    assert "run folder:" in capsys.readouterr().out
