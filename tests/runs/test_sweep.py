"""Sequential-edit sweeps on the real model: every checkpoint lands in the store, and a run killed
midway resumes and finishes with the same results as an uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from editlab.cli import build_parser, main
from editlab.cli.sweep import sweep_config
from editlab.core.errors import Cancelled
from editlab.measure.ability import TASKS
from editlab.runs.store import RunStore
from editlab.runs.sweep import SweepConfig, SweepProgress, cost_line, curves, parse_counts, run_sweep
from tests.conftest import COUNTERFACT, SHARED, TEST_MOM2_TOKENS, WIKITEXT, need_shared

ROOT = Path(__file__).resolve().parents[2]


# One item per ability task with one-shot prompts and short generations: the whole pipeline, cheaply.
TINY_ABILITY = {
    "sizes": {t: 1 for t in TASKS},
    "mmlu_shots": 1,
    "gsm8k_shots": 1,
    "bbh_shots": 1,
    "max_gen_tokens": {"gsm8k": 16, "triviaqa": 8, "bbh": 8},
    "ppl_chars": 300,
}


def cli_args(store: Path, extra=()) -> list[str]:
    """A tiny but complete sweep: ROME, 1 and 2 edits, every ability task, short muting probes."""
    ability = store.parent / "ability.yaml"
    if not ability.exists():
        import yaml

        ability.write_text(yaml.safe_dump(TINY_ABILITY))
    return [
        "sweep",
        "--method",
        "rome",
        "--dataset",
        str(COUNTERFACT),
        "--counts",
        "1,2",
        "--seed",
        "0",
        "--set",
        f"mom2_n_tokens={TEST_MOM2_TOKENS}",
        "--corpus",
        str(WIKITEXT),
        "--offline",
        "--ability-data",
        str(SHARED / "bench"),
        "--ppl-corpus",
        str(WIKITEXT),
        "--ability-config",
        str(ability),
        "--muting-tokens",
        "8",
        "--store",
        str(store),
        *extra,
    ]


def config_from(args_list) -> SweepConfig:
    """The SweepConfig the CLI builds from these arguments (so CLI and library runs match)."""
    return sweep_config(build_parser().parse_args(args_list))


@pytest.fixture(scope="module")
def finished(handle, tmp_path_factory):
    need_shared(COUNTERFACT), need_shared(SHARED / "bench"), need_shared(WIKITEXT)
    store_path = tmp_path_factory.mktemp("sweep") / "runs.sqlite"
    events: list[SweepProgress] = []
    result = run_sweep(handle, config_from(cli_args(store_path)), RunStore(store_path), progress=events.append)
    return store_path, result, events


def test_parse_counts():
    assert parse_counts("10, 1,2,2,5") == (1, 2, 5, 10)
    for bad in ("", "0,1", "a,b", "-1"):
        with pytest.raises(ValueError):
            parse_counts(bad)


@pytest.mark.slow
def test_sweep_records_every_checkpoint(finished):
    store_path, result, events = finished
    store = RunStore(store_path)
    run = store.run(result.run_id)
    assert run.status == "done" and run.config["method"] == "rome" and run.config["counts"] == [1, 2]
    assert run.config["hparams"]["mom2_n_tokens"] == TEST_MOM2_TOKENS and run.config["seed"] == 0
    cps = store.checkpoints(result.run_id)
    assert [c.step for c in cps] == [0, 1, 2]
    for c in cps:
        assert set(c.metrics["ability"]) == set(TASKS)
        assert all(v is not None for v in c.metrics["ability"].values())
        assert c.metrics["quality"]["all"]["n"] == (2 if c.step in (0, 2) else 1)
        assert len(c.samples["muting"]) == 12 and set(c.samples["ability"]) == set(TASKS)
        assert {"quality_s", "ability_s", "muting_s"} <= set(c.timings)
    unedited, one, two = (c.metrics for c in cps)
    # the unedited model speaks and has a finite perplexity
    assert unedited["muting"]["empty_rate"] == 0.0
    assert 1.0 < unedited["ability"]["perplexity"] < 1e4
    # ROME writes each fact; the latest batch alone at step 2 is the second fact
    assert one["quality"]["latest"]["ES"] == 1.0 and two["quality"]["latest"]["ES"] == 1.0
    assert two["quality"]["all"]["ES"] > unedited["quality"]["all"]["ES"]
    assert one["weights_digest"] != two["weights_digest"]
    assert [s["target_new"] for s in cps[2].samples["edits"]] == [run_fact_target(1)]
    # progress: facts edited went 0 -> 2 and a time-left estimate appeared once something was measured
    assert events[0].facts_done == 0 and events[-1].facts_done == 2
    assert any(e.eta_s is not None for e in events)
    df = curves(store, result.run_id)
    assert list(df["edits"]) == [0, 1, 2] and "quality_all.RE" in df and "muting.ngram_entropy" in df
    # the cost of each checkpoint is what its timings say: editing since the last one plus measuring
    for c, (_, row) in zip(cps, df.iterrows()):
        t = c.timings
        assert row["seconds.edit"] == pytest.approx(t.get("edit_s", 0.0))
        assert row["seconds.measure"] == pytest.approx(t["quality_s"] + t["ability_s"] + t["muting_s"])
        assert row["seconds"] == pytest.approx(row["seconds.edit"] + row["seconds.measure"])
    assert df["seconds.edit"].iloc[0] < 0.01 and (df["seconds.edit"].iloc[1:] > 0.1).all()  # step 0 edits nothing


def run_fact_target(i: int) -> str:
    import json

    return json.loads(COUNTERFACT.read_text())[i]["target_new"]


@pytest.mark.slow
def test_rerunning_a_finished_sweep_from_the_cli_reads_the_store_and_exports(finished, tmp_path, capsys):
    store_path, result, _ = finished
    out_csv = tmp_path / "curves.csv"
    assert main(cli_args(store_path, ["--export", str(out_csv)])) == 0
    printed = capsys.readouterr().out
    assert f"run {result.run_id}:" in printed and "entropy" in printed
    cost = next(line for line in printed.splitlines() if line.startswith("cost: "))
    assert "s in all" in cost and "per edit" in cost and "2: " in cost
    assert list(pd.read_csv(out_csv)["step"]) == [0, 1, 2]
    assert len(RunStore(store_path).runs("sweep")) == 1  # resumed the finished run, no new one
    assert main(["runs", "--store", str(store_path)]) == 0
    assert f"#{result.run_id}" in capsys.readouterr().out


def _numbers(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_numbers(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_matches_an_uninterrupted_one(finished, handle, tmp_path):
    store_a, result_a, _ = finished
    store_b = tmp_path / "runs.sqlite"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "editlab", *cli_args(store_b)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 1800
        while True:  # kill it as soon as its first edit's checkpoint is in the store
            if child.poll() is not None:
                pytest.fail(f"the sweep ended before it could be killed: {child.stderr.read().decode()[-2000:]}")
            if store_b.exists():
                runs = RunStore(store_b).runs("sweep")
                if runs and runs[0].last_step == 1:
                    break
            assert time.time() < deadline
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    store = RunStore(store_b)
    (run,) = store.runs("sweep")
    assert run.status == "running"  # the killed process could not say anything
    assert [c.step for c in store.checkpoints(run.id)] == [0, 1]

    result = run_sweep(handle, config_from(cli_args(store_b)), store)
    assert result.run_id == run.id and result.resumed_from == 1 and result.replay_exact is True
    assert store.run(run.id).status == "done"
    resumed, uninterrupted = store.checkpoints(run.id), RunStore(store_a).checkpoints(result_a.run_id)
    assert [c.step for c in resumed] == [c.step for c in uninterrupted] == [0, 1, 2]
    for r, u in zip(resumed, uninterrupted):
        rn, un = _numbers(r.metrics), _numbers(u.metrics)
        assert rn.keys() == un.keys()
        for k in rn:
            if isinstance(un[k], float):
                assert math.isclose(rn[k], un[k], rel_tol=1e-6, abs_tol=1e-9), (r.step, k, rn[k], un[k])
            else:
                assert rn[k] == un[k], (r.step, k)
        assert r.samples["muting"] == u.samples["muting"] and r.samples["edits"] == u.samples["edits"]


@pytest.mark.slow
def test_cancel_marks_the_run_and_keeps_what_was_measured(handle, tmp_path):
    need_shared(COUNTERFACT), need_shared(SHARED / "bench"), need_shared(WIKITEXT)
    store = RunStore(tmp_path / "runs.sqlite")
    cancel = threading.Event()

    def progress(p: SweepProgress):
        if p.stage.startswith("ability"):  # cancel while the unedited reference is being scored
            cancel.set()

    with pytest.raises(Cancelled):
        run_sweep(handle, config_from(cli_args(store.path)), store, progress=progress, cancel=cancel)
    (run,) = store.runs("sweep")
    assert run.status == "cancelled" and run.n_checkpoints == 0


@pytest.mark.slow
def test_an_ike_sweep_scores_the_abilities_and_muting_of_the_model_with_its_context(handle, cf_facts, tmp_path):
    """IKE's edit is a context, not weights: the sweep's ability and muting checks must see it as the
    probes do (EditSession.edited). Two TruthfulQA-style items, one about the edited fact (the
    demonstrations and the new fact line change its answer) and one about another fact."""
    import csv

    from editlab.measure.ability import AbilityConfig
    from editlab.measure.muting import MutingProbe

    edited, other = cf_facts[0], cf_facts[1]  # Danielle Darrieux: French -> English; Edwin of Northumbria
    items = tmp_path / "mc1.csv"
    with open(items, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Question", "Best Answer", "Incorrect Answers"])
        for fact in (edited, other):  # the "best" answer is the new target
            w.writerow(
                [f"{fact.prompt} what?", f"{fact.prompt} {fact.target_new}.", f"{fact.prompt} {fact.target_true}."]
            )
    tqa = tmp_path / "tqa.jsonl"
    tqa.write_text(json.dumps({"question": f"{edited.prompt} what?", "answers": [edited.target_new]}) + "\n")
    ability = AbilityConfig(
        sizes={"truthfulqa": 2, "triviaqa": 1, "perplexity": 1},
        online=False,
        sources={"truthfulqa": str(items), "triviaqa": str(tqa), "perplexity": str(need_shared(WIKITEXT))},
        max_gen_tokens={"triviaqa": 4},
        ppl_chars=200,
    )
    config = SweepConfig(
        method="ike",
        dataset="one fact",
        counts=(1,),
        ability=ability,
        muting=MutingProbe(completions=("The capital of France is",), questions=(), max_new_tokens=4),
    )
    store = RunStore(tmp_path / "runs.sqlite")
    result = run_sweep(handle, config, store, facts=[edited])
    unedited, one = store.checkpoints(result.run_id)
    # The unedited model prefers the true answers; with IKE's context the edited fact's item flips.
    assert unedited.metrics["ability"]["truthfulqa"] == 0.0
    assert one.metrics["ability"]["truthfulqa"] == 0.5
    answers = {s["input"]: s["output"] for s in one.samples["ability"]["truthfulqa"]}
    assert answers[f"{edited.prompt} what?"] == f"{edited.prompt} {edited.target_new}."
    assert answers[f"{other.prompt} what?"] == f"{other.prompt} {other.target_true}."
    # Generation, perplexity and muting ran with the context in front too.
    assert one.samples["ability"]["triviaqa"][0]["output"] != unedited.samples["ability"]["triviaqa"][0]["output"]
    assert one.metrics["ability"]["perplexity"] != unedited.metrics["ability"]["perplexity"]
    assert one.samples["muting"][0]["text"] != unedited.samples["muting"][0]["text"]
    assert one.metrics["quality"]["latest"]["ES"] == 1.0  # and the probes, as before


def test_the_cost_line_sums_the_checkpoints():
    df = pd.DataFrame({"edits": [0, 10, 100], "seconds.edit": [0.0, 20.0, 180.0], "seconds.measure": [5.0, 5.0, 10.0]})
    df["seconds"] = df["seconds.edit"] + df["seconds.measure"]
    line = cost_line(df)
    assert line.startswith("cost: 220 s in all (200 s editing, 2.0 s per edit, 20 s measuring)")
    assert "0: 5 s, 10: 25 s, 100: 190 s" in line
    assert cost_line(df.iloc[:0]) == "cost: no checkpoint yet"
