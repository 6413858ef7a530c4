"""Label spaces: the class keys (ImageNet wnids, CIFAR names, the fine-grained datasets' class names, DomainNet
folder names) in their standard index order, the human-readable names that prompts use, and the prompt templates.

ImageNet labels always come from the standard 1000-synset order (timm's ``ImageNetInfo``), never from
enumerating the folders present: a subset of the classes would otherwise be silently relabelled. Besides CLIP's
class names, each ImageNet class carries its WordNet lemmas ("tench, Tinca tinca", timm's synset descriptions), the
names Hugging Face copies of ImageNet give their classes. The other class lists ship as data in assets/ (their
sources in assets/README.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from ...choices import PROMPT_SETS
from ...errors import DataError
from ...vocabulary import FINE_GRAINED


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
    if name in CLASS_FILES:
        keys = _asset_lines(f"classes/{name}.txt")
        return LabelSpace(name, keys, tuple(k.replace("_", " ") for k in keys))  # CoOp and TPT read _ as a space
    raise DataError(f"unknown label space {name!r}; expected one of {', '.join(LABEL_SPACES)}")


# The ten cross-dataset sets of CoOp / TPT and DomainNet-126: one class file each in assets/classes
CLASS_FILES = (*FINE_GRAINED, "domainnet126")
LABEL_SPACES = ("imagenet1k", "cifar10", "cifar100", *CLASS_FILES)
NAMED_TEMPLATES = {
    "single": ("a photo of a {}.",),  # CLIP's single template
    "apm": ("a photo of a {}",),  # as APM's official code tokenises it (rajatmodi62/apm, train_tta.py): no period
    # TIP-Adapter's 7 ImageNet templates, as TDA classifies ImageNet, -A, -V2, Caltech101, Cars and SUN397 with them
    # (kdiAAA/TDA datasets/imagenet.py imagenet_templates, imagenet_a.py template, ...)
    "tip": ("itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
            "a {} in a video game.", "art of the {}.", "a photo of the small {}."),
}
PROMPT_SPECS = PROMPT_SETS  # the NAMED_TEMPLATES, and ensemble and coop (prompt_templates builds them)

# Fixed class subsets of a label space, shipped as data with their source in the file's header (assets/README.md).
CLASS_LISTS = {"imagenet-r": "imagenet_r_wnids.txt", "imagenet-a": "imagenet_a_wnids.txt"}


@lru_cache(maxsize=None)
def class_list(name: str) -> tuple[str, ...]:
    """The official 200 wnids of ImageNet-R or -A in ImageNet-1k order. A fixed list, never the classes found in a
    copy: a ``--limit`` sample or an incomplete copy must not shrink the label space the logits are restricted to."""
    if name not in CLASS_LISTS:
        raise DataError(f"unknown class list {name!r}; expected one of {', '.join(CLASS_LISTS)}")
    return _asset_lines(CLASS_LISTS[name])


@lru_cache(maxsize=None)
def _dataset_templates() -> dict[str, dict]:
    return yaml.safe_load(resources.files("tta_bench").joinpath("assets", "prompt_templates.yaml").read_text())


def prompt_templates(kind: str, space: str = "imagenet1k") -> tuple[str, ...]:
    """Named templates (NAMED_TEMPLATES); 'ensemble' CLIP's template set of the label space (the 80 OpenAI ImageNet
    templates from open_clip, or a fine-grained dataset's own from CLIP's prompts.md); 'coop' the one hand-crafted
    prompt CoOp's zero-shot CLIP uses for a fine-grained dataset ("a photo of a {}, a type of pet.")."""
    own = _dataset_templates().get(space)
    if kind in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[kind]
    if kind == "ensemble" and own:
        return tuple(own["clip"])
    if kind == "ensemble":
        from open_clip import OPENAI_IMAGENET_TEMPLATES

        return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    if kind == "coop" and own:
        return (own["coop"],)
    if kind == "coop":
        raise DataError(f"--prompts coop: CoOp has a hand-crafted prompt for the fine-grained datasets only "
                        f"({', '.join(FINE_GRAINED)}), not for {space}")
    raise DataError(f"unknown prompts {kind!r}; expected one of {', '.join(PROMPT_SPECS)} or a prompt file")
