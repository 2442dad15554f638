"""Pruning: measured sparsity against targets, the cubic schedule by hand, and structured
pruning that shrinks the model while the remaining computation stays exact."""

import lightning as L
import pytest
import torch

from distillab.core.config import ConfigError
from distillab.models import build_bert
from distillab.modules import ClassifierModule
from distillab.pruning import (
    GradualPruning,
    cubic_sparsity,
    head_importance,
    magnitude_prune,
    make_permanent,
    measured_sparsity,
    named_prunable_weights,
    prunable_weights,
    prune_heads,
    prune_neurons,
    restore_masks,
    threshold_prune,
)
from distillab.pruning.structured import _attention, _encoder_layers, _ffn

TOL = 0.005  # half a percentage point


def tiny_bert():
    torch.manual_seed(0)
    return build_bert(
        num_labels=3, vocab_size=50, max_length=16, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64
    ).eval()


def bert_batches(n=2):
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n):
        mask = torch.ones(8, 16, dtype=torch.long)
        mask[:4, 12:] = 0  # padding, so the attention mask path is exercised
        ids = torch.randint(1, 50, (8, 16), generator=g)
        batches.append(
            {"inputs": {"input_ids": ids, "attention_mask": mask}, "labels": torch.randint(0, 3, (8,), generator=g)}
        )
    return batches


@pytest.fixture(params=["vit", "bert"])
def model_and_batches(request, tiny_vit, digits):
    if request.param == "vit":
        torch.manual_seed(0)
        return tiny_vit().eval(), [b for _, b in zip(range(2), digits.val_dataloader())]
    return tiny_bert(), bert_batches()


def untouched(model):
    prunable = set(named_prunable_weights(model))
    return {k: v.clone() for k, v in model.state_dict().items() if k not in prunable}


# ---------------------------------------------------------------- unstructured


def test_prunable_weights_are_encoder_linears_only(tiny_vit):
    for model in (tiny_vit(), tiny_bert()):
        names = list(named_prunable_weights(model))
        assert len(names) == 2 * 6  # q, k, v, out, ffn in, ffn out per layer
        assert not any(part in n for n in names for part in ("embeddings", "classifier", "pooler"))
        assert len(prunable_weights(model)) == len(names)


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("amount", [0.5, 0.8, 0.9])
def test_magnitude_prune_reaches_target_by_smallest_magnitude(tiny_vit, scope, amount):
    model = tiny_vit()
    params = named_prunable_weights(model)
    before = {k: m.weight.detach().clone() for k, (m, _) in params.items()}
    others = untouched(model)
    report = magnitude_prune(params, amount, scope)
    assert abs(measured_sparsity(params) - amount) <= TOL and abs(report.sparsity - amount) <= TOL
    groups = [list(params)] if scope == "global" else [[k] for k in params]
    for keys in groups:
        w = torch.cat([before[k].flatten() for k in keys]).abs()
        zero = torch.cat([(m.weight == 0).flatten() for m, _ in (params[k] for k in keys)])
        assert w[zero].max() <= w[~zero].min()  # the zeros are the smallest weights
        if scope == "layer":
            assert abs(report.per_tensor[keys[0]] - amount) <= TOL
    after = model.state_dict()
    for key, value in others.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)


def test_second_call_brings_total_to_new_amount_not_compounded(tiny_vit):
    params = named_prunable_weights(tiny_vit())
    magnitude_prune(params, 0.5)
    first = {k: m.weight == 0 for k, (m, _) in params.items()}
    with torch.no_grad():  # as an optimizer step would: weight_orig moves, `weight` is refreshed only by forward
        for m, _ in params.values():
            m.weight_orig.mul_(torch.rand_like(m.weight_orig))
    remaining = {k: (m.weight_orig * m.weight_mask).detach().abs() for k, (m, _) in params.items()}
    magnitude_prune(params, 0.8)
    assert abs(measured_sparsity(params) - 0.8) <= TOL  # not 1 - 0.5 * 0.2 = 0.9
    new = torch.cat([((m.weight == 0) & ~first[k]).flatten() for k, (m, _) in params.items()])
    kept = torch.cat([(m.weight != 0).flatten() for m, _ in params.values()])
    w = torch.cat([remaining[k].flatten() for k in params])
    assert all(bool((m.weight[first[k]] == 0).all()) for k, (m, _) in params.items())  # old zeros stay
    assert w[new].max() <= w[kept].min()
    magnitude_prune(params, 0.3)  # a smaller amount never un-prunes
    assert abs(measured_sparsity(params) - 0.8) <= TOL


