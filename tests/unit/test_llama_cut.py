"""Students cut from a Llama teacher (pruning/llama_depth.py, llama_width.py, cut.py):
Block Influence by hand, exactness of depth and width cuts against masked teachers,
GQA shapes, save/reload, cached generation, config errors."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distillab.core.config import ConfigError
from distillab.pruning.cut import cut_llama, layer_parameter_count, parameter_budget
from distillab.pruning.llama_depth import block_influence, drop_layers, every_k, layers_to_keep
from distillab.pruning.llama_width import WidthImportance, activation_importance, prune_width

LAYERS = 5


def tiny_config(**overrides) -> LlamaConfig:
    shape = dict(
        hidden_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=64,
        vocab_size=100,
        tie_word_embeddings=True,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
    )
    return LlamaConfig(**{**shape, **overrides})


def tiny(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():  # HF's init (std 0.02) makes every layer near-identity; larger weights separate them
        for p in model.model.layers.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
        for norm in model.modules():  # RMSNorm weights of 1 would leave cosines unchanged by the final norm
            if type(norm).__name__ == "LlamaRMSNorm":
                norm.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls on a shared CPU: thread hand-offs cost 100x the maths (1 s vs 5 ms a forward)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for length in (7, 9):
        ids = torch.randint(0, 100, (3, length), generator=g)
        mask = torch.ones_like(ids)
        mask[1, length - 3 :] = 0  # right padding on one sequence
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def logits(model: LlamaForCausalLM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def masked_equal(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> bool:
    keep = mask.bool()
    return torch.allclose(a[keep], b[keep], atol=1e-5, rtol=1e-4)


def make_identity(model: LlamaForCausalLM, layer: int) -> None:
    """Zero what the layer writes to the residual stream: it becomes x ↦ x."""
    with torch.no_grad():
        model.model.layers[layer].self_attn.o_proj.weight.zero_()
        model.model.layers[layer].mlp.down_proj.weight.zero_()


# ---------------------------------------------------------------- depth


def test_block_influence_equals_cosines_of_the_raw_hidden_states(batches):
    model = tiny()
    # By hand: without the final norm, hidden_states[i] enters layer i and [i + 1] leaves it.
    raw = copy.deepcopy(model)
    raw.model.norm = torch.nn.Identity()
    sums, tokens = torch.zeros(LAYERS, dtype=torch.float64), 0
    for batch in batches:
        with torch.no_grad():
            states = raw(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].bool()
        tokens += int(mask.sum())
        for i in range(LAYERS):
            a, b = states[i][mask].double(), states[i + 1][mask].double()
            sums[i] += ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).sum()
    expected = 1 - sums / tokens
    got = block_influence(model, batches)
    assert got.shape == (LAYERS,)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    # The normed last state would give another value for the last layer: the hooks matter.
    with torch.no_grad():
        normed = model(**batches[0], output_hidden_states=True).hidden_states
    mask = batches[0]["attention_mask"].bool()
    wrong = 1 - torch.nn.functional.cosine_similarity(normed[-2][mask], normed[-1][mask], dim=-1).mean()
    assert abs(float(wrong) - float(block_influence(model, batches[:1])[-1])) > 1e-3


def test_an_identity_layer_has_the_smallest_block_influence_near_zero(batches):
    model = tiny()
    make_identity(model, 2)
    bi = block_influence(model, batches)
    assert int(bi.argmin()) == 2
    assert abs(float(bi[2])) < 1e-6
    assert float(bi.sort().values[1]) > 1e-3  # the others really turn the state
    assert layers_to_keep(bi, LAYERS - 1) == [0, 1, 3, 4]


def test_layers_to_keep_and_every_k_by_hand():
    assert layers_to_keep(torch.tensor([0.1, 0.5, 0.2, 0.9, 0.3]), 3) == [1, 3, 4]
    assert layers_to_keep([0.2, 0.2, 0.1], 1) == [0]  # tie: the earlier layer
    assert every_k(5, 3) == [0, 2, 4]
    assert every_k(30, 25) == [i for i in range(30) if i not in (3, 9, 14, 20, 26)]
    for n in range(1, 13):
        for keep in range(1, n + 1):
            kept = every_k(n, keep)
            assert len(kept) == keep and kept == sorted(set(kept)) and kept[0] == 0
            assert keep == 1 or kept[-1] == n - 1


def test_drop_layers_equals_the_teacher_with_the_dropped_layers_made_identity(batches):
    teacher = tiny()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = drop_layers(teacher, [1, 3, 4])
    by_hand = copy.deepcopy(teacher)
    for i in (0, 2):
        make_identity(by_hand, i)
    for batch in batches:
        assert masked_equal(logits(student, batch), logits(by_hand, batch), batch["attention_mask"])
    assert student.config.num_hidden_layers == 3 and len(student.model.layers) == 3
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1, 2]
    # The teacher is untouched: weights, layer count, layer_idx.
    assert teacher.config.num_hidden_layers == LAYERS
    assert [layer.self_attn.layer_idx for layer in teacher.model.layers] == list(range(LAYERS))
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert student.lm_head.weight is student.model.embed_tokens.weight  # still tied


def test_drop_layers_cuts_layer_types():
    teacher = tiny(layer_types=["full_attention"] * LAYERS)
    teacher.config.layer_types = [f"full_attention_{i}" for i in range(LAYERS)]  # distinct, to see which stay
    student = drop_layers(teacher, [0, 3])
    assert student.config.layer_types == ["full_attention_0", "full_attention_3"]
    assert len(teacher.config.layer_types) == LAYERS


def test_cached_generation_works_on_the_cut_model(batches):
    student = drop_layers(tiny(), [1, 3, 4])  # old indices 3 and 4 would overflow a 3-layer cache
    prompt = batches[0]["input_ids"][:1]
    options = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = student.generate(prompt, use_cache=True, **options)
    uncached = student.generate(prompt, use_cache=False, **options)
    assert cached.shape == (1, prompt.shape[1] + 6)
    assert torch.equal(cached, uncached)


# ---------------------------------------------------------------- width


def test_activation_importance_by_hand(batches):
    model = tiny()
    mlp_inputs: list[torch.Tensor] = []
    o_inputs: list[torch.Tensor] = []
    layer = model.model.layers[1]
    h1 = layer.mlp.register_forward_hook(lambda m, args, out: mlp_inputs.append(args[0]))
    h2 = layer.self_attn.o_proj.register_forward_hook(lambda m, args, out: o_inputs.append(args[0]))
    for batch in batches:
        logits(model, batch)
    h1.remove(), h2.remove()
    for aggregation in ("mean", "l2"):
        neurons, heads, sequences = 0, 0, 0
        for x, o, batch in zip(mlp_inputs, o_inputs, batches):
            a = (torch.nn.functional.silu(layer.mlp.gate_proj(x)) * layer.mlp.up_proj(x)).detach().double().abs()
            n = o.detach().double().unflatten(-1, (4, 8)).norm(dim=-1)
            for s, mask in enumerate(batch["attention_mask"].bool()):
                if aggregation == "mean":
                    neurons = neurons + a[s][mask].mean(0)
                    heads = heads + n[s][mask].mean(0)
                else:
                    neurons = neurons + a[s][mask].pow(2).sum(0).sqrt()
                    heads = heads + n[s][mask].pow(2).sum(0).sqrt()
                sequences += 1
        got = activation_importance(model, batches, aggregation)
        assert got.neurons.shape == (LAYERS, 64) and got.heads.shape == (LAYERS, 4)
        torch.testing.assert_close(got.neurons[1], neurons / sequences)
        torch.testing.assert_close(got.heads[1], heads / sequences)


def test_pruning_neurons_with_zero_down_proj_columns_leaves_logits_unchanged(batches):
    teacher = tiny()
    g = torch.Generator().manual_seed(2)
    score = torch.ones(LAYERS, 64)
    with torch.no_grad():
        for i, layer in enumerate(teacher.model.layers):
            dead = torch.randperm(64, generator=g)[:24]  # different neurons in every layer
            layer.mlp.down_proj.weight[:, dead] = 0
            score[i, dead] = 0
    importance = WidthImportance(neurons=score, heads=torch.ones(LAYERS, 4))
    student = prune_width(teacher, importance, intermediate_size=40)
    assert student.config.intermediate_size == 40
    assert all(layer.mlp.down_proj.weight.shape == (32, 40) for layer in student.model.layers)
    for batch in batches:
        assert masked_equal(logits(student, batch), logits(teacher, batch), batch["attention_mask"])


def test_pruned_ffn_equals_the_teacher_with_the_removed_neurons_masked(batches):
    teacher = tiny()
    importance = activation_importance(teacher, batches)
    student = prune_width(teacher, importance, intermediate_size=24)
    masked = copy.deepcopy(teacher)
    with torch.no_grad():
        for i, layer in enumerate(masked.model.layers):
            order = importance.neurons[i].argsort(descending=True)
            layer.mlp.down_proj.weight[:, order[24:]] = 0
            # each layer keeps its own neurons
    kept0 = set(importance.neurons[0].argsort(descending=True)[:24].tolist())
    kept1 = set(importance.neurons[1].argsort(descending=True)[:24].tolist())
    assert kept0 != kept1
    for batch in batches:
        assert masked_equal(logits(student, batch), logits(masked, batch), batch["attention_mask"])
        assert not masked_equal(logits(student, batch), logits(teacher, batch), batch["attention_mask"])


@pytest.mark.parametrize("kv, per_kv", [(1, 2), (2, 1), (1, 1)])
def test_pruned_heads_equal_the_teacher_with_those_heads_masked(batches, kv, per_kv):
    teacher = tiny()
    importance = activation_importance(teacher, batches)
    student = prune_width(teacher, importance, num_kv_heads=kv, heads_per_kv=per_kv)
    masked = copy.deepcopy(teacher)
    with torch.no_grad():
        for i, layer in enumerate(masked.model.layers):
            h = importance.heads[i].tolist()  # query heads 0,1 use KV head 0; 2,3 use KV head 1
            groups = sorted(sorted(range(2), key=lambda g: -(h[2 * g] + h[2 * g + 1]))[:kv])
            kept = [q for g in groups for q in sorted(sorted((2 * g, 2 * g + 1), key=lambda q: -h[q])[:per_kv])]
            for q in set(range(4)) - set(kept):
                layer.self_attn.o_proj.weight[:, q * 8 : (q + 1) * 8] = 0
    for batch in batches:
        assert masked_equal(logits(student, batch), logits(masked, batch), batch["attention_mask"])
    c = student.config
    assert (c.num_key_value_heads, c.num_attention_heads, c.head_dim) == (kv, kv * per_kv, 8)
    for layer in student.model.layers:
        attn = layer.self_attn
        assert attn.q_proj.weight.shape == (kv * per_kv * 8, 32)
        assert attn.k_proj.weight.shape == attn.v_proj.weight.shape == (kv * 8, 32)
        assert attn.o_proj.weight.shape == (32, kv * per_kv * 8)
        assert attn.num_key_value_groups == per_kv
    assert teacher.config.num_attention_heads == 4  # untouched


# ---------------------------------------------------------------- cut_llama


def test_cut_saves_and_reloads_to_identical_logits(batches, tmp_path):
    teacher = tiny()
    student, report = cut_llama(
        teacher,
        batches,
        depth={"method": "block_influence", "keep": 3},
        width={"intermediate_size": 32, "num_kv_heads": 1, "heads_per_kv": 2},
    )
    student.save_pretrained(tmp_path)
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    for batch in batches:
        assert torch.equal(logits(student, batch), logits(reloaded, batch))
    c = reloaded.config
    assert (c.num_hidden_layers, c.intermediate_size, c.num_key_value_heads, c.num_attention_heads) == (3, 32, 1, 2)
    generated = reloaded.generate(batches[0]["input_ids"][:1], max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert generated.shape[1] == batches[0]["input_ids"].shape[1] + 3


def test_cut_report(batches):
    teacher = tiny()
    student, report = cut_llama(teacher, batches, depth={"method": "block_influence", "keep": 3})
    bi = block_influence(teacher, batches)
    assert report.layer_importance == pytest.approx(bi.tolist())
    assert report.kept_layers == layers_to_keep(bi, 3) and len(report.dropped_layers) == 2
    assert report.shape_before["num_layers"] == LAYERS and report.shape_after["num_layers"] == 3
    per_layer = layer_parameter_count(teacher) // LAYERS
    assert report.layer_params_before == LAYERS * per_layer and report.layer_params_after == 3 * per_layer
    assert report.layer_params_removed == pytest.approx(0.4)
    assert report.params_before - report.params_after == 2 * per_layer
    assert report.as_dict()["layer_params_removed"] == pytest.approx(0.4)
    _, none = cut_llama(teacher, depth={"method": "layers", "layers": [0, 4]})
    assert none.layer_importance is None and none.kept_layers == [0, 4]


def test_parameter_budget_by_hand_and_as_measured():
    teacher = tiny()
    # One tiny layer: attention 32·(32+16+16) + 32·32 = 3072, FFN 3·32·64 = 6144, norms 64: 9280.
    budget = parameter_budget(teacher, 0.2, multiple=8)
    assert budget.keep_layers == 4 and budget.depth_fraction == pytest.approx(0.2)
    assert budget.intermediate_size == 48  # 64 − 0.2·9280/96 = 44.7 → 48
    _, width = cut_llama(teacher, [torch.randint(0, 100, (2, 5))], width={"intermediate_size": 48})
    assert width.layer_params_removed == pytest.approx(budget.width_fraction)
    _, depth = cut_llama(teacher, depth={"method": "every_k", "keep": budget.keep_layers})
    assert depth.layer_params_removed == pytest.approx(budget.depth_fraction)
    # SmolLM2-135M: a layer is 884,736 + 2,654,208 + 1,152 = 3,540,096 parameters.
    smol = LlamaConfig(
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=1536,
        vocab_size=49152,
    )
    mild, strong = parameter_budget(smol, 1 / 6, multiple=64), parameter_budget(smol, 0.5, multiple=32)
    assert (mild.keep_layers, mild.intermediate_size) == (25, 1216)  # 1536 − 341.4 = 1194.6
    assert (strong.keep_layers, strong.intermediate_size) == (15, 512)  # 1536 − 1024.3
    with pytest.raises(ConfigError, match="^fraction="):
        parameter_budget(smol, 0.8)  # the FFN is 75% of a layer


@pytest.mark.parametrize(
    "depth, width, key",
    [
        ({"method": "shortest", "keep": 3}, None, "cut.depth.method"),
        ({"method": "every_k", "keep": LAYERS + 1}, None, "cut.depth.keep"),
        ({"method": "block_influence", "keep": 0}, None, "cut.depth.keep"),
        ({"method": "block_influence"}, None, "cut.depth.keep"),
        ({"method": "layers", "layers": [3, 1]}, None, "cut.depth.layers"),
        ({"method": "layers", "layers": [0, LAYERS]}, None, "cut.depth.layers"),
        ({"method": "every_k", "keep": 2, "layers": [0, 1]}, None, "cut.depth.layers"),
        ({"method": "every_k", "keep": 2, "kep": 3}, None, "cut.depth.kep"),
        (None, {"intermediate_size": 65}, "cut.width.intermediate_size"),
        (None, {"num_kv_heads": 3}, "cut.width.num_kv_heads"),
        (None, {"heads_per_kv": 0}, "cut.width.heads_per_kv"),
        (None, {"aggregation": "max"}, "cut.width.aggregation"),
        (None, {"hidden_size": 16}, "cut.width.hidden_size"),
        (None, [64], "cut.width"),
    ],
)
def test_bad_cuts_name_their_key_before_any_forward(batches, depth, width, key):
    teacher = tiny()
    teacher.register_forward_pre_hook(lambda *a: pytest.fail("a forward ran before the config was checked"))
    with pytest.raises(ConfigError) as err:
        cut_llama(teacher, batches, depth=depth, width=width)
    assert err.value.key == key


def test_missing_batches_and_a_head_count_llama_refuses():
    with pytest.raises(ConfigError) as err:
        cut_llama(tiny(), [], depth={"method": "block_influence", "keep": 2})
    assert err.value.key == "cut.batches"
    # 30 wide, 6 query heads in 2 groups: 2 × 2 = 4 heads does not divide 30 (LlamaConfig requires it).
    odd = tiny(hidden_size=30, num_attention_heads=6, head_dim=4)
    with pytest.raises(ConfigError) as err:
        cut_llama(odd, [torch.randint(0, 100, (1, 4))], width={"num_kv_heads": 2, "heads_per_kv": 2})
    assert err.value.key == "cut.width.heads_per_kv"
    with pytest.raises(ConfigError) as err:
        cut_llama(torch.nn.Linear(2, 2), depth={"method": "every_k", "keep": 1})
    assert err.value.key == "teacher"


def test_a_dequantized_gguf_teacher_gives_a_plain_student(tmp_path, batches):
    teacher = tiny()
    # What from_pretrained(gguf_file=...) leaves on a de-quantized model: save_pretrained refuses it.
    teacher.hf_quantizer = SimpleNamespace(quantization_config=SimpleNamespace(quant_method="gguf"))
    teacher.is_quantized = True
    with pytest.raises(ValueError, match="not serializable"):
        teacher.save_pretrained(tmp_path / "teacher")
    student, _ = cut_llama(teacher, batches, depth={"method": "every_k", "keep": 3}, width={"intermediate_size": 32})
    assert getattr(student, "hf_quantizer", None) is None and not student.is_quantized
    assert teacher.hf_quantizer is not None
    student.save_pretrained(tmp_path / "student")
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path / "student").eval()
    assert torch.equal(logits(student, batches[0]), logits(reloaded, batches[0]))
    with torch.no_grad():
        teacher.model.layers[0].mlp.up_proj.weight = torch.nn.Parameter(
            torch.zeros(64, 32, dtype=torch.int8), requires_grad=False
        )
    with pytest.raises(ConfigError) as err:
        drop_layers(teacher, [0, 1])
    assert err.value.key == "teacher"
