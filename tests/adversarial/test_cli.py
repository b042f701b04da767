"""The CLI's one error boundary: every bad input ends in one ``editlab: error:`` line (or argparse's
usage line), exit code 2, no traceback (unless --debug / EDITLAB_DEBUG=1)."""

import json

import pytest

from editlab.cli import main

FACT = ["--subject", "Rome", "--prompt", "Rome is the capital of", "--target-new", "France"]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "list.yaml").write_text("- v_lr\n- 0.5\n")
    (tmp_path / "bad.yaml").write_text("v_lr: [0.5\n")
    (tmp_path / "tab.yaml").write_text("v_lr:\t0.5\n  kl: 1\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "ok.yaml").write_text("v_lr: 0.5\n")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "big.csv").write_text("subject,prompt,target_new\nRome,\"" + "x" * 200_000 + "\",France\n")
    (tmp_path / "latin.json").write_bytes(
        '[{"subject": "Mün", "prompt": "Mün is", "target_new": "x"}]'.encode("latin-1")
    )
    (tmp_path / "num.json").write_text(
        json.dumps([{"subject": "Rome", "prompt": "Rome is", "target_new": "x", "neighbors": [{"prompt": 5}]}])
    )
    levels = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)
    ]
    (tmp_path / "bomb.yaml").write_text("\n".join(levels) + "\n")  # 9**9 values if expanded
    (tmp_path / "twice.yaml").write_text("v_lr: 0.5\nkl_factor: 0.1\nv_lr: 5\n")
    (tmp_path / "report.html").write_text("not a folder")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfsubject,prompt,target_new\nRome,Rome is,NaN\n")
    cfg = tmp_path / "noweights"
    cfg.mkdir()
    (cfg / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_attention_heads": 4,
                "num_hidden_layers": 2,
                "vocab_size": 100,
            }
        )
    )
    return tmp_path


