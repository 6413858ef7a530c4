"""zero: the prediction is the majority vote of the int(0.3 x 64) = 19 most confident views (FarinaMatteo/zero
ttas/zero.py): each view's softmax of its unscaled cosines at float16's epsilon (soft among near-ties), hard argmax
votes at temperature 0, ties broken by the discarded views; episodic, views from the full image."""
from __future__ import annotations

import pytest
import torch

from tests.methods.conftest import CPU, encoded_inputs, images, red_sided, teacher
from tta_bench import engine
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.common import entropy, marginal_entropy
from tta_bench.methods.zero import FLOAT16_EPS, zero_temperature_vote
from tta_bench.teachers.clip import LOGIT_SCALE

SIZE = 64  # tiny-clip's input


@pytest.fixture(scope="module")
def clip():
    """ZERO never changes its teacher: one tiny-clip for the module."""
    return teacher("tiny-clip")


def test_vote_is_the_argmax_majority_of_the_kept_views():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(5)) * 4
    kept = entropy(logits).argsort()[:19]  # int(0.3 x 64)
    expected = torch.bincount(logits[kept].argmax(1), minlength=10).float()
    assert (expected == expected.max()).sum() == 1  # a clear majority on this draw: no tie-break
    assert torch.equal(zero_temperature_vote(logits, 0.3, temperature=0), expected) and expected.sum() == 19


def test_near_ties_split_a_vote_softly_at_float16s_epsilon_as_the_reference():
    """zero.py divides the unscaled cosines by torch.finfo(float16).eps: a view whose two best classes differ by
    5e-4 in cosine gives them softmax(0.5, 0)-like shares, not one hard vote."""
    assert FLOAT16_EPS == 2 ** -10
    cosines = torch.tensor([[0.3005, 0.3000, 0.1], [0.2, 0.31, 0.1]])
    votes = zero_temperature_vote(cosines * LOGIT_SCALE, 1.0)
    expected = (cosines / FLOAT16_EPS).softmax(-1).sum(0)
    torch.testing.assert_close(votes, expected)
    assert 0.6 < votes[0] < 0.7 and 1.3 < votes[1] < 1.4  # the first view's vote split about 0.62 / 0.38
    assert torch.equal(zero_temperature_vote(cosines * LOGIT_SCALE, 1.0, temperature=0),
                       torch.tensor([1.0, 1.0, 0.0]) + torch.tensor([0.0, 1.0, 0.0]))  # the hard limit: a tie, broken


def test_vote_ignores_temperature_where_the_marginal_probability_does_not():
    """Three views: one very sure of class 0, two mildly for class 1 (all kept). The mean softmax (TPT's marginal)
    picks 0; the hard zero-temperature vote picks 1, at every scale of the logits."""
    logits = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.6, 0.0]])
    assert int(logits.softmax(-1).mean(0).argmax()) == 0
    for scale in (0.01, 1.0, 100.0):
        votes = zero_temperature_vote(logits * scale, 1.0, temperature=0)
        assert torch.equal(votes, torch.tensor([1.0, 2.0, 0.0]))
    assert marginal_entropy(logits) > 0  # the marginal is not one-hot: ZERO's vote is not TPT's objective


def test_a_tie_goes_to_the_first_tied_class_the_discarded_views_predict():
    """Four views, two kept (fraction 0.5): one votes 2, one votes 0: a tie. The discarded views, most confident
    first, predict 1 (not tied), then 0: class 0 wins and gets the reference's +1."""
    logits = torch.tensor([[0.0, 0.0, 30.0, 0.0],  # kept: the most confident
                           [29.0, 0.0, 0.0, 0.0],  # kept
                           [0.0, 5.0, 0.0, 0.0],  # discarded, the more confident
                           [3.0, 0.0, 0.0, 0.0]])  # discarded
    assert torch.equal(zero_temperature_vote(logits, 0.5, temperature=0), torch.tensor([2.0, 0.0, 1.0, 0.0]))
    unmatched = logits.clone()  # no discarded view predicts 0 or 2: the most confident discarded one ranks them
    unmatched[2], unmatched[3] = torch.tensor([1.0, 5.0, 2.0, 0.0]), torch.tensor([0.0, 0.0, 2.5, 3.0])
    assert torch.equal(zero_temperature_vote(unmatched, 0.5, temperature=0), torch.tensor([1.0, 0.0, 2.0, 0.0]))


def test_a_view_with_tied_maxima_splits_its_vote_as_the_zero_temperature_softmax_does():
    logits = torch.tensor([[5.0, 5.0, 0.0], [0.0, 4.0, 0.0]])
    assert torch.equal(zero_temperature_vote(logits, 1.0, temperature=0), torch.tensor([0.5, 1.5, 0.0]))


def test_predict_votes_over_the_image_and_63_views_of_the_full_picture(clip):
    method = build_method("zero", clip, {}, CPU)
    picture = red_sided(SIZE)
    image = picture[None, :, :, SIZE:2 * SIZE] / 255
    with encoded_inputs(clip) as seen:
        votes = method.predict(Batch(image, [0], raw=[picture])).logits
    encoded = seen[0]
    assert len(encoded) == 64 and torch.equal(encoded[0], image[0])
    assert ((encoded[1:, 0] > 0.9) & (encoded[1:, 1] < 0.1)).flatten(1).any(1).float().mean() > 0.3
    with torch.no_grad():
        logits = clip(encoded)
    torch.testing.assert_close(votes[0], zero_temperature_vote(logits.float(), 0.3))
    assert votes.sum() in (19, 20)


def test_episodic_seeded_and_stateless(clip):
    method = build_method("zero", clip, {"n_views": 16}, CPU)
    x = images(3, SIZE)
    together = method.predict(Batch(x, [5, 6, 7])).logits
    assert torch.equal(method.predict(Batch(x[1:2], [6])).logits[0], together[1])
    assert torch.equal(method.predict(Batch(x, [5, 6, 7])).logits, together)


def test_defaults_and_errors(clip):
    o = build_method("zero", clip, {}, CPU).options
    assert (o.n_views, o.fraction, o.views, o.reset, o.steps) == (64, 0.3, "crops", "episodic", 0)
    with pytest.raises(UserError, match="CLIP"):
        build_method("zero", teacher("tiny"), {}, CPU)
    with pytest.raises(UserError, match="online"):
        build_method("zero", clip, {"reset": "online"}, CPU)
    with pytest.raises(UserError, match="fraction"):
        build_method("zero", clip, {"fraction": 0}, CPU)


def test_zero_end_to_end(cifar_run):
    summary = engine.run(cifar_run(method="zero", teacher="tiny-clip", method_options={"n_views": 8}), progress=False,
                         log=lambda *_: None)
    assert summary["splits"]["gaussian_noise-5"]["n"] == 8 and summary["cost"]["teacher_forwards"] == 64
    assert summary["cost"]["adaptation_steps"] == 0
