"""MemVP's memory term equals the paper's FFN with concatenated weights (Eq. 8, Eq. 11-12)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import VISUAL, memvp_config, tiny
from memvp_lab.methods.memvp import Ablation, find_ffn_sites

torch.set_default_dtype(torch.float32)


def _visual(batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, VISUAL.num_tokens, VISUAL.feature_dim, generator=g)


def _keys_values(memory, visual, site_index):
    """K and V of one FFN as the paper writes them: lam f(Z) zero-padded to n, plus P."""
    prompts = memory.project(visual)
    padded = F.pad(prompts, (0, 0, 0, memory.n - prompts.shape[1]))
    p = 0 if memory.shared_positions else site_index
    return padded + memory.pos_k[p], padded + memory.pos_v[p]


@pytest.mark.parametrize("arch", ["bart", "t5"])
def test_standard_ffn_equals_concatenated_weights(arch):
    """act(u [W1; K]^T + [b1; 0]) [W2, V^T]^T + b2 == FFN(u) + act(u K^T) V."""
    backbone = tiny(arch)
    model = memvp_config(layers="encoder").build(backbone, VISUAL)
    memory = model.prompting
    site = memory.sites[0]
    visual = _visual()
    u = torch.randn(2, 5, backbone.hidden_size)
    if arch == "bart":
        layer = dict(backbone.model.named_modules())[site.name]
        w1, b1, w2, b2 = layer.fc1.weight, layer.fc1.bias, layer.fc2.weight, layer.fc2.bias
        act = layer.activation_fn

        def ffn(x):
            return layer.fc2(layer.activation_fn(layer.fc1(x)))
    else:
        dense = site.input_module
        w1, b1, w2, b2 = dense.wi.weight, None, dense.wo.weight, None
        act = dense.act
        ffn = dense
    model.eval()
    with torch.no_grad(), memory.bind(visual):
        out = ffn(u)
    keys, values = _keys_values(memory, visual, 0)
    for b in range(2):  # per sample: its own concatenated weights
        w1_cat = torch.cat([w1, keys[b]], dim=0)
        b1_cat = None if b1 is None else torch.cat([b1, torch.zeros(memory.n)])
        w2_cat = torch.cat([w2, values[b].T], dim=1)
        expected = F.linear(act(F.linear(u[b], w1_cat, b1_cat)), w2_cat, b2)
        torch.testing.assert_close(out[b], expected.detach(), atol=1e-5, rtol=1e-5)


def test_swiglu_ffn_equals_paper_eq_11_12_float64():
    """LLaMA SwiGLU: appended keys K, values V and gate rows x/|x|^2 (so the gate is exactly 1)."""
    backbone = tiny("llama")
    backbone.model.double()
    model = memvp_config().build(backbone, VISUAL).double()
    memory = model.prompting
    mlp = memory.sites[0].input_module
    visual = _visual().double()
    u = torch.randn(2, 5, backbone.hidden_size, dtype=torch.float64)
    model.eval()
    with torch.no_grad(), memory.bind(visual):
        out = mlp(u)
    keys, values = _keys_values(memory, visual, 0)
    for b in range(2):
        for t in range(5):
            x = u[b, t]
            gate_rows = (x / x.dot(x)).expand(memory.n, -1)  # W3' = [W_up; x/|x|^2, ...]
            w_gate = torch.cat([mlp.gate_proj.weight, keys[b]], dim=0)
            w_up = torch.cat([mlp.up_proj.weight, gate_rows], dim=0)
            w_down = torch.cat([mlp.down_proj.weight, values[b].T], dim=1)
            expected = w_down @ (F.silu(w_gate @ x) * (w_up @ x))
            torch.testing.assert_close(out[b, t], expected.detach(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "bart", "t5"])
def test_unbound_memory_leaves_logits_unchanged(arch):
    backbone = tiny(arch)
    ids = torch.randint(5, 200, (2, 6))
    kwargs = {} if arch == "llama" else {"decoder_input_ids": torch.randint(5, 200, (2, 3))}
    with torch.no_grad():
        before = backbone.model(input_ids=ids, **kwargs).logits
        model = memvp_config().build(backbone, VISUAL)
        model.eval()
        unbound = model.lm(input_ids=ids, **kwargs).logits
        with model.prompting.bind(_visual()):
            bound = model.lm(input_ids=ids, **kwargs).logits
        after = model.lm(input_ids=ids, **kwargs).logits
        model.prompting.remove()
        removed = model.lm(input_ids=ids, **kwargs).logits
    assert torch.equal(before, unbound) and torch.equal(before, after) and torch.equal(before, removed)
    assert not torch.allclose(before, bound)


def test_memory_is_scoped_to_one_call_and_per_sample():
    backbone = tiny("llama")
    model = memvp_config().build(backbone, VISUAL).eval()
    memory = model.prompting
    ids = torch.randint(5, 200, (2, 6))
    v1, v2 = _visual(seed=1), _visual(seed=2)
    with torch.no_grad():
        with memory.bind(v1):
            out1 = model.lm(input_ids=ids).logits
        assert memory._bound is None
        with memory.bind(v2):
            out2 = model.lm(input_ids=ids).logits
        with memory.bind(v1):
            again = model.lm(input_ids=ids).logits
        # Sample 0 alone gets the same result as inside the batch: no mixing across samples.
        with memory.bind(v1[:1]):
            alone = model.lm(input_ids=ids[:1]).logits
    assert torch.equal(out1, again)
    assert not torch.allclose(out1, out2)
    torch.testing.assert_close(alone[0], out1[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="re-entrant"), memory.bind(v1), memory.bind(v1):
        pass
    assert memory._bound is None


def test_shared_positions_and_sites():
    backbone = tiny("t5")
    sites = find_ffn_sites(backbone.model)
    assert [s.stack for s in sites] == ["encoder", "encoder", "decoder", "decoder"]
    shared = memvp_config(shared_positions=True).build(tiny("t5"), VISUAL).prompting
    per_layer = memvp_config(shared_positions=False).build(tiny("t5"), VISUAL).prompting
    assert shared.pos_k.shape == (1, 16, 64) and per_layer.pos_k.shape == (4, 16, 64)


def test_ablations_behave_as_described():
    ids = torch.randint(5, 200, (2, 6))
    visual = _visual()
    perm = visual[:, torch.randperm(VISUAL.num_tokens, generator=torch.Generator().manual_seed(0))]
    results = {}
    for ablation in Ablation:
        model = memvp_config(ablation=ablation).build(tiny("llama"), VISUAL).eval()
        with torch.no_grad():
            outs = []
            for v in (visual, perm, torch.zeros_like(visual)):
                with model.prompting.bind(v):
                    outs.append(model.lm(input_ids=ids).logits)
        results[ablation] = outs
        if ablation is Ablation.no_visual:
            assert model.prompting.projector is None
    same = lambda a, b: torch.allclose(a, b, atol=1e-6)  # noqa: E731
    # Position embeddings give the grid order meaning; without them (concat) or with one pooled
    # token (global) the order of the visual tokens does not matter; no_visual ignores the image.
    assert not same(*results[Ablation.none][:2])
    assert same(*results[Ablation.global_feature][:2])
    assert same(*results[Ablation.concat_position][:2])
    assert same(results[Ablation.no_visual][0], results[Ablation.no_visual][2])
    for ablation in (Ablation.none, Ablation.keys_only, Ablation.values_only):
        assert not same(results[ablation][0], results[ablation][2])


def test_blocking_no_slot_changes_nothing_and_observer_sees_scores():
    model = memvp_config().build(tiny("llama"), VISUAL).eval()
    memory = model.prompting
    ids = torch.randint(5, 200, (2, 6))
    visual = _visual()
    seen = []
    with torch.no_grad():
        with memory.bind(visual):
            plain = model.lm(input_ids=ids).logits
        with memory.bind(
            visual,
            observer=lambda i, s: seen.append((i, s.shape)),
            blocked=torch.zeros(2, memory.num_slots, dtype=torch.bool),
        ):
            observed = model.lm(input_ids=ids).logits
    assert torch.equal(plain, observed)
    assert seen == [(0, (2, 6, 16)), (1, (2, 6, 16))]


def test_generate_with_beams_expands_memory():
    """Beam search repeats each sample; every beam must read its own sample's memory."""
    from memvp_lab.batch import VLBatch

    model = memvp_config(scale=5.0).build(tiny("llama"), VISUAL).eval()
    ids = torch.randint(5, 200, (2, 6))
    visual = _visual()

    def batch(rows):
        n = len(rows)
        return VLBatch(
            input_ids=ids[rows],
            attention_mask=torch.ones(n, 6, dtype=torch.long),
            labels=ids[rows],
            prompt_ids=ids[rows],
            prompt_mask=torch.ones(n, 6, dtype=torch.long),
            visual=visual[rows],
            has_image=torch.ones(n),
            weights=torch.ones(n),
            indices=torch.tensor(rows),
        )

    together = model.generate(batch([0, 1]), max_new_tokens=4, num_beams=3)
    alone = [model.generate(batch([i]), max_new_tokens=4, num_beams=3)[0] for i in (0, 1)]
    assert together == alone
    blocked = torch.zeros(2, model.prompting.num_slots, dtype=torch.bool)
    with torch.no_grad(), model.prompting.bind(visual, blocked=blocked):  # the mask is repeated too
        model.lm.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=2,
            num_beams=2,
            do_sample=False,
            pad_token_id=0,
        )


def test_layer_range_selects_sites_per_stack():
    model = memvp_config(first_layer=1, last_layer=2).build(tiny("t5", num_layers=3), VISUAL)
    assert [s.name for s in model.prompting.sites] == [
        "encoder.block.1.layer.1.DenseReluDense",
        "decoder.block.1.layer.2.DenseReluDense",
    ]
    from memvp_lab.errors import ConfigError

    with pytest.raises(ConfigError, match="first_layer=5"):
        memvp_config(first_layer=5).build(tiny("llama"), VISUAL)
