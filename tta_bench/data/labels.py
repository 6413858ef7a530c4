"""Label spaces: the class keys (ImageNet wnids, CIFAR names) in their standard index order, and the
human-readable names that prompts use.

ImageNet labels always come from the standard 1000-synset order (timm's ``ImageNetInfo``), never from
enumerating the folders present: a subset of the classes would otherwise be silently relabelled. Besides CLIP's
class names, each ImageNet class carries its WordNet lemmas ("tench, Tinca tinca", timm's synset descriptions), the
names Hugging Face copies of ImageNet give their classes.
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
    synonyms: tuple[tuple[str, ...], ...] = ()  # per class, other names it goes by (ImageNet: its WordNet lemmas)

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
    """Non-empty lines of a shipped data file; lines starting with '#' (the file's source) are skipped."""
    text = resources.files("tta_bench").joinpath("assets", name).read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=None)
def label_space(name: str) -> LabelSpace:
    if name == "imagenet1k":
        from open_clip import IMAGENET_CLASSNAMES
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        lemmas = tuple(tuple(d.split(", ")) for d in info.label_descriptions())
        return LabelSpace(name, tuple(info.label_names()), tuple(IMAGENET_CLASSNAMES), lemmas)
    if name in ("cifar10", "cifar100"):
        keys = _asset_lines(f"{name}_classes.txt")
        return LabelSpace(name, keys, tuple(k.replace("_", " ") for k in keys))
    raise DataError(f"unknown label space {name!r}; expected imagenet1k, cifar10 or cifar100")


NAMED_TEMPLATES = {
    "single": ("a photo of a {}.",),  # CLIP's single template
    "apm": ("a photo of a {}",),  # as APM's official code tokenises it (rajatmodi62/apm, train_tta.py): no period
}
PROMPT_SPECS = (*NAMED_TEMPLATES, "ensemble")

# Fixed class subsets of a label space, shipped as data with their source in the file's header (assets/README.md).
CLASS_LISTS = {"imagenet-r": "imagenet_r_wnids.txt", "imagenet-a": "imagenet_a_wnids.txt"}


@lru_cache(maxsize=None)
def class_list(name: str) -> tuple[str, ...]:
    """The official 200 wnids of ImageNet-R or -A in ImageNet-1k order. A fixed list, never the classes found in a
    copy: a ``--limit`` sample or an incomplete copy must not shrink the label space the logits are restricted to."""
    if name not in CLASS_LISTS:
        raise DataError(f"unknown class list {name!r}; expected one of {', '.join(CLASS_LISTS)}")
    return _asset_lines(CLASS_LISTS[name])


def prompt_templates(kind: str) -> tuple[str, ...]:
    """Named templates (NAMED_TEMPLATES); 'ensemble' the 80 OpenAI ImageNet templates (open_clip)."""
    if kind in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[kind]
    if kind == "ensemble":
        from open_clip import OPENAI_IMAGENET_TEMPLATES

        return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    raise DataError(f"unknown prompts {kind!r}; expected one of {', '.join(PROMPT_SPECS)}")
