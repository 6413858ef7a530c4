"""tpt: the confident-view selection, the text tower from embeddings, a falling loss on tiny-clip, and that
only the prompt context ever receives a gradient."""
import pytest
import torch
from torch.nn import functional as F

from tests.methods.conftest import CPU, changed, encoded_inputs, images, red_sided, state, teacher
from tta_bench import engine
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.common import entropy, marginal_entropy, select_confident

SIZE = 64  # tiny-clip's input size
FAST = {"n_views": 16}


def test_select_confident_keeps_int_of_the_fraction_lowest_entropy_first():
    """TPT's select_confident_samples: argsort(entropy)[:int(N x 0.1)], 6 of 64 views (not 7)."""
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)) * 3
    chosen = select_confident(logits, 0.1)
    assert len(chosen) == int(64 * 0.1) == 6
    order = entropy(logits).argsort()
    assert chosen.tolist() == order[:6].tolist()
    assert entropy(logits)[chosen].max() <= entropy(logits)[order[6:]].min()
    assert len(select_confident(torch.randn(70, 3), 0.1)) == 7  # 0.1 x 70 is 7.000000000000001 in floats
    assert len(select_confident(logits[:3], 0.1)) == 1  # the reference would keep none


def test_initial_prompt_reproduces_the_zero_shot_head():
    t = teacher("tiny-clip")
    method = build_method("tpt", t, {}, CPU)
    with torch.no_grad():
        torch.testing.assert_close(method.prompt(), t.text_embeddings, atol=1e-5, rtol=0)
        x = images(2, SIZE)
        features = F.normalize(t.encode(x).float(), dim=-1)
        torch.testing.assert_close(method.logits(features), t(x), atol=1e-4, rtol=0)
    assert method.prompt.ctx.shape == (4, t.model.token_embedding.embedding_dim)


def test_loss_falls_and_only_the_context_gets_gradients():
    t = teacher("tiny-clip")
    before = state(t)
    method = build_method("tpt", t, {"steps": 3}, CPU)  # the paper's lr, 3 steps
    ctx = method.prompt.ctx.detach().clone()
    features = F.normalize(t.encode(images(64, SIZE)).float(), dim=-1).detach()
    with torch.no_grad():
        chosen = select_confident(method.logits(features), 0.1)
        start = marginal_entropy(method.logits(features)[chosen]).item()
    assert torch.equal(method.adapt(features), chosen) and len(chosen) == 6
    with torch.no_grad():
        assert marginal_entropy(method.logits(features)[chosen]).item() < 0.5 * start
    assert not torch.equal(method.prompt.ctx, ctx)
    assert all(p.grad is None and not p.requires_grad for p in t.parameters())
    assert changed(before, t) == set()


def test_each_sample_starts_from_the_initial_prompt():
    t = teacher("tiny-clip")
    before = state(t)
    method = build_method("tpt", t, FAST, CPU)
    ctx = method.prompt.ctx.detach().clone()
    x = images(3, SIZE)
    together = method.predict(Batch(x, [5, 6, 7])).logits
    assert torch.equal(method.prompt.ctx, ctx) and not method.optimizer.state
    assert changed(before, t) == set()
    torch.testing.assert_close(method.predict(Batch(x[2:], [7])).logits[0], together[2])
    assert not torch.allclose(together, t(x), atol=1e-4)  # the tuned prompt changed the prediction


def test_views_are_crops_of_the_full_image():
    """The 63 views come from Batch.raw (RandomResizedCrop of the whole picture, TPT's get_preaugment), not from the
    teacher's centre crop: a picture whose sides are red, outside the centre square, shows red in many views."""
    t = teacher("tiny-clip")
    method = build_method("tpt", t, {}, CPU)
    picture = red_sided(SIZE)
    with encoded_inputs(t) as seen:
        method.predict(Batch(picture[None, :, :, SIZE:2 * SIZE] / 255, [0], raw=[picture]))
    image, views = seen[0][0], seen[0][1:]
    assert len(views) == 63 and not red(image[None]).any()
    assert red(views).float().mean() > 0.3


def red(x: torch.Tensor) -> torch.Tensor:
    return ((x[:, 0] > 0.9) & (x[:, 1] < 0.1)).flatten(1).any(1)


def test_augmix_views_option_runs():
    method = build_method("tpt", teacher("tiny-clip"), {**FAST, "views": "augmix"}, CPU)
    assert method.predict(Batch(images(1, SIZE), [0])).logits.shape == (1, 10)


def test_defaults_and_errors():
    o = build_method("tpt", teacher("tiny-clip"), {}, CPU).options
    assert (o.steps, o.lr, o.reset, o.n_views, o.views, o.fraction, o.ctx_init) == (
        1, 5e-3, "episodic", 64, "crops", 0.1, "a photo of a")
    with pytest.raises(UserError, match="CLIP"):
        build_method("tpt", teacher("tiny"), {}, CPU)
    with pytest.raises(UserError, match="views"):
        build_method("tpt", teacher("tiny-clip"), {"views": "mixup"}, CPU)


def test_tpt_end_to_end(cifar_run):
    summary = engine.run(cifar_run(method="tpt", teacher="tiny-clip", method_options=FAST), progress=False,
                         log=lambda *_: None)
    assert summary["method_options"]["n_views"] == 16 and summary["method_options"]["lr"] == 5e-3
    assert summary["cost"]["adaptation_steps"] == 8
