import pytest
import torch

from editlab.model.stats import Corpus, read_corpus_file, second_moments
from tests.conftest import tiny_handle


def test_second_moment_equals_mean_outer_product_and_is_cached(tmp_path, monkeypatch, handle):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    h = tiny_handle("llama", handle.tokenizer)
    corpus = Corpus(ident="unit", source="file", texts=("The cat sat on the mat. " * 20, "Dogs bark at night. " * 20))
    c = second_moments(h, [1, 2], corpus, n_tokens=64, seq_len=32)
    # By hand: the keys (inputs of layer 1's down_proj) over the same 64 tokens.
    ids = handle.tokenizer(corpus.texts[0], add_special_tokens=False).input_ids
    ids = ids + handle.tokenizer(corpus.texts[1], add_special_tokens=False).input_ids
    chunks = [ids[0:32], ids[32:64]]
    keys = []
    for ch in chunks:
        store = {}
        hook = h.module(h.arch.mlp_out_proj(1)).register_forward_hook(
            lambda m, i, o: store.__setitem__("k", i[0])  # noqa: B023 (used within this iteration)
        )
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


def test_a_bundle_round_trips_symmetric_statistics_in_float16(tmp_path, monkeypatch, handle):
    """write_bundle stores the upper triangle in float16; reading it back mirrors it into the full
    symmetric matrix, within float16 rounding, for the model whose fingerprint it names only."""
    from editlab.model import stats

    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "cache"))
    h = tiny_handle("llama", handle.tokenizer)
    corpus = Corpus(ident="unit", source="file", texts=("The cat sat on the mat. " * 40,))
    c = second_moments(h, [1, 2], corpus, n_tokens=64, seq_len=32)
    monkeypatch.setattr(stats, "BUNDLED_DIR", tmp_path / "bundled")
    f = stats.write_bundle(
        h, c, corpus, 64, 64, tmp_path / "bundled" / "tiny.safetensors", "editlab stats ...", "unit text"
    )
    assert set(stats.bundled_layers(h)) == {1, 2}
    found = stats.bundled_corpus(h, [1, 2], 64)
    assert found is not None and found.source == "bundled" and "unit text" in found.label
    assert stats.bundled_corpus(h, [1, 2], 128) is None  # another token count is another statistic
    assert stats.bundled_corpus(h, [3], 64) is None  # a layer it does not hold
    back = second_moments(h, [1, 2], found, n_tokens=64)
    for layer in (1, 2):
        assert torch.equal(back[layer], back[layer].T)
        assert torch.allclose(back[layer], c[layer], rtol=2e-3, atol=1e-3 * float(c[layer].abs().max()))
    other = tiny_handle("qwen2", handle.tokenizer)  # another model: the bundle is not offered
    assert stats.bundled_layers(other) == {}
    assert f.stat().st_size < c[1].numel() * 4  # compact: less than one float32 layer per two layers


def test_offline_without_a_corpus_says_what_to_do_instead_of_sampling(tmp_path, monkeypatch, handle):
    from editlab.model import stats

    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(stats, "BUNDLED_DIR", tmp_path / "none")
    h = tiny_handle("llama", handle.tokenizer)
    with pytest.raises(stats.NeedCorpus) as e:
        stats.resolve_corpus(h, None, 5000, online=False, layers=[1])
    text = str(e.value)
    assert "--corpus" in text and "--sample-corpus" in text and "mom2_adjustment" in text
    assert "on this machine" in text and "layer(s) [1]" in text
    assert not list(tmp_path.rglob("sampled-*"))  # nothing was sampled
    sampled = stats.resolve_corpus(h, None, 64, online=False, layers=[1], sample_corpus=True)
    assert sampled.source == "model-sampled" and sampled.texts


def test_eta_text_says_how_long_is_left():
    import time

    from editlab.model.stats import eta_text

    started = time.perf_counter() - 10.0  # 10 s for a quarter of the work
    assert eta_text(started, 25, 100) == ", ~30 s left"
    assert eta_text(started, 100, 100) == ""
    assert eta_text(time.perf_counter(), 1, 100) == ""  # too early to tell


def test_the_default_model_ships_statistics_for_its_default_edit_layers(handle):
    """A fresh offline machine edits without a statistics pass: the bundle covers the layers the
    default hyperparameters of ROME, MEMIT, AlphaEdit and PMET edit, at their default token count."""
    from editlab import methods
    from editlab.model import stats

    have = stats.bundled_layers(handle)
    for name in ("rome", "memit", "alphaedit", "pmet"):
        hp = methods.get(name).HParams.for_model(handle)
        layers = [hp.layer] if hasattr(hp, "layer") else hp.layers
        assert stats.bundled_corpus(handle, layers, hp.mom2_n_tokens) is not None, (name, layers, sorted(have))
    meta = next(iter(have.values()))
    assert "WikiText-2" in meta["corpus_name"] and meta["command"].startswith("editlab stats")
    c = stats.second_moments(handle, [5], stats.bundled_corpus(handle, [5], 100_000), 100_000)[5]
    d_in = handle.mlp_out_weight(5).shape[1]
    assert c.shape == (d_in, d_in)
    assert torch.equal(c, c.T) and torch.linalg.eigvalsh(c.double()).min() > 0  # symmetric, positive definite


@pytest.mark.slow
def test_an_offline_edit_without_a_corpus_uses_the_bundled_statistics(handle, cf_facts):
    from editlab import EditSession

    session = EditSession(handle, online=False)  # no corpus, offline: what a newcomer runs
    record = session.edit(cf_facts[0], "rome")
    assert record.info["stats_source"].startswith("bundled with editlab: WikiText-2")
    assert record.timings["stats_s"] < 5.0  # read, not computed
    session.reset()
