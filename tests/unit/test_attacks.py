"""Adversarial attacks: FGSM and PGD on digits images, PGD on token embeddings, robust accuracy."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import config_error_key
from distillab.core.config import build
from distillab.data import DigitsDataModule
from distillab.losses.kd import cross_entropy
from distillab.models import ModelOutput, build_bert, build_mlp
from distillab.robustness import (
    Attack,
    embedding_attack,
    fgsm,
    input_embeddings,
    perturb,
    pgd,
    robust_accuracy,
)

EPS = 0.1  # in pixel units: digits are in [0, 1]


def ce_on(model, labels):
    """The attacks' loss on an input tensor: the model's CE on the true labels."""
    return lambda x: cross_entropy(model(x).logits, labels)


@pytest.fixture(scope="module")
def trained():
    """An MLP trained on digits for a few epochs with a plain loop (well under a second)."""
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    x, y = dm.splits["train"].inputs, dm.splits["train"].labels
    model = build_mlp(**dm.model_kwargs, hidden_sizes=[64])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        perm = torch.randperm(len(y))
        for idx in perm.split(64):
            opt.zero_grad()
            cross_entropy(model(x[idx]).logits, y[idx]).backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval(), dm


def tiny_bert(dropout=0.0):
    torch.manual_seed(0)
    return build_bert(
        num_labels=3,
        vocab_size=50,
        max_length=12,
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        intermediate_size=32,
        dropout=dropout,
    )


def token_batch():
    ids = torch.randint(1, 50, (4, 12), generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([12, 9, 5, 1])
    mask = (torch.arange(12) < lengths[:, None]).long()
    return {"inputs": {"input_ids": ids * mask, "attention_mask": mask}, "labels": torch.tensor([0, 1, 2, 1])}


# ---- the perturbation's size and range --------------------------------------------------------


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_image_attacks_stay_in_the_eps_ball_and_the_valid_range(digits, tiny_vit, name):
    batch = next(iter(digits.test_dataloader()))
    x = batch["inputs"][:32]
    model = tiny_vit().eval()
    attack = Attack(name, EPS, steps=3)
    x_adv = attack.run(
        ce_on(model, batch["labels"][:32]), x, lo=0.0, hi=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv - x).abs().max() > EPS / 2  # it did move


def test_embedding_delta_is_eps_bounded_zero_on_padding_and_changes_the_output():
    model = tiny_bert().eval()
    batch = token_batch()
    inputs, labels = batch["inputs"], batch["labels"]
    delta = embedding_attack(
        model,
        inputs,
        lambda out: cross_entropy(out.logits, labels),
        eps=0.05,
        step_size=0.02,
        steps=3,
        generator=torch.Generator().manual_seed(0),
    )
    assert delta.shape == (4, 12, 16)
    assert delta.abs().max() <= 0.05 + 1e-6
    pad = inputs["attention_mask"] == 0
    assert torch.equal(delta[pad], torch.zeros_like(delta[pad]))
    assert (delta[~pad].abs() > 0).float().mean() > 0.9
    adv = perturb(model, batch, lambda out: cross_entropy(out.logits, labels), Attack("pgd", 0.05, steps=3))
    assert adv.inputs is inputs and adv.delta.shape == (4, 12, 16)
    with torch.no_grad():
        clean = model(inputs).logits
        attacked = adv(model).logits
        assert cross_entropy(attacked, labels) > cross_entropy(clean, labels)
        assert torch.equal(model(inputs).logits, clean)  # the hook is gone afterwards
    assert not input_embeddings(model)._forward_hooks


def test_embedding_hook_is_removed_on_error():
    model = tiny_bert().eval()

    def failing(out: ModelOutput):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        perturb(model, token_batch(), failing, Attack("fgsm", 0.1))
    assert not input_embeddings(model)._forward_hooks


# ---- exact values -------------------------------------------------------------------------------


def test_fgsm_by_hand_on_a_linear_model():
    # Two classes, label 0: ∇_x CE = (p_1) * (W_1 - W_0), p_1 > 0, so sign(∇) = sign(W_1 - W_0).
    linear = nn.Linear(5, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.3], [1.0, 2.0, 0.0, 0.0, 0.3]]))
    x = torch.tensor([[0.5, 0.95, 0.02, 0.5, 0.7]])  # sign(W_1 - W_0) = (+, +, -, -, 0)
    x_adv = fgsm(lambda z: cross_entropy(linear(z), torch.tensor([0])), x, eps=0.25)
    # 0.5+.25, 0.95+.25 clipped to 1, 0.02-.25 clipped to 0, 0.5-.25, zero gradient: unchanged.
    assert torch.equal(x_adv, torch.tensor([[0.75, 1.0, 0.0, 0.25, 0.7]]))
    assert torch.equal(
        pgd(lambda z: cross_entropy(linear(z), torch.tensor([0])), x, 0.25, 0.25, 1, random_start=False), x_adv
    )


def test_pgd_with_one_unrandomised_step_of_eps_is_fgsm(trained):
    model, dm = trained
    batch = next(iter(dm.test_dataloader()))
    loss = ce_on(model, batch["labels"])
    assert torch.equal(pgd(loss, batch["inputs"], EPS, EPS, 1, random_start=False), fgsm(loss, batch["inputs"], EPS))


# ---- attack strength on a trained model ------------------------------------------------------


def test_stronger_attacks_lower_accuracy_more_and_eps_0_is_clean(trained):
    model, dm = trained
    test = dm.test_dataloader()
    weak = robust_accuracy(model, test, [Attack("fgsm", EPS), Attack("pgd", EPS, steps=1)], seed=0)
    strong = robust_accuracy(model, test, [Attack("pgd", EPS, steps=10)], seed=0)
    none = robust_accuracy(model, test, [Attack("fgsm", 0.0), Attack("pgd", 0.0, step_size=0.1)], seed=0)
    clean = weak["clean"]
    assert clean > 0.9
    assert strong["pgd@0.1"] <= weak["fgsm@0.1"] < clean - 0.2
    assert strong["pgd@0.1"] <= weak["pgd@0.1"] < clean
    assert none == {"clean": clean, "fgsm@0": clean, "pgd@0": clean}


# ---- what the attack leaves alone ------------------------------------------------------------


@pytest.mark.parametrize("train_mode", [True, False])
def test_attacks_leave_parameter_grads_and_mode_alone(digits, tiny_vit, train_mode):
    vit, bert = tiny_vit(dropout=0.1).train(train_mode), tiny_bert(dropout=0.1).train(train_mode)
    images = next(iter(digits.test_dataloader()))
    images = {"inputs": images["inputs"][:8], "labels": images["labels"][:8]}
    for model, batch in ((vit, images), (bert, token_batch())):
        labels = batch["labels"]
        for attack in (Attack("fgsm", EPS), Attack("pgd", EPS, steps=2)):
            adv = perturb(model, batch, lambda out, y=labels: cross_entropy(out.logits, y), attack)
            adv(model)
        assert model.training is train_mode
        assert all(p.grad is None for p in model.parameters())
    # Gradients a training step already holds are not changed either.
    grads = [torch.full_like(p, 0.5) for p in vit.parameters()]
    for p, g in zip(vit.parameters(), grads):
        p.grad = g.clone()
    perturb(vit, images, lambda out: cross_entropy(out.logits, images["labels"]), Attack("pgd", EPS, steps=2))
    assert all(torch.equal(p.grad, g) for p, g in zip(vit.parameters(), grads))
    robust_accuracy(vit, [images], [Attack("pgd", EPS, steps=1)])
    assert vit.training is train_mode


def test_same_seed_same_pgd_result(trained):
    model, dm = trained
    batch = next(iter(dm.test_dataloader()))
    loss = ce_on(model, batch["labels"])

    def run(seed):
        return pgd(loss, batch["inputs"], EPS, 0.02, 3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    attacks = [Attack("fgsm", EPS), Attack("pgd", 0.05, steps=2)]
    assert robust_accuracy(model, dm.test_dataloader(), attacks, seed=3) == robust_accuracy(
        model, dm.test_dataloader(), attacks, seed=3
    )


def test_attack_under_inference_mode_says_why_it_cannot_run(trained):
    model, dm = trained
    batch = next(iter(dm.test_dataloader()))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        fgsm(ce_on(model, batch["labels"]), batch["inputs"], EPS)
    with torch.no_grad():  # no_grad is fine: the attack turns gradients back on for the input
        fgsm(ce_on(model, batch["labels"]), batch["inputs"], EPS)


# ---- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"eps": -0.1}, "eps"),
        ({"steps": 0}, "steps"),
        ({"step_size": 0.0}, "step_size"),
        ({"name": "cw"}, "name"),
        ({"random_start": "yes"}, "random_start"),
    ],
)
def test_attack_config_is_validated(kwargs, key):
    assert config_error_key(lambda: Attack(**kwargs)) == key
    node = OmegaConf.create({"_target_": "distillab.robustness.Attack", **kwargs})
    assert config_error_key(lambda: build(node, "attack")) == f"attack.{key}"


def test_attack_built_by_hydra_and_its_defaults():
    attack = build(
        OmegaConf.create({"_target_": "distillab.robustness.Attack", "name": "pgd", "eps": 0.3, "steps": 5}), "attack"
    )
    assert attack == Attack("pgd", 0.3, step_size=2.5 * 0.3 / 5, steps=5) and attack.key == "pgd@0.3"
    assert Attack("fgsm", 0.1).key == "fgsm@0.1"
    with pytest.raises(ValueError, match="same key"):
        robust_accuracy(nn.Linear(1, 1), [], [Attack("pgd", 0.1, steps=1), Attack("pgd", 0.1, steps=10)])
