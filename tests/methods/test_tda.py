"""tda: the caches fill and evict by entropy as kdiAAA/TDA's update_cache does, the negative cache admits by normalised
entropy, the cache logits follow compute_cache_logits, a cache of confident samples moves predictions, and the
caches are the whole state (reset empties them; the batch size does not matter)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from tests.methods.conftest import CPU, encoded_inputs, images, red_sided, teacher
from tta_bench import engine
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.tda import Cache, Entry, Observation, observe

SIZE = 64  # tiny-clip's input
C, D = 10, 8


@pytest.fixture(scope="module")
def clip():
    """TDA never changes its teacher: one tiny-clip for the module."""
    return teacher("tiny-clip")


def entry(value: float, seed: int = 0) -> Entry:
    return Entry(F.normalize(torch.randn(D, generator=torch.Generator().manual_seed(seed)), dim=0), value)


def test_cache_fills_to_capacity_then_replaces_its_worst_entry_by_a_more_confident_one():
    cache = Cache(shots=3)
    for value in (0.5, 0.2, 0.9):
        cache.add(4, entry(value))
    assert [e.entropy for e in cache.classes[4]] == [0.2, 0.5, 0.9]  # full, sorted lowest entropy first
    cache.add(4, entry(1.2))  # less confident than every entry: ignored
    assert [e.entropy for e in cache.classes[4]] == [0.2, 0.5, 0.9]
    cache.add(4, entry(0.1))  # evicts the worst (0.9)
    assert [e.entropy for e in cache.classes[4]] == [0.1, 0.2, 0.5]
    cache.add(4, entry(0.3))  # evicts 0.5 only: one entry per arrival
    assert [e.entropy for e in cache.classes[4]] == [0.1, 0.2, 0.3]
    cache.add(1, entry(2.0))  # another class has its own shots
    assert [label for label, _ in cache.entries()] == [1, 4, 4, 4] and len(cache) == 4


def test_cache_logits_are_alpha_exp_of_minus_beta_one_minus_affinity_times_the_values():
    cache = Cache(shots=2)
    keys = F.normalize(torch.randn(3, D, generator=torch.Generator().manual_seed(1)), dim=1)
    for label, key, value in ((2, keys[0], 0.1), (0, keys[1], 0.3), (2, keys[2], 0.2)):
        cache.add(label, Entry(key, value))
    query = F.normalize(torch.randn(D, generator=torch.Generator().manual_seed(2)), dim=0)
    got = cache.logits(query, 2.0, 5.0, lambda label, e: F.one_hot(torch.tensor(label), C).float())
    expected = torch.zeros(C)
    for label, key in ((2, keys[0]), (0, keys[1]), (2, keys[2])):
        expected[label] += 2.0 * math.exp(-5.0 * (1 - float(query @ key)))
    torch.testing.assert_close(got, expected)


def observation(logits: torch.Tensor, feature: torch.Tensor) -> Observation:
    return observe(feature[None], logits[None], 0.1)


def test_positive_cache_takes_every_sample_and_the_negative_cache_only_uncertain_ones(clip):
    method = build_method("tda", clip, {}, CPU)
    feature = F.normalize(torch.ones(D), dim=0)
    confident = torch.tensor([20.0] + [0.0] * (C - 1))  # entropy / log2(10) ~ 0: below the 0.2 floor
    uncertain = torch.tensor([4.0, 2.0] + [0.0] * (C - 2))  # 0.92 nats / log2(10) = 0.28: inside (0.2, 0.5)
    flat = torch.zeros(C)  # ln 10 / log2 10 = 0.69: above the 0.5 ceiling
    ratios = [observation(x, feature).entropy / math.log2(C) for x in (confident, uncertain, flat)]
    assert ratios[0] < 0.2 < ratios[1] < 0.5 < ratios[2]
    for x in (confident, uncertain, flat):
        method.step(observation(x, feature))
    assert len(method.positive) == 3 and len(method.negative) == 1
    (label, e), = method.negative.entries()
    assert label == 0 and torch.allclose(e.probs, uncertain.softmax(-1))
    method.reset()
    assert len(method.positive) == len(method.negative) == 0


def test_a_cache_of_confident_samples_moves_the_prediction_towards_their_class(clip):
    """Zero-shot says class 1 for a query whose feature sits next to confidently cached class-3 samples: the positive
    cache (alpha 2, beta 5) turns it to class 3; without the cache it stays 1."""
    torch.manual_seed(0)
    anchor = F.normalize(torch.randn(D), dim=0)
    near = lambda: F.normalize(anchor + 0.05 * torch.randn(D), dim=0)  # noqa: E731
    confident_3 = torch.zeros(C).index_fill_(0, torch.tensor([3]), 12.0)
    query = torch.zeros(C).index_fill_(0, torch.tensor([1]), 1.0).index_fill_(0, torch.tensor([3]), 0.2)
    for options, expected in (({}, 3), ({"positive": False, "negative": False}, 1)):
        method = build_method("tda", clip, options, CPU)
        for _ in range(3):
            method.step(observation(confident_3, near()))
        out = method.step(observation(query, near()))
        assert int(out.argmax()) == expected
        assert len(method.positive) == (0 if options else 4)  # 3 of class 3, and the query in class 1's shots


def test_negative_cache_lowers_the_classes_an_uncertain_neighbour_found_likely(clip):
    method = build_method("tda", clip, {"positive": False}, CPU)
    feature = F.normalize(torch.ones(D), dim=0)
    uncertain = torch.tensor([4.0, 2.0] + [0.0] * (C - 2))
    zero_shot = method.step(observation(torch.zeros(C), feature))  # flat: too uncertain for the cache
    assert torch.equal(zero_shot, torch.zeros(C)) and len(method.negative) == 0
    out = method.step(observation(uncertain, feature))
    mask = torch.tensor([1.0, 1.0] + [0.0] * (C - 2))  # p > 0.03: classes 0 (0.78) and 1 (0.11); 0.014 elsewhere
    torch.testing.assert_close(out, uncertain - 0.117 * math.exp(-1.0 * (1 - 1)) * mask)  # its own entry: affinity 1


def test_views_keep_the_six_most_confident_and_average_them():
    logits = torch.randn(64, C, generator=torch.Generator().manual_seed(0)) * 3
    features = F.normalize(torch.randn(64, D, generator=torch.Generator().manual_seed(1)), dim=1)
    seen = observe(features, logits, 0.1)
    kept = (-(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)).argsort()[:6]
    torch.testing.assert_close(seen.feature, features[kept].mean(0))  # not renormalised, as the reference
    torch.testing.assert_close(seen.logits, logits[kept].mean(0))
    torch.testing.assert_close(seen.probs, logits[kept].softmax(-1).mean(0))
    assert seen.label == int(logits[kept].mean(0).argmax())


def test_views_are_drawn_from_the_full_image(clip):
    t = clip
    method = build_method("tda", t, {"n_views": 16}, CPU)
    assert method.raw_images and not build_method("tda", t, {}, CPU).raw_images
    picture = red_sided(SIZE)
    with encoded_inputs(t) as seen:
        method.predict(Batch(picture[None, :, :, SIZE:2 * SIZE] / 255, [0], raw=[picture]))
    views = seen[0][1:]
    assert len(views) == 15 and ((views[:, 0] > 0.9) & (views[:, 1] < 0.1)).flatten(1).any(1).float().mean() > 0.3


def test_state_is_the_caches_the_batch_size_does_not_matter_and_reset_empties_them(clip):
    t = clip
    x = images(6, SIZE)
    method = build_method("tda", t, {}, CPU)
    together = method.predict(Batch(x, list(range(6)))).logits
    with torch.no_grad():
        zero_shot = t(x)
    shots = lambda n: int(torch.bincount(zero_shot[:n].argmax(1)).clamp(max=3).sum())  # noqa: E731  3 per class
    assert len(method.positive) == shots(6)
    method.reset()
    one_by_one = torch.cat([method.predict(Batch(x[k:k + 1], [k])).logits for k in range(6)])
    torch.testing.assert_close(together, one_by_one)
    method.reset()
    assert len(method.positive) == len(method.negative) == 0
    torch.testing.assert_close(method.predict(Batch(x, list(range(6)))).logits, together)
    assert not torch.allclose(together, zero_shot, atol=1e-3)
    plain = build_method("tda", t, {"positive": False, "negative": False}, CPU)
    torch.testing.assert_close(plain.predict(Batch(x, list(range(6)))).logits, zero_shot)


def test_defaults_are_the_imagenet_config_and_errors(clip):
    o = build_method("tda", clip, {}, CPU).options
    assert (o.pos_shots, o.pos_alpha, o.pos_beta) == (3, 2.0, 5.0)
    assert (o.neg_shots, o.neg_alpha, o.neg_beta) == (2, 0.117, 1.0)
    assert (o.neg_entropy_low, o.neg_entropy_high, o.neg_mask_low, o.neg_mask_high) == (0.2, 0.5, 0.03, 1.0)
    assert (o.n_views, o.fraction, o.reset) == (1, 0.1, "online")
    with pytest.raises(UserError, match="CLIP"):
        build_method("tda", teacher("tiny"), {}, CPU)
    with pytest.raises(UserError, match="views"):
        build_method("tda", clip, {"views": "mixup"}, CPU)


def test_tda_end_to_end_is_online_and_never_flagged_for_one_batch_segments(cifar_run):
    summary = engine.run(cifar_run(method="tda", teacher="tiny-clip", batch_size=8), progress=False,
                         log=lambda *_: None)
    assert summary["splits"]["gaussian_noise-5"]["n"] == 8 and summary["notes"] == []
    assert summary["method_options"]["pos_alpha"] == 2.0 and summary["cost"]["teacher_forwards"] == 8


def test_the_text_head_is_tdas_prompt_set_of_the_suite():
    """kdiAAA/TDA datasets/*.py: TIP-Adapter's 7 templates on ImageNet, -A, -V2 (and Caltech101, Cars, SUN397), the
    80 CLIP templates on -R and -Sketch, CoOp's prompt on the other fine-grained sets; --prompts wins."""
    from tta_bench.config import RunConfig
    from tta_bench.data.labels import prompt_templates

    tip = prompt_templates("tip")
    assert len(tip) == 7 and tip[0] == "itap of a {}." and tip[-1] == "a photo of the small {}."
    expected = {"imagenet": "tip", "imagenet-c": "tip", "imagenet-a": "tip", "imagenet-v2": "tip",
                "imagenet-r": "ensemble", "imagenet-sketch": "ensemble", "caltech101": "tip", "cars": "tip",
                "dtd": "coop", "pets": "coop"}
    assert {suite: engine.prompt_spec(RunConfig(suite=suite, method="tda")) for suite in expected} == expected
    assert engine.prompt_spec(RunConfig(suite="imagenet-a", method="tda", prompts="single")) == "single"
    assert engine.prompt_spec(RunConfig(suite="imagenet", method="tpt")) == "single"  # other methods keep theirs
