import torch

from editlab.stats import Corpus, read_corpus_file, second_moments

from tests.conftest import tiny_handle


def test_second_moment_equals_mean_outer_product_and_is_cached(tmp_path, monkeypatch, handle):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    h = tiny_handle("llama", handle.tokenizer)
    corpus = Corpus(ident="unit", source="file", texts=("The cat sat on the mat. " * 20, "Dogs bark at night. " * 20))
    c = second_moments(h, [1, 2], corpus, n_tokens=64, seq_len=32)
    # By hand: the keys (inputs of layer 1's down_proj) over the same 64 tokens.
    ids = handle.tokenizer(corpus.texts[0], add_special_tokens=False).input_ids
    ids = (ids + handle.tokenizer(corpus.texts[1], add_special_tokens=False).input_ids)
    chunks = [ids[0:32], ids[32:64]]
    keys = []
    for ch in chunks:
        store = {}
        hook = h.module(h.arch.mlp_out_proj(1)).register_forward_hook(lambda m, i, o: store.__setitem__("k", i[0]))
        with torch.no_grad():
            h.model(torch.tensor([ch]))
        hook.remove()
        keys.append(store["k"][0])
    k = torch.cat(keys)
    assert torch.allclose(c[1], k.T @ k / k.shape[0], rtol=1e-4, atol=1e-6)
    files = sorted((tmp_path / "stats").rglob("*.safetensors"))
    assert len(files) == 2  # one entry per layer, keyed by everything that determines it
    again = second_moments(h, [1], corpus, n_tokens=64, seq_len=32)
    assert torch.equal(again[1], c[1])
    other = second_moments(h, [1], corpus, n_tokens=32, seq_len=32)  # another token count: another entry
    assert len(sorted((tmp_path / "stats").rglob("*.safetensors"))) == 3
    assert not torch.equal(other[1], c[1])


def test_corpus_file_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first paragraph\n\nsecond paragraph\n")
    assert read_corpus_file(tmp_path / "a.txt").texts == ("first paragraph", "second paragraph\n")
    (tmp_path / "b.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    assert read_corpus_file(tmp_path / "b.jsonl").texts == ("one", "two")
    (tmp_path / "c.jsonl").write_text('{"text": "one"}\nnot json\n')
    import pytest

    with pytest.raises(ValueError, match="line 2"):
        read_corpus_file(tmp_path / "c.jsonl")
