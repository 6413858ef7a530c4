"""tpt: test-time prompt tuning (Shu et al., NeurIPS 2022), CLIP teachers only.

Follows azshue/TPT tpt_classification.py (test_time_tuning, select_confident_samples, avg_entropy) and
data/datautils.py (AugMixAugmenter). For each test image alone: 4 context tokens, initialised from the word
embeddings of "a photo of a", form the prompt [SOS] ctx x4 [class name] . [EOS] for every class, run through CLIP's
frozen text transformer. The image (the teacher's centre crop) and 63 random views drawn from the full image
(RandomResizedCrop + flip, the reference's pre-augmentation; with ``views=augmix`` also its AugMix, which TPT uses
for the fine-grained datasets, ``augmix=len(set_id) > 1``) are encoded once; the int(0.1 x 64) = 6 most confident
(lowest entropy) are kept and one AdamW step (lr 5e-3) on the context minimises the entropy of their mean
prediction. The original image is then classified with the tuned prompt, and context and optimizer are reset for
the next sample.

The confident views are chosen once, with the initial prompt, as in TPT's code. The tuned prompt replaces the
teacher's text head, so ``--prompts`` does not apply; the text features of all classes are recomputed at every step
(inherent to TPT).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn
from torch.nn import functional as F

from ..choices import ResetMode
from ..errors import UserError
from ..teachers.base import Teacher
from ..teachers.clip import LOGIT_SCALE, ClipTeacher
from .base import Batch, Method, Output, StepRecorder, optimizer_step
from .options import option
from . import augmix
from .common import OptimizerKind, OptimizerOptions, each_sample, marginal_entropy, seeded, select_confident

Views = Literal["crops", "augmix"]


def encode_embedded_text(clip: nn.Module, embeddings: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
    """open_clip CLIP's text tower from token *embeddings* (C, L, W) instead of token ids, so that context
    vectors can be learned: + positional embedding, causal transformer, final LayerNorm, the feature at each
    sequence's EOS position ``eos`` (C,), text projection. Returns (C, D), not normalised."""
    cast = clip.transformer.get_cast_dtype()
    x = embeddings.to(cast) + clip.positional_embedding.to(cast)
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
    x = x[torch.arange(len(x), device=x.device), eos]
    projection = clip.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, nn.Linear) else x @ projection


class PromptLearner(nn.Module):
    """The learnable context of TPT (CoOp's prompt layout). Only ``ctx`` is a parameter, and only it is in the
    state dict: the per-class prefix/suffix embeddings are fixed buffers."""

    def __init__(self, clip: nn.Module, tokenizer, class_names: list[str], init: str, device: torch.device) -> None:
        super().__init__()
        n_ctx = int(tokenizer([init])[0].argmax()) - 1  # tokens between SOS and EOS
        tokens = tokenizer([f"{init} {name}." for name in class_names]).to(device)
        with torch.no_grad():
            embedded = clip.token_embedding(tokens)
        self.ctx = nn.Parameter(embedded[0, 1:1 + n_ctx].clone())
        self.register_buffer("prefix", embedded[:, :1], persistent=False)  # SOS
        self.register_buffer("suffix", embedded[:, 1 + n_ctx:], persistent=False)  # class name . EOS padding
        self.register_buffer("eos", tokens.argmax(dim=-1), persistent=False)  # EOS has the largest token id
        self.clip = [clip]  # a list: the frozen CLIP must not become a submodule (state dict, parameters)

    def forward(self) -> torch.Tensor:
        """Normalised text embeddings (C, D) of every class under the current context."""
        ctx = self.ctx.unsqueeze(0).expand(len(self.prefix), -1, -1)
        embeddings = torch.cat([self.prefix, ctx.to(self.prefix.dtype), self.suffix], dim=1)
        return F.normalize(encode_embedded_text(self.clip[0], embeddings, self.eos).float(), dim=-1)


@dataclass
class TptOptions(OptimizerOptions):
    steps: int = 1
    lr: float = option(5e-3, gt=0)
    reset: ResetMode = "episodic"
    optimizer: OptimizerKind = "adamw"  # tpt_classification.py: torch.optim.AdamW(trainable_param, lr)
    weight_decay: float = 0.01  # AdamW's default, which TPT keeps
    n_views: int = option(64, ge=1)  # the original image + 63 augmented views
    views: Views = "crops"  # crops (ImageNet sets) | augmix (the paper's fine-grained datasets)
    fraction: float = option(0.1, gt=0, le=1)  # share of most confident views kept
    ctx_init: str = "a photo of a"


class Tpt(Method):
    per_sample = True
    precision = "bf16"  # TPT's official code runs CLIP under torch.cuda.amp autocast
    options_class = TptOptions
    raw_images = True  # views are crops of the full image
    restored = ("prompt", "optimizer")

    def __init__(self, teacher: Teacher, options: TptOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        if not isinstance(teacher, ClipTeacher) or not hasattr(teacher.model, "token_embedding"):
            raise UserError(f"tpt tunes the text prompt of a CLIP teacher (e.g. clip:ViT-B-16/openai); "
                            f"{teacher.name} has no CLIP text tower")
        teacher.requires_grad_(False)
        self.prompt = PromptLearner(teacher.model, teacher.tokenizer, teacher.class_names, options.ctx_init, device)
        self.optimizer = options.build_optimizer(self.prompt.parameters())

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """CLIP logits of normalised image features under the current prompt context, in float32 even under
        autocast: bf16 would quantise 100 x cosine to steps of about 0.2."""
        text = self.prompt()
        with torch.autocast(features.device.type, enabled=False):
            return LOGIT_SCALE * features.float() @ text.float().T

    def adapt(self, features: torch.Tensor, on_step: Callable[[int], None] = lambda step: None) -> torch.Tensor | None:
        """``steps`` AdamW steps on the context, from normalised view features (N, D); the confident views are
        chosen once, with the context as it is on entry. Returns their indices (None for 0 steps)."""
        chosen = None
        with torch.enable_grad():
            for k in range(self.options.steps):
                on_step(k)
                view_logits = self.logits(features)
                if chosen is None:
                    chosen = select_confident(view_logits.detach(), self.options.fraction)
                marginal_entropy(view_logits[chosen]).backward()
                optimizer_step(self.optimizer)
        on_step(self.options.steps)
        return chosen

    def predict(self, batch: Batch) -> Output:
        def one(image: torch.Tensor, seed: int, raw: torch.Tensor) -> tuple[torch.Tensor, dict]:
            with seeded(seed):
                views = augmix.views(raw, self.options.n_views - 1, image.shape[-1], "resized",
                                     mix=self.options.views == "augmix").to(image.device)
            with torch.no_grad():  # the image tower is frozen: encode the image and its views once
                features = F.normalize(self.teacher.encode(torch.cat([image[None], views])).float(), dim=-1)
            recorder = StepRecorder(batch.record_steps, lambda: self.logits(features[:1]), self.teacher.classes)
            self.adapt(features, recorder)
            with torch.no_grad():
                return self.logits(features[:1]), recorder.extras()

        logits, extras = each_sample(batch, one, self.reset)
        n, steps = len(batch.images), self.options.steps
        return Output(logits, extras, adaptation_steps=n * steps, teacher_forwards=n * self.options.n_views)
