"""Adversarial perturbations: FGSM and L∞ PGD on images, PGD on token embeddings.

Two layers:

* pure tensor functions, independent of models and losses: :func:`fgsm` and :func:`pgd` take
  ``loss_fn(x) -> scalar`` (what the attack increases: CE on the labels, or, for ARD-style
  distillation, a KL to a teacher's targets) and return the adversarial ``x``;
* :func:`perturb`, the one call a training or evaluation step makes for either kind of input:
  ``perturb(model, batch, loss_fn, attack)`` with ``loss_fn(ModelOutput) -> scalar`` returns a
  :class:`Perturbed`, which runs a model on the adversarial version of the batch
  (``adv(model)``). Images get ``x_adv``; token ids are discrete, so token models get a
  perturbation δ of the word embeddings (:func:`embedding_attack`), added through a forward
  hook only while ``adv(model)`` (or ``with adv.applied(model):``) runs.

What the attacks leave alone: the model's parameters get no gradient (``.grad`` is not
touched: gradients are taken with ``torch.autograd.grad`` w.r.t. the input only), and the
model's train/eval mode is not changed. The caller decides the mode: eval for evaluation;
for adversarial training, either (dropout and batch-norm statistics then take part in the
attack's forward passes in train mode). The attacks run under ``torch.enable_grad()``, so a
caller inside ``torch.no_grad()`` works; inside ``torch.inference_mode()`` (Lightning's
default for validation and test) no gradient exists and a RuntimeError says so.

Randomness (PGD's random start) is drawn from ``generator`` when given, on the generator's
device, then moved to the input's: a CPU generator gives the same start on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distillab.core.config import check_choice, check_int, check_number
from distillab.data.batch import Batch, Inputs
from distillab.models.output import ModelOutput

ATTACKS = ("fgsm", "pgd")


def _check_grad_mode() -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "an adversarial attack needs input gradients, which torch.inference_mode() disables: "
            "run it outside inference mode (in Lightning, Trainer(inference_mode=False))"
        )


def _input_grad(loss_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """∇_x loss_fn(x), for ``x`` only (no parameter's ``.grad`` is touched)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(x)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, got a tensor of shape {tuple(loss.shape)}")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _clip(x: Tensor, lo: float | None, hi: float | None) -> Tensor:
    return x if lo is None and hi is None else x.clamp(lo, hi)


def fgsm(
    loss_fn: Callable[[Tensor], Tensor], x: Tensor, eps: float, lo: float | None = 0.0, hi: float | None = 1.0
) -> Tensor:
    """Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing
    Adversarial Examples", arXiv:1412.6572):

        x_adv = clip(x + eps * sign(∇_x loss(x)), lo, hi)

    One step to the corner of the L∞ ball of radius ``eps`` that the loss's linearisation
    says is worst. ``lo``/``hi`` bound the valid input range (None: unbounded). Returns a
    detached tensor; a coordinate with zero gradient is unchanged.
    """
    return pgd(loss_fn, x, eps, eps, 1, lo, hi, random_start=False)


def pgd(
    loss_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    eps: float,
    step_size: float,
    steps: int,
    lo: float | None = 0.0,
    hi: float | None = 1.0,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L∞ projected gradient descent on the negative loss (Madry et al. 2018, "Towards Deep
    Learning Models Resistant to Adversarial Attacks", arXiv:1706.06083):

        x_0     = clip(x + U(-eps, eps), lo, hi)          (x_0 = x without random_start)
        x_{t+1} = Π(x_t + step_size * sign(∇_x loss(x_t)))
        Π(z)    = clip(min(max(z, x - eps), x + eps), lo, hi)

    i.e. after every step the iterate is projected onto the L∞ ball of radius ``eps`` around
    ``x`` and onto the valid range [lo, hi] (None: unbounded). The uniform start is drawn from
    ``generator`` (the global RNG when None), so a seeded generator gives the same result.
    ``steps=1, step_size=eps, random_start=False`` is :func:`fgsm`. Returns a detached tensor.
    """
    _check_grad_mode()
    x = x.detach()
    if random_start and eps > 0:
        device = generator.device if generator is not None else x.device
        noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        x_adv = _clip(x + (2 * noise - 1) * eps, lo, hi)
    else:
        x_adv = x.clone()
    low, high = x - eps, x + eps
    for _ in range(steps):
        x_adv = x_adv + step_size * _input_grad(loss_fn, x_adv).sign()
        x_adv = _clip(torch.clamp(x_adv, low, high), lo, hi)
    return x_adv


# ---- token models: the perturbation lives in embedding space ---------------------------------


def input_embeddings(model: nn.Module) -> nn.Module:
    """The word-embedding layer of ``model``: an HF model's ``get_input_embeddings()``, found on
    the model itself, inside a :class:`TransformerClassifier` (``.model``) or a
    ``torch.compile`` wrapper (``._orig_mod``)."""
    seen = model
    while seen is not None:
        if hasattr(seen, "get_input_embeddings"):
            return seen.get_input_embeddings()
        inner = getattr(seen, "_orig_mod", None)
        seen = inner if inner is not None else getattr(seen, "model", None)
    raise TypeError(f"{type(model).__name__} has no get_input_embeddings(): an embedding attack needs a token model")


@contextmanager
def embedding_delta(model: nn.Module, delta: Tensor) -> Iterator[None]:
    """Add ``delta`` [B, L, H] to the output of ``model``'s word-embedding layer inside the
    block. The forward hook is removed on leaving, on error too."""
    handle = input_embeddings(model).register_forward_hook(lambda module, args, out: out + delta)
    try:
        yield
    finally:
        handle.remove()


def embedding_attack(
    model: nn.Module,
    inputs: dict[str, Tensor],
    loss_fn: Callable[[ModelOutput], Tensor],
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """:func:`pgd` in embedding space for token models (Zhu et al. 2020, "FreeLB: Enhanced
    Adversarial Training for Natural Language Understanding", arXiv:1909.11764; Miyato et al.
    2017 for adversarial perturbations of word embeddings):

        e_adv = E(ids) + δ,   δ* ≈ argmax_{‖δ‖∞ <= eps, δ = 0 on padding} loss(f(E(ids) + δ))

    found by PGD from δ_0 = U(-eps, eps) (0 without ``random_start``) with steps of
    ``step_size * sign(∇_δ loss)``, each followed by projection onto the eps-ball. Unlike
    FreeLB, which bounds ‖δ‖_F, the ball here is L∞ like the image attacks'; there is no
    valid range. δ is zero where ``attention_mask == 0`` (every position is a token when
    ``inputs`` has no mask). ``loss_fn`` gets the model's output on the perturbed embeddings.

    Returns δ [B, L, H], detached; apply it with :func:`embedding_delta` (or through
    :func:`perturb`'s :class:`Perturbed`). ``steps=1, step_size=eps, random_start=False`` is
    FGSM in embedding space.
    """
    _check_grad_mode()
    ids = inputs["input_ids"]
    weight = input_embeddings(model).weight
    mask = inputs.get("attention_mask")
    mask = (torch.ones_like(ids) if mask is None else mask).unsqueeze(-1).to(weight.dtype)

    def loss_of(delta: Tensor) -> Tensor:
        with embedding_delta(model, delta * mask):
            return loss_fn(model(inputs))

    zero = torch.zeros(*ids.shape, weight.shape[1], dtype=weight.dtype, device=weight.device)
    delta = pgd(loss_of, zero, eps, step_size, steps, lo=None, hi=None, random_start=random_start, generator=generator)
    return delta * mask


# ---- one call for either kind of input ------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    """One attack, as a config builds it (``_target_: distillab.robustness.Attack``).

    ``name``: ``fgsm`` or ``pgd``. ``eps`` (>= 0): L∞ radius, in input units for images
    ([0, 1] pixels) and in embedding units for token models. ``steps`` (>= 1) and
    ``step_size`` (> 0; default ``2.5 * eps / steps``, so that the steps can cross the ball
    from any start) and ``random_start`` are PGD's; FGSM ignores them (it is one step of
    size ``eps`` from ``x``).
    """

    name: str = "pgd"
    eps: float = 8 / 255
    step_size: float | None = None
    steps: int = 10
    random_start: bool = True

    def __post_init__(self) -> None:
        check_choice("name", self.name, ATTACKS)
        set_ = lambda k, v: object.__setattr__(self, k, v)  # frozen
        set_("eps", check_number("eps", self.eps, low=0))
        set_("steps", check_int("steps", self.steps, low=1))
        check_choice("random_start", self.random_start, (True, False))
        if self.step_size is None:
            set_("step_size", 2.5 * self.eps / self.steps)
        else:
            set_("step_size", check_number("step_size", self.step_size, low=0, low_open=True))

    @property
    def key(self) -> str:
        """The name of its result in a report: ``fgsm@0.1``, ``pgd@0.03137``."""
        return f"{self.name}@{self.eps:g}"

    @property
    def pgd_steps(self) -> tuple[float, int, bool]:
        """(step_size, steps, random_start) of the PGD this attack runs: FGSM is one step of
        ``eps`` from ``x`` (see :func:`pgd`)."""
        if self.name == "fgsm":
            return self.eps, 1, False
        return self.step_size, self.steps, self.random_start

    def run(
        self,
        loss_fn: Callable[[Tensor], Tensor],
        x: Tensor,
        lo: float | None = 0.0,
        hi: float | None = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """:func:`fgsm` or :func:`pgd` on a tensor ``x`` with this attack's settings."""
        step_size, steps, random_start = self.pgd_steps
        return pgd(loss_fn, x, self.eps, step_size, steps, lo, hi, random_start, generator)


@dataclass(frozen=True)
class Perturbed:
    """The adversarial version of one batch's inputs.

    ``inputs``: ``x_adv`` for image tensors; the unchanged token dict for token inputs, whose
    perturbation is ``delta`` [B, L, H] (zero on padding), added to the word embeddings of the
    model it is applied to. Use ``adv(model, hidden_states=...)`` to run a model on it, or
    ``with adv.applied(model): ...`` around code that calls ``model(adv.inputs)`` itself.
    An ``x_adv`` can be fed to any model (e.g. a teacher); a ``delta`` fits only models whose
    embedding width is its H (normally the model it was crafted on).
    """

    inputs: Inputs
    delta: Tensor | None = None

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        if self.delta is None:
            yield
        else:
            with embedding_delta(model, self.delta):
                yield

    def __call__(self, model: nn.Module, **kwargs: Any) -> ModelOutput:
        with self.applied(model):
            return model(self.inputs, **kwargs)


def perturb(
    model: nn.Module,
    batch: Batch,
    loss_fn: Callable[[ModelOutput], Tensor],
    attack: Attack,
    lo: float | None = 0.0,
    hi: float | None = 1.0,
    generator: torch.Generator | None = None,
) -> Perturbed:
    """Attack ``model`` on ``batch["inputs"]``, increasing ``loss_fn(model output)``.

    Image tensors: ``attack.run`` on the pixels, kept in [lo, hi]. Token dicts (``input_ids``):
    :func:`embedding_attack` with the attack's eps, steps and step size (FGSM: one step of
    ``eps`` from δ = 0); ``lo``/``hi`` do not apply. The model's mode and parameter gradients
    are left as they are (see the module's docstring). For example, in a training step::

        adv = perturb(model, batch, lambda out: cross_entropy(out.logits, batch["labels"]), attack)
        loss = cross_entropy(adv(model).logits, batch["labels"])
    """
    inputs = batch["inputs"]
    if isinstance(inputs, Tensor):
        return Perturbed(attack.run(lambda x: loss_fn(model(x)), inputs, lo, hi, generator))
    if not isinstance(inputs, dict) or "input_ids" not in inputs:
        raise TypeError("batch['inputs'] must be an image tensor or a dict of token tensors with 'input_ids'")
    step_size, steps, random_start = attack.pgd_steps
    return Perturbed(
        inputs, embedding_attack(model, inputs, loss_fn, attack.eps, step_size, steps, random_start, generator)
    )
