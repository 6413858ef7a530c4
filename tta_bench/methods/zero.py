"""zero: test-time adaptation with zero temperature (Farina et al., NeurIPS 2024), CLIP teachers; no optimisation.

Follows FarinaMatteo/zero ttas/zero.py (Zero.zero), ttas/base.py (confidence_filter), data/augs.py
(MultiViewCropAndFlip) and utils/tools.py (greedy_break). For each test image alone: the image (the teacher's
centre crop) and 63 RandomResizedCrop + flip views of the full image, as TPT draws them for the ImageNet sets; the
int(0.3 x 64) = 19 most confident (lowest entropy at CLIP's own temperature) are kept; each kept view votes with the
softmax of its unscaled cosine similarities divided by a "zero" temperature, and the class with the most votes wins.
A tie between classes goes to the first of them predicted by the discarded views, in order of confidence
(``greedy_break``).

The zero temperature, as zero.py: torch.finfo(dtype).eps of the cosines' dtype, float16 under the official CUDA CLIP
(OpenAI's clip.load keeps float16 weights on CUDA): 2^-10 ~ 9.8e-4, the default of ``temperature``. A view whose two
best classes lie within a few 1e-3 of cosine splits its vote between them (softly); ``temperature=0`` is the limit, a
hard vote for the argmax (exact ties split). Difference named: the division and softmax run in float32 here, where
the reference's float16 cosines are also rounded (to steps of 2^-11 or 2^-12 at CLIP's cosines).

The returned row is the reference's output: the votes per class, plus one for a tie's winner. Its top-1 is ZERO's
prediction and its top-5 ranks by votes; it is not a calibrated probability. Deliberate difference: when no
discarded view predicts a tied class, the tie goes to the tied class the most confident discarded view scores
highest (the reference intends this, but indexes the logits with the bitwise complement of the tied indices).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..choices import ResetMode
from ..errors import UserError
from ..teachers.base import Teacher
from ..teachers.clip import LOGIT_SCALE, ClipTeacher
from . import augmix
from .base import Batch, Method, Output
from .options import Options, option
from .common import each_sample, entropy, seeded

Views = Literal["crops", "augmix"]


FLOAT16_EPS = float(torch.finfo(torch.float16).eps)  # zero.py's zero_temp under the official float16 CLIP


def zero_temperature_vote(logits: torch.Tensor, fraction: float, temperature: float = FLOAT16_EPS) -> torch.Tensor:
    """ZERO's prediction row (C,) from the logits (N, C) of a sample's views (CLIP's, cosines x LOGIT_SCALE): the
    summed softmax of the unscaled cosines / ``temperature`` of the int(fraction x N) most confident views (0: their
    hard argmax votes), +1 to the winner of a tie."""
    order = entropy(logits).argsort(stable=True)
    k = max(1, int(len(logits) * fraction))
    kept, rest = logits[order[:k]], logits[order[k:]]
    if temperature > 0:
        votes = (kept.float() / LOGIT_SCALE / temperature).softmax(-1).sum(0)
    else:
        top = kept == kept.max(dim=-1, keepdim=True).values
        votes = (top.float() / top.sum(-1, keepdim=True)).sum(0)
    ties = (votes == votes.max()).nonzero().flatten().tolist()
    if len(ties) > 1:
        votes[_break_tie(ties, rest if len(rest) else kept)] += 1
    return votes


def _break_tie(ties: list[int], ranked: torch.Tensor) -> int:
    for pred in ranked.argmax(-1).tolist():
        if pred in ties:
            return pred
    return ties[int(ranked[0, ties].argmax())]


@dataclass
class ZeroOptions(Options):
    steps: int = 0  # no optimisation
    lr: float = 0.0
    reset: ResetMode = "episodic"
    n_views: int = option(64, ge=1)  # the original image + 63 views
    fraction: float = option(0.3, gt=0, le=1)  # gamma: share of most confident views kept
    views: Views = "crops"  # crops (ZERO's MultiViewCropAndFlip) | augmix (TPT's AugMix views)
    temperature: float = option(FLOAT16_EPS, ge=0)  # divides the unscaled cosines (zero.py: float16's eps); 0: hard votes


class Zero(Method):
    per_sample = True
    precision = "bf16"  # ZERO's official code runs CLIP under torch.cuda.amp autocast
    options_class = ZeroOptions
    raw_images = True  # views are crops of the full image

    def __init__(self, teacher: Teacher, options: ZeroOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        if not isinstance(teacher, ClipTeacher):
            raise UserError(f"zero votes over CLIP's zero-shot predictions (e.g. clip:ViT-B-16/openai); {teacher.name} "
                            "is not a CLIP teacher")

    @torch.no_grad()
    def predict(self, batch: Batch) -> Output:
        def one(image: torch.Tensor, seed: int, raw: torch.Tensor) -> tuple[torch.Tensor, dict]:
            with seeded(seed):
                views = augmix.views(raw, self.options.n_views - 1, image.shape[-1], "resized",
                                     mix=self.options.views == "augmix").to(image.device)
            logits = self.teacher(torch.cat([image[None], views])).float()
            return zero_temperature_vote(logits, self.options.fraction, self.options.temperature)[None], {}

        logits, extras = each_sample(batch, one, lambda: None)
        return Output(logits, extras, teacher_forwards=len(batch.images) * self.options.n_views)
