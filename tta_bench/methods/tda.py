"""tda: training-free dynamic adapter (Karmanov et al., CVPR 2024), CLIP teachers; no backpropagation.

Follows kdiAAA/TDA tda_runner.py (update_cache, compute_cache_logits, run_test_tda) and utils.py (get_clip_logits,
get_entropy, get_ood_preprocess); defaults per dataset from its configs/*.yaml (assets/method_defaults.yaml).

Online over the stream, one sample at a time (inside a batch too, so the batch size does not change a prediction):
1. The sample's CLIP feature and zero-shot logits: the image alone (ImageNet and the cross-domain sets), or, with
   ``n_views`` > 1 (ImageNet-A, -V2, -R, -Sketch: 64 = the image + 63 AugMix views of the full image, augmix.py),
   the 6 most confident views: their mean normalised feature (not renormalised), mean logits, marginal entropy,
   mean softmax.
2. Positive cache: per predicted class at most ``pos_shots`` (feature, entropy) entries, kept sorted by entropy; a
   new entry fills a free shot, else replaces the class's highest-entropy entry if its entropy is lower.
3. Negative cache: the same with ``neg_shots``, admitting only samples whose entropy / log2(C) lies strictly between
   ``neg_entropy_low`` and ``neg_entropy_high`` (the reference divides the entropy in nats by log2 C), and keeping
   their mean softmax.
4. Prediction (caches updated first, as there): zero-shot logits + pos_alpha x exp(-pos_beta (1 - f.k)) @ one-hot
   labels - neg_alpha x exp(-neg_beta (1 - f.k)) @ [neg_mask_low < p < neg_mask_high] of the cached softmax.

The caches are the state: ``reset()`` empties them (stream start, and every domain under reset_each_shift);
``--reset episodic`` empties them before every batch. Deliberate difference: cache arithmetic in float32 (the
reference's is in float16, CLIP's CUDA dtype).

Text head: each of TDA's datasets has its own templates (kdiAAA/TDA datasets/<dataset>.py): TIP-Adapter's 7 ImageNet
templates (``--prompts tip``: "itap of a {}.", "a bad photo of the {}.", ...) on ImageNet, ImageNet-A and -V2
(imagenet.py, imagenet_a.py, imagenetv2.py) and on Caltech101, Cars and SUN397; the 80 CLIP templates on
ImageNet-R and -Sketch (``ensemble``); CoOp's hand-crafted prompt on the other fine-grained sets (``coop``). They
are TDA's defaults per suite (assets/method_defaults.yaml, ``prompts``); ImageNet-C suites get ImageNet's.
``--prompts`` overrides them; the caches work on whatever text head the teacher has.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch.nn import functional as F

from ..choices import ResetMode
from ..errors import UserError
from ..teachers.base import Teacher
from ..teachers.clip import ClipTeacher
from . import augmix
from .base import Batch, Method, Output
from .options import Options, option
from .common import entropy, marginal_entropy, seeded, select_confident

Views = Literal["augmix", "crops"]


@dataclass
class Entry:
    key: torch.Tensor  # (D,) the sample's feature
    entropy: float  # nats
    probs: torch.Tensor | None = None  # (C,) its softmax (negative cache only)


class Cache:
    """Per predicted class, at most ``shots`` entries sorted by entropy, lowest first (TDA's ``update_cache``)."""

    def __init__(self, shots: int) -> None:
        self.shots = shots
        self.classes: dict[int, list[Entry]] = {}

    def add(self, label: int, entry: Entry) -> None:
        entries = self.classes.setdefault(label, [])
        if len(entries) < self.shots:
            entries.append(entry)
        elif entry.entropy < entries[-1].entropy:
            entries[-1] = entry
        entries.sort(key=lambda e: e.entropy)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.classes.values())

    def entries(self) -> list[tuple[int, Entry]]:
        """(class, entry) in the reference's order: classes ascending, each class's entries by entropy."""
        return [(label, e) for label in sorted(self.classes) for e in self.classes[label]]

    def logits(self, feature: torch.Tensor, alpha: float, beta: float,
               values: Callable[[int, Entry], torch.Tensor]) -> torch.Tensor:
        """alpha x exp(-beta (1 - affinity)) @ values: the cache's vote (C,) for a feature (D,)."""
        items = self.entries()
        keys = torch.stack([e.key for _, e in items])
        weights = torch.exp(-beta * (1 - keys @ feature))
        return alpha * weights @ torch.stack([values(label, e) for label, e in items])