def test_threshold_zeroes_exactly_the_weights_below_t(tiny_vit):
    params = prunable_weights(tiny_vit())
    t = 0.02
    with torch.no_grad():  # |w| == t exactly is not below t: kept
        params[0][0].weight[0, :2] = torch.tensor([t, -t])
    before = [m.weight.detach().clone() for m, _ in params]
    report = threshold_prune(params, t)
    for (m, _), w in zip(params, before):
        below = w.abs() < t
        assert torch.equal(m.weight == 0, below)  # the mask computed by hand
        torch.testing.assert_close(m.weight[~below], w[~below], rtol=0, atol=0)
    expected = sum(int((w.abs() < t).sum()) for w in before) / sum(w.numel() for w in before)
    assert 0 < expected < 1 and report.sparsity == pytest.approx(expected)


def test_make_permanent_folds_masks_and_keeps_zeros(tiny_vit, digits):
    model = tiny_vit()
    params = named_prunable_weights(model)
    magnitude_prune(params, 0.5)
    zeros = {k: m.weight == 0 for k, (m, _) in params.items()}
    assert any(k.endswith("_mask") for k in model.state_dict())
    assert len(make_permanent(model)) == len(params)
    keys = model.state_dict().keys()
    assert not any(k.endswith(("_orig", "_mask")) for k in keys)
    for k, (m, _) in params.items():
        assert k in keys and isinstance(m.weight, torch.nn.Parameter) and torch.equal(m.weight == 0, zeros[k])
    assert abs(measured_sparsity(params) - 0.5) <= TOL
    model(next(iter(digits.val_dataloader()))["inputs"])


def test_restore_masks_lets_a_pruned_state_dict_load(tiny_vit):
    model = tiny_vit()
    magnitude_prune(prunable_weights(model), 0.7)
    state = model.state_dict()
    fresh = tiny_vit()
    assert len(restore_masks(fresh, state)) == 12
    fresh.load_state_dict(state)  # strict: the *_orig / *_mask keys now exist
    assert abs(measured_sparsity(prunable_weights(fresh)) - 0.7) <= TOL


@pytest.mark.parametrize(
    "call, key",
    [
        (lambda p: magnitude_prune(p, 1.5), "amount"),
        (lambda p: magnitude_prune(p, 1.0), "amount"),
        (lambda p: magnitude_prune(p, -0.1), "amount"),
        (lambda p: magnitude_prune(p, 0.5, scope="tensor"), "scope"),
        (lambda p: threshold_prune(p, -1.0), "threshold"),
        (lambda p: GradualPruning(1.0, end_step=10), "final_sparsity"),
        (lambda p: GradualPruning(0.5, end_step=10, initial_sparsity=0.6), "initial_sparsity"),
        (lambda p: GradualPruning(0.5, end_step=5, start_step=5), "end_step"),
        (lambda p: GradualPruning(0.5, end_step=10, start_step=-1), "start_step"),
        (lambda p: GradualPruning(0.5, end_step=10, frequency=0), "frequency"),
        (lambda p: GradualPruning(0.5, end_step=10, scope="x"), "scope"),
        (lambda p: prune_heads(tiny_bert(), torch.ones(2, 4), 1.0), "fraction"),
        (lambda p: prune_neurons(tiny_bert(), -0.5), "fraction"),
        (lambda p: head_importance(tiny_bert(), method="taylor"), "method"),
    ],
)
def test_bad_arguments_name_their_key(tiny_vit, call, key):
    with pytest.raises(ConfigError) as err:
        call(prunable_weights(tiny_vit()))
    assert err.value.key == key


# ---------------------------------------------------------------- gradual schedule


def test_cubic_sparsity_by_hand():
    s = lambda step, si=0.0: cubic_sparsity(step, si, 0.8, 10, 20)
    assert s(0) == 0 and s(10) == 0 and s(20) == 0.8 and s(100) == 0.8
    assert s(15) == pytest.approx(0.8 * (1 - 0.5**3)) == pytest.approx(0.7)
    assert s(12) == pytest.approx(0.8 * (1 - 0.8**3))  # 0.3904
    assert s(18) == pytest.approx(0.8 * (1 - 0.2**3))  # 0.7936
    assert s(15, si=0.2) == pytest.approx(0.8 - 0.6 * 0.125) and s(5, si=0.2) == 0.2


def test_gradual_pruning_follows_the_schedule_in_a_real_fit(tiny_vit, digits):
    torch.manual_seed(0)
    module = ClassifierModule(tiny_vit(), num_classes=10)
    pruning = GradualPruning(0.8, end_step=7, initial_sparsity=0.2, start_step=0, frequency=2)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=8,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[pruning],
    )
    trainer.fit(module, datamodule=digits)
    # t0 at train start, then every 2 steps, and the end step even off the grid
    assert [step for step, _, _ in pruning.history] == [0, 2, 4, 6, 7]
    for step, target, measured in pruning.history:
        assert target == pytest.approx(cubic_sparsity(step, 0.2, 0.8, 0, 7))
        assert abs(measured - target) <= TOL
    params = prunable_weights(module.model)
    assert abs(measured_sparsity(params) - 0.8) <= TOL  # held by the masks through step 8
    assert trainer.callback_metrics["pruning/target"] == pytest.approx(0.8)
    assert abs(float(trainer.callback_metrics["pruning/sparsity"]) - 0.8) <= TOL
    assert any(k.endswith("weight_mask") for k in module.state_dict())  # masks kept for resuming
    pruning.finalize(module.model)
    assert not any(k.endswith("_mask") for k in module.state_dict())
    assert abs(measured_sparsity(params) - 0.8) <= TOL


