"""Shared fixtures: the real default model, loaded once per test session, and the shared data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("EDITLAB_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
COUNTERFACT = SHARED / "editing" / "counterfact-edit.json"
WIKITEXT = SHARED / "corpus" / "wikitext-2-test.txt"
# Small statistics for tests: enough tokens for a well-conditioned 1536x1536 C on the default model.
TEST_MOM2_TOKENS = 20_000


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs real edits on the real model (still run in CI)")
    config.addinivalue_line("markers", "browser: drives a real Chromium")


def need_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (set EDITLAB_SHARED_DATA)")
    return path


@pytest.fixture
def shift(monkeypatch):
    """``shift`` (tests/stand_in_method.py), a cheap deterministic stand-in method, registered for one test."""
    from editlab import methods

    from . import stand_in_method

    monkeypatch.setitem(methods.REGISTRY, stand_in_method.NAME, stand_in_method.MODULE)
    return stand_in_method.NAME


@pytest.fixture(scope="session")
def handle():
    """The real SmolLM2-135M-Instruct (embedded default), loaded once."""
    import editlab

    torch.manual_seed(0)
    return editlab.load_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def counterfact_records():
    return json.loads(need_shared(COUNTERFACT).read_text())


def counterfact_fact(record):
    from editlab import Fact, Neighbor

    return Fact(
        subject=record["subject"],
        prompt=record["prompt"],
        target_new=record["target_new"],
        target_true=record["ground_truth"],
        paraphrases=(record["rephrase_prompt"],),
        neighbors=(Neighbor(record["locality_prompt"], record["locality_ground_truth"]),),
        case_id=record["case_id"],
    )


@pytest.fixture(scope="session")
def cf_facts(counterfact_records):
    """The first few CounterFact facts, as editlab Facts."""
    return [counterfact_fact(r) for r in counterfact_records[:8]]


@pytest.fixture(scope="session")
def corpus_path():
    return str(need_shared(WIKITEXT))


def state_hash(model) -> str:
    """Digest of every tensor in the state dict (tied weights once), for bit-for-bit comparisons."""
    from editlab.model.handle import weights_digest

    return weights_digest(sorted(model.state_dict().items()), length=None)


def tiny_model(family: str):
    """A tiny random-weight model of one supported family, built from a config (no download)."""
    from transformers import (
        AutoModelForCausalLM,
        GPT2Config,
        GPTJConfig,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
        Qwen3Config,
    )

    common = dict(vocab_size=49152)  # the real tokenizer's vocabulary, so tiny models share it
    configs = {
        "gpt2": lambda: GPT2Config(n_layer=4, n_embd=32, n_head=4, n_positions=128, **common),
        "gptj": lambda: GPTJConfig(n_layer=4, n_embd=32, n_head=4, n_positions=128, rotary_dim=4, **common),
        "gpt_neox": lambda: GPTNeoXConfig(
            num_hidden_layers=4,
            hidden_size=32,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=128,
            **common,
        ),
        "llama": lambda: LlamaConfig(
            num_hidden_layers=4,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            **common,
        ),
        "mistral": lambda: MistralConfig(
            num_hidden_layers=4,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            **common,
        ),
        "qwen2": lambda: Qwen2Config(
            num_hidden_layers=4,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            **common,
        ),
        "qwen3": lambda: Qwen3Config(
            num_hidden_layers=4,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            head_dim=8,
            **common,
        ),
    }
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(configs[family]()).eval()


def tiny_handle(family: str, tokenizer):
    from editlab.model.handle import ModelHandle

    return ModelHandle(tiny_model(family), tokenizer, name=f"tiny-{family}")


def tiny_session(family: str, handle, tmp_path):
    """An EditSession on a tiny random model of ``family`` (the real model's tokenizer) with a small
    synthetic statistics corpus, offline."""
    from editlab import EditSession

    corpus = tmp_path / "c.txt"
    corpus.write_text(
        "\n\n".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog number {i}." for i in range(60))
    )
    return EditSession(tiny_handle(family, handle.tokenizer), corpus=str(corpus), online=False)


def prompt_failures(session, facts) -> tuple[list[str], list[str]]:
    """(subjects where P(new) > P(true) does not hold on the prompt, one readable line per fact)."""
    from editlab.measure.probes import Probe

    failed, lines = [], []
    for fact in facts:
        [pos] = session.measure_current(fact, [Probe("positive", fact.prompt, max_new_tokens=1)])
        lines.append(f"{fact.subject}: P(new) {pos.p_new:.3f} vs P(true) {pos.p_true:.3f}")
        if not pos.p_new > pos.p_true:
            failed.append(fact.subject)
    return failed, lines


def free_port() -> int:
    """A free localhost port for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server a test started; kill it if it does not exit within 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
