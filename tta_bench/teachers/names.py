"""Teacher names checked without building the teacher (``--dry-run``): the kind is registered, its argument names
a model the library knows (and a pretrained tag it can download), and the files a kind needs are given and exist.

Nothing is downloaded and no weights are read, so a dry run of a CLIP ViT-L/14 stays a second long.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from . import TEACHERS

NO_ARGUMENT = ("effnet-lite0", "cifar-resnet20", "cifar-resnet56", "tiny", "tiny-clip")
NEEDS_WEIGHTS = ("domainnet126-resnet50",)  # no published file to download: the user's checkpoint


def check_teacher(spec: str, weights: str | None = None, head: str | None = None) -> None:
    kind, sep, arg = spec.partition(":")
    TEACHERS.entry(kind)  # unknown kind: the registry's error with the choices
    for flag, path in (("--weights", weights), ("--head", head)):
        if path and not Path(path).is_file():
            raise UserError(f"{flag} {path} does not exist")
    if kind in NO_ARGUMENT and sep:
        raise UserError(f"teacher {kind} takes no ':' argument, got {spec!r}")
    if kind in NEEDS_WEIGHTS and not weights:
        raise UserError(f"teacher {kind} needs its weights file: --weights PATH")
    if kind == "clip":
        _check_clip(spec, arg, weights)
    elif kind in ("timm", "dino"):
        _check_timm(spec, arg, weights)
        if kind == "dino" and not head:
            raise UserError(f"teacher {spec} is a backbone without a classifier: give a linear head with --head FILE")


def _check_clip(spec: str, arg: str, weights: str | None) -> None:
    import open_clip

    arch, _, pretrained = arg.partition("/")
    if arch not in open_clip.list_models():
        raise UserError(f"teacher {spec}: open_clip knows no architecture {arch!r}; e.g. ViT-B-16, ViT-L-14, RN50")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not weights and pretrained and pretrained not in tags:
        raise UserError(f"teacher {spec}: open_clip has no pretrained weights {pretrained!r} for {arch}; "
                        f"expected one of: {', '.join(tags[:6]) + (', ...' if len(tags) > 6 else '') or '(none: give --weights PATH)'}")


def _check_timm(spec: str, arg: str, weights: str | None) -> None:
    import timm

    if not arg or not timm.is_model(arg):
        raise UserError(f"teacher {spec}: timm knows no model {arg!r} (see timm.list_models())")
    if not weights and "." in arg and arg not in timm.list_pretrained(arg):
        raise UserError(f"teacher {spec}: timm has no pretrained weights {arg!r}; e.g. "
                        f"{', '.join(timm.list_pretrained(arg.split('.')[0] + '.*')[:4]) or 'none'}")
