"""Label spaces: the class keys (ImageNet wnids, CIFAR names) in their standard index order, and the
human-readable names that prompts use.

ImageNet labels always come from the standard 1000-synset order (timm's ``ImageNetInfo``), never from
enumerating the folders present: a subset of the classes would otherwise be silently relabelled.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..errors import DataError


@dataclass(frozen=True)
class LabelSpace:
    name: str
    keys: tuple[str, ...]  # wnids for ImageNet, names for CIFAR
    names: tuple[str, ...]  # class names for text prompts

    def __len__(self) -> int:
        return len(self.keys)

    def index_of(self, key: str, where: str = "") -> int:
        try:
            return self._index()[key]
        except KeyError:
            raise DataError(f"{key!r}{' in ' + where if where else ''} is not a {self.name} class "
                            f"(expected one of its {len(self)} class keys, e.g. {self.keys[0]!r})") from None

    def __contains__(self, key: str) -> bool:
        return key in self._index()

    def _index(self) -> dict[str, int]:
        return _index_of(self)


@lru_cache(maxsize=None)
def _index_of(space: LabelSpace) -> dict[str, int]:
    return {k: i for i, k in enumerate(space.keys)}


def _asset_lines(name: str) -> tuple[str, ...]:
    text = resources.files("tta_bench").joinpath("assets", name).read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@lru_cache(maxsize=None)
def label_space(name: str) -> LabelSpace:
    if name == "imagenet1k":
        from open_clip import IMAGENET_CLASSNAMES
        from timm.data import ImageNetInfo

        wnids = tuple(ImageNetInfo().label_names())
        return LabelSpace(name, wnids, tuple(IMAGENET_CLASSNAMES))
    if name in ("cifar10", "cifar100"):
        keys = _asset_lines(f"{name}_classes.txt")
        return LabelSpace(name, keys, tuple(k.replace("_", " ") for k in keys))
    raise DataError(f"unknown label space {name!r}; expected imagenet1k, cifar10 or cifar100")


NAMED_TEMPLATES = {
    "single": ("a photo of a {}.",),  # CLIP's single template
    "apm": ("a photo of a {}",),  # as APM's official code tokenises it (rajatmodi62/apm, train_tta.py): no period
}
PROMPT_SPECS = (*NAMED_TEMPLATES, "ensemble")


def prompt_templates(kind: str) -> tuple[str, ...]:
    """Named templates (NAMED_TEMPLATES); 'ensemble' the 80 OpenAI ImageNet templates (open_clip)."""
    if kind in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[kind]
    if kind == "ensemble":
        from open_clip import OPENAI_IMAGENET_TEMPLATES

        return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    raise DataError(f"unknown prompts {kind!r}; expected one of {', '.join(PROMPT_SPECS)}")