CASES = [
    (["trace", "--prompt", "Rome is", "--subject", "Rome", "--noise", "-1"], "--noise"),
    (["trace", "--prompt", "Rome is", "--subject", "Rome", "--noise", "nan"], "--noise"),
    (["trace", "--prompt", "Rome is", "--subject", "Rome", "--samples", "0"], "--samples"),
    (["trace", "--prompt", "Rome is", "--subject", "Rome", "--window", "-2"], "--window"),
    (["trace", "--prompt", "Rome is", "--subject", "Rome", "--noise-multiplier", "0"], "--noise-multiplier"),
    (["trace", "--prompt", "Rome is", "--subject", "Rome", "--tokens", "a,b"], "--tokens"),
    (["edit", *FACT, "--negation-weight", "-1"], "--negation-weight"),
    (["edit", *FACT, "--generation-tokens", "0"], "--generation-tokens"),
    (["bench", "--methods", "rome", "--dataset", "x.json", "--n", "-3"], "--n"),
    (["bench", "--methods", "rome", "--dataset", "x.json", "--batch-size", "0"], "--batch-size"),
    (["sweep", "--dataset", "x.json", "--muting-tokens", "0"], "--muting-tokens"),
    (["edit", "--subject", "Rome", "--prompt", "Paris is", "--target-new", "x"], "does not occur"),
    (["edit", *FACT, "--neighbor", "=>Paris"], "Fact.neighbors[1].prompt is empty"),
    (["probe", "--subject", "Rome", "--prompt", "Rome " + "x" * 5000, "--target-new", "x"], "EDITLAB_MAX_PROMPT_CHARS"),
    (["edit", *FACT, "--hparams", "{d}/list.yaml"], "expected a mapping"),
    (["edit", *FACT, "--hparams", "{d}/bad.yaml"], "not valid YAML at line"),
    (["edit", *FACT, "--hparams", "{d}/tab.yaml"], "not valid YAML"),
    (["edit", *FACT, "--hparams", "{d}/adir"], "is a folder"),
    (["edit", *FACT, "--hparams", "{d}/missing.yaml"], "no such file"),
    (["edit", *FACT, "--set", "v_lr=[1"], "--set 'v_lr=[1'"),
    (["edit", *FACT, "--set", "novalue"], "expected KEY=VALUE"),
    (["bench", "--methods", "rome", "--dataset", "{d}/deep.json", "--no-store"], "nested too deeply"),
    (["bench", "--methods", "rome", "--dataset", "{d}/big.csv", "--no-store"], "big.csv: line"),
    (["bench", "--methods", "rome", "--dataset", "{d}/latin.json", "--no-store"], "latin.json: not UTF-8"),
    (["bench", "--methods", "rome", "--dataset", "{d}/num.json", "--no-store"], "neighbors[1]"),
    (["bench", "--methods", "rome", "--dataset", "{d}/adir", "--no-store"], "not a file"),
    (["bench", "--methods", "rome", "--dataset", "{d}/none.json", "--no-store"], "not found"),
    (
        ["bench", "--methods", "rome", "--dataset", "{d}/num.json", "--hparams", "rome={d}/list.yaml"],
        "expected a mapping",
    ),
    (["bench", "--methods", "rome", "--dataset", "{d}/num.json", "--n", "100000"], "EDITLAB_MAX_FACTS"),
    (["bench", "--methods", "rome,nosuch", "--dataset", "{d}/num.json"], "unknown editing method"),
    (["sweep", "--dataset", "{d}/num.json", "--counts", "1,5,100000", "--store", "{d}/s.sqlite"], "EDITLAB_MAX_EDITS"),
    (["sweep", "--dataset", "{d}/num.json", "--hparams", "{d}/bad.yaml"], "not valid YAML"),
    (["sweep", "--dataset", "{d}/num.json", "--ability-config", "{d}/list.yaml"], "ability settings"),
    (["runs", "--store", "{d}/adir"], "is a directory"),
    (["runs", "--store", "{d}/ok.yaml"], "not an SQLite database"),
    (["probe", *FACT, "--model", "{d}/noweights"], "no readable weights"),
    (["probe", *FACT, "--model", "{d}/adir"], "could not load model"),
    (["probe", *FACT, "--model", ""], "model name is empty"),
    (["edit", *FACT, "--hparams", "{d}/bomb.yaml"], "more than 20,000 values"),
    (["edit", *FACT, "--hparams", "{d}/twice.yaml"], "the key 'v_lr' appears twice"),
    (["edit", *FACT, "--set", "layer=" + "[" * 5000], "--set 'layer=[[[["),
    (["edit", *FACT, "--set", "v_lr=0.5", "--set", "v_lr=5"], "--set 'v_lr' is given twice"),
    (["edit", *FACT, "--set", "seed=1e30"], "'seed'"),
    (["edit", *FACT, "--set", "predicate_layer=99999999999999999999"], "'predicate_layer'"),
    (["edit", *FACT, "--generation-tokens", "100000"], "EDITLAB_MAX_GENERATION_TOKENS"),
    (["stats", "--layers", "8-4"], "runs backwards; write 4-8"),
    (["stats", "--layers", "0-99999999999"], "more than 1,000 layers"),
    (["trace", "--prompt", "Rome is", "--subject", "Rome", "--answer", "   "], "the answer to trace is empty"),
    (["trace", "--prompt", "Rome is", "--subject", "Rome", "--answer", "\u200b"], "the answer to trace is empty"),
    (["reproduce", "negation", "--out", "{d}/report.html", "--dataset", "{d}/num.json"], "is a file; give a folder"),
    (["bench", "--methods", "rome", "--dataset", "{d}/num.json", "--export", "{d}/adir"], "is a folder"),
    (["bench", "--methods", "rome", "--dataset", "{d}/num.json", "--export", "{d}/out.xlsx"], "export format 'xlsx'"),
    (["edit", "--subject", "Rome", "--prompt", "Rome is", "--target-new", "\u200b"], "only invisible characters"),
    (["edit", "--subject", "Rome", "--prompt", "Rome is", "--target-new", "x\x1b[31m"], "control character"),
]


@pytest.mark.parametrize("argv,words", CASES, ids=[f"{i}-{c[0][0]}" for i, c in enumerate(CASES)])
def test_bad_input_ends_in_one_clear_line_and_exit_code_2(argv, words, files, capsys, monkeypatch):
    monkeypatch.delenv("EDITLAB_DEBUG", raising=False)
    argv = [a.replace("{d}", str(files)) for a in argv]
    code = run(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    assert words in err, err


def run(argv) -> int:
    """main's exit code; argparse's own refusals (a usage line) exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_debug_shows_the_traceback(files, capsys):
    code = main(["bench", "--methods", "rome", "--dataset", f"{files}/deep.json", "--no-store", "--debug"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" in err and "nested too deeply" in err


def test_an_unforeseen_exception_is_still_one_line(monkeypatch, capsys):
    from editlab.cli import trace as trace_cmd

    def boom(args):
        raise AttributeError("'int' object has no attribute 'strip'")

    monkeypatch.setattr(trace_cmd, "run_trace", boom)
    import editlab.cli as cli

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for action in parser._subparsers._group_actions[0].choices.values():
        if action.prog.endswith("trace"):
            action.set_defaults(handler=boom)
    code = main(["trace", "--prompt", "Rome is", "--subject", "Rome"])
    err = capsys.readouterr().err
    assert code == 2 and "AttributeError" in err and "Traceback" not in err
    assert err.count("\n") == 1
