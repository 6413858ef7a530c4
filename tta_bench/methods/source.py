"""source: the frozen teacher's own prediction (zero-shot CLIP for CLIP teachers); the no-adaptation baseline, as
the unified TTA benchmark's classification/methods/source.py (the model in eval mode, no update)."""
from __future__ import annotations

import torch

from .base import Batch, Method, Output


class Source(Method):
    per_sample = True  # stateless: trivially the same under every stream order

    @torch.no_grad()
    def predict(self, batch: Batch) -> Output:
        return Output(self.teacher(batch.images), teacher_forwards=len(batch.images))
