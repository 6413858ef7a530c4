"""CLIP teachers through open_clip: image embedding as the feature, zero-shot text head as the classifier.

Text embeddings are computed once per run (``set_classes``), never per sample or per step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch.nn import functional as F

from ..data.labels import LabelSpace
from ..errors import UserError
from .base import Teacher, pixel_transform
from .checkpoints import load_state_dict

LOGIT_SCALE = 100.0  # CLIP's learned temperature, fixed at 100 for zero-shot classification
TEXT_BATCH = 256


class ClipTeacher(Teacher):
    uses_prompts = True
    keeps_own_preprocessing = True  # TPT and the unified benchmark run CLIP's preprocess on every suite

    def __init__(self, name: str, model: torch.nn.Module, tokenizer) -> None:
        from open_clip import get_model_preprocess_cfg

        cfg = get_model_preprocess_cfg(model)
        size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][0]
        super().__init__(name, pixel_transform(size, resize=size, interpolation=cfg.get("interpolation", "bicubic")),
                         cfg["mean"], cfg["std"], model.text_projection.shape[-1] if model.text_projection is not None
                         else model.visual.output_dim)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.register_buffer("text_embeddings", torch.zeros(0), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(self.normalize(x))

    @torch.no_grad()
    def _build_head(self, space: LabelSpace, classes: list[int], prompts: Sequence[Sequence[str]]) -> None:
        """Each class: the normalised mean of its prompts' normalised text embeddings (once per run). Every class's
        texts go through the text tower together, TEXT_BATCH at a time (one call per class cost 6.7 s for 1000
        classes on an H200, one prompt each)."""
        device = next(self.model.parameters()).device
        texts = [t for class_texts in prompts for t in class_texts]
        owner = torch.tensor([c for c, class_texts in enumerate(prompts) for _ in class_texts], device=device)
        emb = torch.cat([F.normalize(self.model.encode_text(self.tokenizer(texts[i:i + TEXT_BATCH]).to(device)).float(),
                                     dim=-1) for i in range(0, len(texts), TEXT_BATCH)])
        sums = torch.zeros(len(prompts), emb.shape[1], device=device).index_add_(0, owner, emb)
        self.text_embeddings = F.normalize(sums / torch.bincount(owner, minlength=len(prompts))[:, None], dim=-1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        # float32 even under bf16 autocast: 100 x cosine in bf16 moves in steps of ~0.2 and swaps close classes
        with torch.autocast(features.device.type, enabled=False):
            return LOGIT_SCALE * F.normalize(features.float(), dim=-1) @ self.text_embeddings.float().T


def build_clip(arg: str, weights: str | None = None, **_: object) -> ClipTeacher:
    """clip:<arch>/<pretrained>: open_clip CLIP, e.g. clip:ViT-B-16/openai or clip:ViT-L-14/openai (or a local
    checkpoint with --weights)."""
    import open_clip

    arch, _, pretrained = arg.partition("/")
    if arch not in open_clip.list_models():
        raise UserError(f"open_clip knows no architecture {arch!r}; e.g. ViT-B-16, ViT-L-14, RN50")
    if weights and not Path(weights).is_file():
        raise UserError(f"weights file {weights} does not exist")
    model = open_clip.create_model(arch, pretrained=None if weights else (pretrained or None))
    if weights:  # our safe loader, never open_clip's torch.load of an arbitrary pickle
        try:
            model.load_state_dict(load_state_dict(weights))
        except RuntimeError as exc:
            raise UserError(f"{weights} does not fit open_clip {arch}: {str(exc).splitlines()[0]}") from None
    return ClipTeacher(f"clip:{arg}", model, open_clip.get_tokenizer(arch))


def build_tiny_clip(arg: str = "", **_: object) -> ClipTeacher:
    """tiny-clip: a randomly initialised 2-layer CLIP from an open_clip config (tests; no download)."""
    import open_clip
    from importlib import resources

    config = resources.files("tta_bench").joinpath("assets", "tiny-clip.json")
    with resources.as_file(config) as path:
        open_clip.add_model_config(path)
    torch.manual_seed(0)
    return ClipTeacher("tiny-clip", open_clip.create_model("tiny-clip", pretrained=None), open_clip.get_tokenizer("tiny-clip"))
