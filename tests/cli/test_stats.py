import json

import pytest

from editlab.cli import main
from editlab.cli.stats import parse_layers

from ..conftest import tiny_model


def test_layers_are_parsed_as_ranges_and_lists():
    assert parse_layers("5") == [5]
    assert parse_layers("4-8") == [4, 5, 6, 7, 8]
    assert parse_layers("8,4, 5-6") == [4, 5, 6, 8]
    with pytest.raises(ValueError, match="give layers like"):
        parse_layers("four")


def test_stats_command_computes_and_writes_a_bundle(tmp_path, monkeypatch, capsys, handle):
    """`editlab stats ... --bundle` on a small model folder: the statistics and a bundle whose
    metadata names the corpus, token count and the command that made it."""
    from safetensors import safe_open

    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(folder)
    handle.tokenizer.save_pretrained(folder)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog." for i in range(40)))
    out = tmp_path / "bundle.safetensors"
    code = main(
        [
            "stats",
            "--model",
            str(folder),
            "--layers",
            "1-2",
            "--corpus",
            str(corpus),
            "--tokens",
            "200",
            "--bundle",
            str(out),
            "--corpus-name",
            "unit text",
            "--json",
        ]
    )
    assert code == 0
    got = json.loads(capsys.readouterr().out)
    assert got["layers"] == [1, 2] and got["n_tokens"] == 200 and got["count"] >= 200  # whole chunks
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == {"L1", "L2"}
    assert (
        meta["corpus_name"] == "unit text" and meta["n_tokens"] == "200" and meta["fingerprint"] == got["fingerprint"]
    )
    assert meta["command"].startswith("editlab stats") and "--bundle" in meta["command"]


def test_stats_command_refuses_a_layer_the_model_lacks(tmp_path, monkeypatch, capsys, handle):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(folder)
    handle.tokenizer.save_pretrained(folder)
    code = main(["stats", "--model", str(folder), "--layers", "9", "--tokens", "10", "--offline"])
    assert code == 2 and "layer" in capsys.readouterr().err
