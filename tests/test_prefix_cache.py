"""The frozen-prefix cache computes exactly what the full forward computes, and only where it can."""

from __future__ import annotations

import pytest
import torch

from memvp_lab.errors import ConfigError
from memvp_lab.model.flops import measure_lm_flops
from memvp_lab.model.prefix_cache import FrozenPrefixCache, is_right_padded
from test_methods import build, make_batch

MEMVP_ON_TOP = ("method.first_layer=1", "method.dropout=0.1")


def _loss_and_grads(model, batch, seed: int):
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)
    loss = model(batch)
    loss.mean().backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.trainable_named_parameters()}


def test_cached_forward_equals_the_full_forward_in_loss_and_gradients():
    _, _, plain = build("memvp", "tiny_llama", 0, *MEMVP_ON_TOP)
    _, backbone, cached = build("memvp", "tiny_llama", 0, *MEMVP_ON_TOP, "method.cache_frozen_prefix=true")
    assert cached.prefix_cache.num_layers == 1
    batch = make_batch(backbone, n=5)  # rows 3 and 4 repeat the texts of rows 0 and 1
    for seed in (1, 2):  # the first call fills the cache (and checks itself), the second reuses it
        want, want_grads = _loss_and_grads(plain, batch, seed)
        got, got_grads = _loss_and_grads(cached, batch, seed)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
        assert want_grads.keys() == got_grads.keys() and len(want_grads) > 0
        for name in want_grads:
            torch.testing.assert_close(got_grads[name], want_grads[name], atol=1e-6, rtol=1e-5)
    cache = cached.prefix_cache
    assert len(cache) == 3 and cache.verified
    assert (cache.misses, cache.hits) == (3, 7)  # 3 distinct texts, then every row from the cache
    assert cached.lm.base_model.layers is not None and len(cached.lm.base_model.layers) == 2  # restored


def test_lm_flops_count_every_layer_with_the_cache_on():
    _, _, plain = build("memvp", "tiny_llama", 0, *MEMVP_ON_TOP)
    _, backbone, cached = build("memvp", "tiny_llama", 0, *MEMVP_ON_TOP, "method.cache_frozen_prefix=true")
    batch = make_batch(backbone, n=3)
    cached(batch)  # the cache now holds every text of the batch
    assert measure_lm_flops(cached, batch) == measure_lm_flops(plain, batch) > 0
    assert cached.prefix_cache is not None


def test_only_right_padded_batches_count_as_unpadded_sequences():
    assert is_right_padded(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    assert not is_right_padded(torch.tensor([[1, 1, 1], [0, 1, 1]]))  # left padding shifts positions
    assert not is_right_padded(torch.tensor([[1, 0, 1]]))


def test_the_first_use_check_rejects_states_that_do_not_reproduce_the_model():
    _, backbone, model = build("memvp", "tiny_llama", 0, *MEMVP_ON_TOP, "method.cache_frozen_prefix=true")
    cache = model.prefix_cache
    real = cache._prefix_states
    cache._prefix_states = lambda ids, mask: real(ids, mask) * 1.5  # e.g. a model that rescales embeddings
    with pytest.raises(RuntimeError, match="method.cache_frozen_prefix=false"):
        model(make_batch(backbone, n=2))


def test_least_recently_used_texts_leave_a_cache_over_its_size():
    _, backbone, model = build("memvp", "tiny_llama", 0, *MEMVP_ON_TOP, "method.cache_frozen_prefix=true")
    cache = model.prefix_cache
    model(make_batch(backbone, n=3))
    assert len(cache) == 3 and cache.bytes > 0
    cache.max_bytes = cache.bytes - 1
    model(make_batch(backbone, n=1))  # text 0 becomes the most recently used; the oldest, text 1, leaves
    assert len(cache) == 2 and cache.bytes <= cache.max_bytes
    misses = cache.misses
    model(make_batch(backbone, n=1))
    assert cache.misses == misses  # text 0 is still there


@pytest.mark.parametrize(
    "method,arch,overrides,reason",
    [
        ("memvp", "tiny_llama", (), "no leading decoder layer"),  # memory in every FFN
        ("memvp", "tiny_llama", ("method.first_layer=1", "method.unfreeze=[layer_norms]"), "no leading decoder layer"),
        ("lora", "tiny_llama", (), "no leading decoder layer"),
        ("memvp", "tiny_bart", ("method.first_layer=1",), "decoder-only"),
    ],
)
def test_the_cache_is_refused_where_it_cannot_apply(method, arch, overrides, reason):
    with pytest.raises(ConfigError, match=reason):
        build(method, arch, 0, *overrides, "method.cache_frozen_prefix=true")


def test_cache_bounds_are_checked():
    _, _, model = build("memvp", "tiny_llama", 0, *MEMVP_ON_TOP)
    with pytest.raises(ValueError, match="num_layers=2"):
        FrozenPrefixCache(model.lm.base_model, 2)
