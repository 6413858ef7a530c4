"""--record-steps for MEMO and TPT: one prediction per listed step; step 0 is the unadapted model, the last step
is the final prediction."""
from __future__ import annotations

import torch

from tta_bench.methods import METHODS
from tta_bench.methods.base import Batch

from .conftest import CPU, images, teacher


def _run(name: str, teacher_name: str, size: int, **options):
    t = teacher(teacher_name)
    with torch.no_grad():
        unadapted = t(images(3, size)).argmax(1).tolist()
    cls = METHODS.get(name)
    method = cls(t, cls.parse_options(options), CPU)
    out = method.predict(Batch(images(3, size), [1, 2, 3], (0, 1, 3)))
    return unadapted, out


def test_memo_records_each_listed_step():
    unadapted, out = _run("memo", "tiny", 32, steps=3, n_views=4, bn_prior=-1, lr=0.5)
    for extra, before, final in zip(out.extras, unadapted, out.logits.argmax(1).tolist()):
        assert sorted(extra["steps"], key=int) == ["0", "1", "3"]
        assert extra["steps"]["0"]["pred"] == before
        assert extra["steps"]["3"]["pred"] == final


def test_tpt_records_each_listed_step():
    unadapted, out = _run("tpt", "tiny-clip", 64, steps=3, n_views=8)
    for extra, before, final in zip(out.extras, unadapted, out.logits.argmax(1).tolist()):
        assert sorted(extra["steps"], key=int) == ["0", "1", "3"]
        assert extra["steps"]["0"]["pred"] == before
        assert extra["steps"]["3"]["pred"] == final
