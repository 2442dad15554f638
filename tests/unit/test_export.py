"""Deployable forms: int8 dynamic quantization and ONNX export checked under onnxruntime."""

from importlib.util import find_spec

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from distillab.data import DigitsDataModule
from distillab.evaluation.compression import (
    accuracy,
    count_nonzero,
    count_parameters,
    example_inputs,
    size_on_disk,
)
from distillab.export import export_onnx, onnx_agreement, quantize_int8
from distillab.models import ModelOutput, build_bert, build_vit

ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
needs_onnx = pytest.mark.skipif(
    any(find_spec(m) is None for m in ONNX_MODULES),
    reason="ONNX export needs onnx, onnxscript and onnxruntime (pip install onnx onnxscript onnxruntime)",
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run no faster on two threads, and with other work on the machine OpenMP
    barriers make them 50-100x slower: train and compare single-threaded, then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def trained_vit(data):
    """A tiny ViT after 8 epochs of plain AdamW (about 85% test accuracy): far from chance, so
    top-1 agreement means something (a random init predicts one class for most inputs)."""
    torch.manual_seed(0)
    model = build_vit(
        **data.model_kwargs, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, patch_size=2
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(8):
        for batch in data.train_dataloader():
            loss = nn.functional.cross_entropy(model(batch["inputs"]).logits, batch["labels"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _top1_agreement(a: nn.Module, b: nn.Module, loader) -> float:
    same = total = 0
    with torch.inference_mode():
        for batch in loader:
            same += int((a(batch["inputs"]).logits.argmax(-1) == b(batch["inputs"]).logits.argmax(-1)).sum())
            total += len(batch["labels"])
    return same / total


def test_int8_quantizes_every_linear_and_keeps_the_original_float(trained_vit, data):
    float_acc = accuracy(trained_vit, data.test_dataloader())
    assert float_acc > 0.6
    q = quantize_int8(trained_vit)
    linears = [name for name, m in trained_vit.named_modules() if isinstance(m, nn.Linear)]
    quantized = dict(q.named_modules())
    assert linears and all(isinstance(quantized[n], torch.ao.nn.quantized.dynamic.Linear) for n in linears)
    assert not any(type(m) is nn.Linear for m in q.modules())
    assert all(type(m) is nn.Linear for n, m in trained_vit.named_modules() if n in linears)
    assert count_parameters(q) == count_parameters(trained_vit)  # same weights, fewer bits each
    assert size_on_disk(q)["dense_bytes"] < 0.7 * size_on_disk(trained_vit)["dense_bytes"]

    out = q(example_inputs(data, 64))
    assert isinstance(out, ModelOutput) and out.logits.shape == (64, 10) and out.logits.dtype == torch.float32
    assert _top1_agreement(q, trained_vit, data.test_dataloader()) >= 0.95
    assert accuracy(q, data.test_dataloader()) >= float_acc - 0.03


def test_int8_keeps_pruned_zeros_and_the_masks_of_the_original(tiny_vit):
    model = tiny_vit()
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    prune.l1_unstructured(first, "weight", amount=0.5)
    zeros = int((first.weight == 0).sum())
    assert zeros == first.weight.numel() // 2
    q = quantize_int8(model)
    assert hasattr(first, "weight_mask")  # the original is untouched
    assert count_parameters(q) == count_parameters(model)
    # Every pruned weight is still an exact zero after quantization (small ones may join them).
    assert count_nonzero(q) <= count_parameters(q) - zeros


def test_int8_bert_runs_and_agrees_with_float_on_token_batches():
    torch.manual_seed(0)
    model = build_bert(
        num_labels=3,
        vocab_size=50,
        max_length=16,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        dropout=0.0,
    ).eval()
    q = quantize_int8(model)
    batch = _token_batches(50, 16, [32])[0]
    with torch.inference_mode():
        float_logits, int8_logits = model(batch["inputs"]).logits, q(batch["inputs"]).logits
    assert int8_logits.shape == (32, 3)
    assert (int8_logits - float_logits).abs().max() < 0.05 * float_logits.abs().max() + 1e-3


@needs_onnx
def test_onnx_vit_matches_pytorch_on_the_digits_test_set(trained_vit, data, tmp_path):
    import onnxruntime as ort

    path = export_onnx(trained_vit, example_inputs(data, 1), tmp_path / "vit.onnx")
    assert path.exists() and not trained_vit.training
    result = onnx_agreement(path, trained_vit, data.test_dataloader())
    assert result["samples"] == len(data.splits["test"])
    assert result["top1_agreement"] >= 0.999
    assert result["max_abs_diff"] < 1e-4

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    for batch_size in (1, 64):
        x = example_inputs(data, batch_size)
        (logits,) = session.run(["logits"], {"pixel_values": x.numpy()})
        assert logits.shape == (batch_size, 10)
        with torch.inference_mode():
            torch.testing.assert_close(torch.from_numpy(logits), trained_vit(x).logits, atol=1e-4, rtol=1e-4)


def _token_batches(vocab: int, length: int, sizes: list[int], seed: int = 0) -> list[dict]:
    """Random token ids with right padding of random length (mask 0 over the padding)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for size in sizes:
        ids = torch.randint(1, vocab, (size, length), generator=g)
        lengths = torch.randint(2, length + 1, (size,), generator=g)
        mask = (torch.arange(length)[None] < lengths[:, None]).long()
        batches.append(
            {"inputs": {"input_ids": ids * mask, "attention_mask": mask}, "labels": torch.zeros(size, dtype=torch.long)}
        )
    return batches


@needs_onnx
def test_onnx_bert_matches_pytorch_on_random_token_batches(tmp_path):
    torch.manual_seed(0)
    model = build_bert(
        num_labels=3,
        vocab_size=50,
        max_length=16,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        dropout=0.1,
    )
    model.train()  # dropout on: the export must still be of the eval-mode graph
    batches = _token_batches(50, 16, [1, 64, 64, 7])
    path = export_onnx(model, batches[2]["inputs"], tmp_path / "bert.onnx")
    assert model.training  # the caller's model is left as it was
    result = onnx_agreement(path, model, batches)
    assert result["samples"] == 136
    assert result["top1_agreement"] >= 0.999
    assert result["max_abs_diff"] < 1e-4
    assert model.training
