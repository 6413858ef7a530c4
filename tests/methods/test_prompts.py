"""The CLIP prompt ensemble: per class, the normalised mean of the per-template normalised text embeddings."""
import torch
from torch.nn import functional as F

from tests.methods.conftest import CPU, images, teacher
from tta_bench.data.labels import label_space, prompt_templates
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch


def test_ensemble_head_is_the_normalised_mean_of_normalised_template_embeddings():
    space, templates = label_space("cifar10"), prompt_templates("ensemble")
    t = teacher("tiny-clip")
    single = t.text_embeddings.clone()
    t.set_classes(space, range(10), templates)
    ensemble = t.text_embeddings
    with torch.no_grad():
        expected = torch.stack([
            F.normalize(F.normalize(t.model.encode_text(t.tokenizer([f.format(space.names[c]) for f in templates])),
                                    dim=-1).mean(0), dim=-1)
            for c in range(10)])
    assert len(templates) == 80
    torch.testing.assert_close(ensemble, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(ensemble, single, atol=1e-3)
    x = images(4, 64)
    source = build_method("source", t, {}, CPU).predict(Batch(x, [0, 1, 2, 3])).logits
    torch.testing.assert_close(source, 100 * F.normalize(t.encode(x), dim=-1) @ expected.T, atol=1e-3, rtol=0)