# ---------------------------------------------------------------- structured


def heads(model):
    return [_attention(layer).heads for layer in _encoder_layers(model)]


def test_head_importance_shape_and_a_dead_head_scores_zero(model_and_batches):
    model, batches = model_and_batches
    n_heads = heads(model)
    out_proj = _attention(_encoder_layers(model)[0]).out_proj
    d = out_proj.in_features // n_heads[0]
    with torch.no_grad():
        out_proj.weight[:, d : 2 * d] = 0  # head 1 of layer 0 contributes nothing
    grads_before = [p.grad for p in model.parameters()]
    for method in ("gradient", "weight_norm"):
        imp = head_importance(model, batches, method=method)
        assert imp.shape == (2, n_heads[0]) and bool((imp >= 0).all()) and bool(imp.isfinite().all())
        torch.testing.assert_close(imp.norm(dim=1), torch.ones(2))  # normalized per layer
    assert head_importance(model, batches)[0, 1] == 0  # |dL/dgate| is exactly zero
    assert all(g is None for g in grads_before) and all(p.grad is None for p in model.parameters())
    assert not model.training


def test_removing_a_dead_head_leaves_outputs_unchanged(model_and_batches):
    model, batches = model_and_batches
    out_proj = _attention(_encoder_layers(model)[0]).out_proj
    d = out_proj.in_features // heads(model)[0]
    with torch.no_grad():
        out_proj.weight[:, d : 2 * d] = 0
    inputs = batches[0]["inputs"]
    expected = model(inputs).logits
    imp = head_importance(model, batches)
    assert prune_heads(model, imp, 1 / sum(heads(model))) == {0: [1], 1: []}
    torch.testing.assert_close(model(inputs).logits, expected, atol=1e-5, rtol=1e-5)


def test_pruning_half_the_heads_shrinks_the_model(model_and_batches):
    model, batches = model_and_batches
    before, n0, params0 = heads(model), model.num_parameters, model.num_parameters
    hidden = _attention(_encoder_layers(model)[0]).out_proj.out_features
    d = hidden // before[0]
    removed = prune_heads(model, head_importance(model, batches), 0.5)
    assert sum(map(len, removed.values())) == sum(before) // 2
    assert heads(model) == [h - len(removed[i]) for i, h in enumerate(before)] and min(heads(model)) >= 1
    # each head owns d rows (+ bias) of q, k, v and d columns of the output projection
    assert model.num_parameters == n0 - sum(before) // 2 * (3 * d * (hidden + 1) + hidden * d) < params0
    logits = model(batches[0]["inputs"]).logits
    assert logits.shape == (len(batches[0]["labels"]), model.model.config.num_labels)
    assert bool(logits.isfinite().all())


def test_pruning_keeps_a_head_per_layer(tiny_vit):
    model = tiny_vit()
    imp = torch.tensor([[0.1, 0.2], [5.0, 6.0]])  # layer 0 is all unimportant
    assert prune_heads(model, imp, 0.9) == {0: [0], 1: [0]}
    assert heads(model) == [1, 1]


def test_pruning_half_the_neurons_shrinks_the_model(model_and_batches):
    model, batches = model_and_batches
    layers, inputs, n0 = _encoder_layers(model), batches[0]["inputs"], model.num_parameters
    shape = model(inputs).logits.shape
    assert prune_neurons(model, 0.5) == {0: 32, 1: 32}
    hidden = model.model.config.hidden_size
    for layer in layers:
        fc_in, fc_out = (layer.get_submodule(p) for p in _ffn(layer))
        assert fc_in.out_features == fc_out.in_features == 32 and fc_out.out_features == hidden
    # each neuron owns a row (+ bias) of the intermediate dense and a column of the output dense
    assert model.num_parameters == n0 - 2 * 32 * (2 * hidden + 1)
    assert model(inputs).logits.shape == shape


def test_removing_a_dead_neuron_leaves_outputs_unchanged(model_and_batches):
    model, batches = model_and_batches
    with torch.no_grad():  # a dead neuron in every layer: its output column is zero
        for layer in _encoder_layers(model):
            layer.get_submodule(_ffn(layer)[1]).weight[:, 3] = 0
    inputs = batches[0]["inputs"]
    expected = model(inputs).logits
    assert prune_neurons(model, 1 / 64) == {0: 1, 1: 1}
    torch.testing.assert_close(model(inputs).logits, expected, atol=1e-5, rtol=1e-5)
