"""Importing EasyEdit/ROME second-moment files into the statistics cache."""

import numpy as np
import pytest
import torch

from editlab import EditSession, Fact
from editlab.model.stats import easyedit_samples_to_tokens, second_moments
from editlab.model.stats_import import corpus_for, import_easyedit_stats, parse_name, resolve_stats_corpus
from tests.conftest import tiny_handle


def write_npz(path, keys: torch.Tensor, **extra):
    """A file laid out as rome/EasyEdit's layer_stats saves it: the running sum and the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    k = keys.double().numpy()
    np.savez(
        path,
        **{
            "mom2.mom2": k.T @ k,
            "mom2.count": np.array(len(k)),
            "mom2.constructor": np.array("util.runningstats.SecondMoment()"),
            **extra,
        },
    )


@pytest.fixture
def tiny(handle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tiny_handle("llama", handle.tokenizer)


def test_parse_name_reads_layer_dtype_and_count():
    assert parse_name("model.layers.4.mlp.down_proj_float32_mom2_100000.npz") == (
        "model.layers.4.mlp.down_proj",
        "float32",
        100000,
    )
    assert parse_name("transformer.h.17.mlp.c_proj_float64_mom2_2000.npz") == (
        "transformer.h.17.mlp.c_proj",
        "float64",
        2000,
    )
    with pytest.raises(ValueError, match="not an EasyEdit/ROME statistics file name"):
        parse_name("covariance.npz")


def test_imported_file_is_what_second_moments_returns_and_an_edit_uses(tiny, tmp_path):
    d_in = tiny.mlp_out_weight(1).shape[1]
    torch.manual_seed(0)
    keys = {layer: torch.randn(500, d_in) * (layer + 1) for layer in (0, 1)}
    folder = tmp_path / "stats" / "tiny" / "wikipedia_stats"
    for layer, k in keys.items():
        write_npz(folder / f"model.layers.{layer}.mlp.down_proj_float32_mom2_1000.npz", k)

    done = import_easyedit_stats(tiny, tmp_path / "stats")
    assert sorted(s.layer for s in done) == [0, 1]
    # N = 1,000 text samples, registered under the token count the importer converts a YAML's
    # mom2_n_samples 1,000 to.
    tokens = easyedit_samples_to_tokens(1000)
    assert {s.dataset for s in done} == {"wikipedia"} and {(s.n_samples, s.n_tokens) for s in done} == {(1000, tokens)}

    # second_moments finds the imported C = Σ k kᵀ / count without a corpus pass (no text to read).
    c = second_moments(tiny, [0, 1], corpus_for("wikipedia"), tokens)
    for layer, k in keys.items():
        want = (k.double().T @ k.double() / len(k)).float()
        assert torch.allclose(c[layer], want, rtol=1e-5, atol=1e-5)

    corpus, note = resolve_stats_corpus(tiny, "wikipedia", None, [0, 1], tokens)
    assert corpus.source == "imported" and note is None
    # EasyEdit's own keys select the imported statistics for an edit, ROME's as MEMIT's.
    session = EditSession(tiny, online=False)
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    record = session.edit(
        fact, "memit", {"layers": [0, 1], "mom2_dataset": "wikipedia", "mom2_n_samples": 1000, "v_num_grad_steps": 2}
    )
    assert record.info["stats_source"] == "imported: easyedit:wikipedia"
    record = session.edit(
        fact, "rome", {"layers": [1], "mom2_dataset": "wikipedia", "mom2_n_samples": 1000, "v_num_grad_steps": 2}
    )
    assert record.info["stats_source"] == "imported: easyedit:wikipedia"


def test_partial_or_mismatched_imports_are_refused_with_the_reason(tiny, tmp_path):
    d_in = tiny.mlp_out_weight(0).shape[1]
    write_npz(tmp_path / "wiki_stats" / "model.layers.0.mlp.down_proj_float32_mom2_1000.npz", torch.randn(50, d_in))
    import_easyedit_stats(tiny, tmp_path / "wiki_stats")
    with pytest.raises(ValueError, match=r"do not cover layer\(s\) \[1\].*layer 0: N=1,000 samples = 139,000 tokens"):
        resolve_stats_corpus(tiny, "wiki", None, [0, 1], easyedit_samples_to_tokens(1000))
    with pytest.raises(ValueError, match="do not cover.*set mom2_n_samples to the imported N"):
        resolve_stats_corpus(tiny, "wiki", None, [0], easyedit_samples_to_tokens(5000))  # another N
    # A dataset name that is neither a file nor imported: the default corpus, and a note saying so.
    (tmp_path / "c.txt").write_text("Some text for statistics. " * 50)
    corpus, note = resolve_stats_corpus(tiny, "wikipedia", str(tmp_path / "c.txt"), [0], 100)
    assert corpus.source == "file" and "neither a corpus file nor imported statistics" in note


def test_files_for_another_model_or_with_pickled_objects_are_rejected(tiny, tmp_path):
    d_in = tiny.mlp_out_weight(0).shape[1]
    write_npz(tmp_path / "a" / "transformer.h.0.mlp.c_proj_float32_mom2_10.npz", torch.randn(10, d_in))
    with pytest.raises(ValueError, match="not an MLP output projection of this llama model"):
        import_easyedit_stats(tiny, tmp_path / "a")
    write_npz(tmp_path / "b" / "model.layers.0.mlp.down_proj_float32_mom2_10.npz", torch.randn(10, d_in + 1))
    with pytest.raises(ValueError, match="another model"):
        import_easyedit_stats(tiny, tmp_path / "b")
    # An object array would need pickle to load: refused from its header, never unpickled.
    bad = tmp_path / "c" / "model.layers.0.mlp.down_proj_float32_mom2_10.npz"
    bad.parent.mkdir()
    np.savez(bad, **{"mom2.mom2": np.array([{"x": 1}], dtype=object), "mom2.count": np.array(10)})
    with pytest.raises(ValueError, match=r"mom2_10\.npz \(layer 0\): mom2.mom2 holds object values"):
        import_easyedit_stats(tiny, bad)


NAME = "model.layers.0.mlp.down_proj_float32_mom2_10.npz"


def _huge_header_npz(path, d_in: int) -> None:
    """An .npz whose mom2.mom2 header declares a 2**22 x 2**22 float64 array (128 TiB) over a few bytes."""
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (2**22, 2**22)})
    count = io.BytesIO()
    np.save(count, np.array(10))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mom2.mom2.npy", buf.getvalue() + b"\0" * 64)
        zf.writestr("mom2.count.npy", count.getvalue())


@pytest.mark.parametrize(
    "case,words",
    [
        ("complex", "holds complex128 values"),
        ("not_psd", "not positive semi-definite"),
        ("asymmetric", "not symmetric"),
        ("nan", "non-finite"),
        ("zero_count", "not a positive whole number"),
        ("huge_header", "has shape (4194304, 4194304)"),
        ("not_zip", "not an .npz (zip) file"),
        ("truncated", "mom2_10.npz (layer 0)"),
        ("no_count", "missing mom2.count"),
    ],
)
def test_a_damaged_or_foreign_npz_is_refused_naming_the_file(tiny, tmp_path, case, words):
    d_in = tiny.mlp_out_weight(0).shape[1]
    path = tmp_path / case / NAME
    path.parent.mkdir()
    k = np.random.default_rng(0).standard_normal((50, d_in))
    good = k.T @ k
    arrays = {"mom2.mom2": good, "mom2.count": np.array(50)}
    if case == "complex":
        arrays["mom2.mom2"] = good.astype(np.complex128)
    elif case == "not_psd":
        arrays["mom2.mom2"] = good - 2 * np.abs(good).max() * np.eye(d_in)
    elif case == "asymmetric":
        arrays["mom2.mom2"] = good + np.triu(np.ones((d_in, d_in)), 1) * np.abs(good).max()
    elif case == "nan":
        arrays["mom2.mom2"] = np.where(np.eye(d_in) > 0, np.nan, good)
    elif case == "zero_count":
        arrays["mom2.count"] = np.array(0)
    elif case == "no_count":
        del arrays["mom2.count"]
    if case == "huge_header":
        _huge_header_npz(path, d_in)
    elif case == "not_zip":
        path.write_bytes(b"this is not a zip file at all")
    else:
        np.savez(path, **arrays)
        if case == "truncated":
            path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError) as e:
        import_easyedit_stats(tiny, path)
    assert NAME in str(e.value) and words in str(e.value), str(e.value)
    assert len(str(e.value)) < 400


def _patched_npz(path, d_in: int, how: str) -> None:
    """A good mom2 .npz, then damaged where zipfile itself raises: a deflate stream that is not one
    (zlib.error), a member marked encrypted (RuntimeError), an unknown compression method
    (NotImplementedError)."""
    import io
    import struct

    buf = io.BytesIO()
    k = np.random.default_rng(0).standard_normal((20, d_in))
    np.savez_compressed(buf, **{"mom2.mom2": k.T @ k, "mom2.count": np.array(20)})
    data = bytearray(buf.getvalue())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    if how == "deflate":
        name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
        start = local + 30 + name_len + extra_len
        data[start : start + 8] = b"\xff" * 8  # BTYPE 11: no deflate block
    elif how == "encrypted":
        data[local + 6] |= 1
        data[central + 8] |= 1
    elif how == "method":
        struct.pack_into("<H", data, local + 8, 99)
        struct.pack_into("<H", data, central + 10, 99)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["deflate", "encrypted", "method"])
def test_an_npz_zipfile_cannot_unpack_is_refused_naming_the_file(tmp_path, how):
    from editlab.model.stats_import import read_mom2

    path = tmp_path / NAME
    _patched_npz(path, 8, how)
    with pytest.raises(ValueError, match=r"mom2_10\.npz \(layer 0\): unreadable") as e:
        read_mom2(path, 8, 0)
    assert len(str(e.value)) < 400