@dataclass
class TdaOptions(Options):
    steps: int = 0  # training-free
    lr: float = 0.0
    reset: ResetMode = "online"
    # defaults: TDA's configs/imagenet.yaml (the other datasets: assets/method_defaults.yaml)
    positive: bool = True
    pos_shots: int = option(3, ge=1)
    pos_alpha: float = 2.0
    pos_beta: float = 5.0
    negative: bool = True
    neg_shots: int = option(2, ge=1)
    neg_alpha: float = 0.117
    neg_beta: float = 1.0
    neg_entropy_low: float = 0.2
    neg_entropy_high: float = 0.5
    neg_mask_low: float = 0.03
    neg_mask_high: float = 1.0
    n_views: int = option(1, ge=1)  # 1: the image alone; 64 on ImageNet-A/-V2/-R/-Sketch (the image + 63 views)
    views: Views = "augmix"  # augmix (TDA's AugMixAugmenter) | crops (crop + flip only)
    fraction: float = option(0.1, gt=0, le=1)  # share of most confident views kept


@dataclass
class Observation:
    """What TDA takes from one sample before its caches act (``get_clip_logits``)."""

    feature: torch.Tensor  # (D,)
    logits: torch.Tensor  # (C,) zero-shot logits
    entropy: float  # nats
    probs: torch.Tensor  # (C,)
    label: int  # pseudo-label


def observe(features: torch.Tensor, logits: torch.Tensor, fraction: float) -> Observation:
    """From a sample's normalised view features (V, D) and their logits (V, C); V = 1 is the image alone."""
    if len(features) == 1:
        return Observation(features[0], logits[0], float(entropy(logits)[0]), logits[0].softmax(-1),
                           int(logits[0].argmax()))
    chosen = select_confident(logits, fraction)
    kept = logits[chosen]
    mean_logits = kept.mean(0)
    return Observation(features[chosen].mean(0), mean_logits, float(marginal_entropy(kept)), kept.softmax(-1).mean(0),
                       int(mean_logits.argmax()))


class Tda(Method):
    precision = "bf16"  # TDA's official code runs CLIP in float16 on CUDA
    options_class = TdaOptions
    per_sample_updates = True
    restored = ("positive", "negative")  # the caches: empty at the stream start and after every reset

    def __init__(self, teacher: Teacher, options: TdaOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        if not isinstance(teacher, ClipTeacher):
            raise UserError(f"tda caches CLIP image features against CLIP's text head (e.g. clip:ViT-B-16/openai); "
                            f"{teacher.name} is not a CLIP teacher")
        self.raw_images = options.n_views > 1  # views are crops of the full image
        self.positive, self.negative = Cache(options.pos_shots), Cache(options.neg_shots)

    def features(self, batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per sample, normalised features (V, D) and zero-shot logits (V, C) of the image (and its views)."""
        def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = F.normalize(self.teacher.encode(x).float(), dim=-1)
            return features, self.teacher.head(features)

        if self.options.n_views == 1:
            features, logits = encode(batch.images)
            return [(f[None], z[None]) for f, z in zip(features, logits)]
        out = []
        for k, (image, seed) in enumerate(zip(batch.images, batch.seeds)):
            with seeded(seed):
                views = augmix.views(batch.raw_image(k), self.options.n_views - 1, image.shape[-1], "resized",
                                     mix=self.options.views == "augmix").to(image.device)
            out.append(encode(torch.cat([image[None], views])))
        return out

    def step(self, seen: Observation) -> torch.Tensor:
        """Update the caches with one sample, then its logits (C,) under them."""
        o = self.options
        if o.positive:
            self.positive.add(seen.label, Entry(seen.feature, seen.entropy))
        if o.negative and o.neg_entropy_low < seen.entropy / math.log2(len(seen.logits)) < o.neg_entropy_high:
            self.negative.add(seen.label, Entry(seen.feature, seen.entropy, seen.probs))
        out = seen.logits.clone()
        if o.positive and len(self.positive):
            out += self.positive.logits(seen.feature, o.pos_alpha, o.pos_beta,
                                        lambda label, e: F.one_hot(torch.tensor(label), len(out)).to(out))
        if o.negative and len(self.negative):
            mask = lambda label, e: ((e.probs > o.neg_mask_low) & (e.probs < o.neg_mask_high)).to(out)  # noqa: E731
            out -= self.negative.logits(seen.feature, o.neg_alpha, o.neg_beta, mask)
        return out

    @torch.no_grad()
    def predict(self, batch: Batch) -> Output:
        per_sample = self.features(batch)
        with torch.autocast(batch.images.device.type, enabled=False):
            logits = torch.stack([self.step(observe(f.float(), z.float(), self.options.fraction))
                                  for f, z in per_sample])
        return Output(logits, teacher_forwards=len(batch.images) * self.options.n_views)
