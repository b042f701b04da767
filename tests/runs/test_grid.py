"""Benchmark grids: expansion into cells and their identity, the driver (store, resume, retries), the
CLI, and the same 2×2 grid (ROME and MEMIT × two shards of CounterFact, one fact each) run
in-process and on a real local Ray with two one-thread workers."""

import json
from dataclasses import replace

import pytest
import yaml

from editlab.cli import main
from editlab.runs.bench import load_result, past_runs
from editlab.runs.grid import Cell, Experiment, GridSpec, format_table, shard, stored_cells
from editlab.runs.grid_run import run_grid
from editlab.runs.store import RunStore
from tests.conftest import COUNTERFACT, TEST_MOM2_TOKENS, WIKITEXT, need_shared

MODEL = "smollm2-135m-instruct"


# Small statistics and 8 optimisation steps of v* (25 by default): the edits still take (ES 1.0)
# and a cell costs ~12 s instead of ~16 s on the shared 2-core machine.
TEST_HPARAMS = {"mom2_n_tokens": TEST_MOM2_TOKENS, "v_num_grad_steps": 8}


def grid_dict(**changes) -> dict:
    """The tests' 2×2 grid: two methods × two one-fact shards of CounterFact, no negated edits."""
    d = {
        "name": "test",
        "models": [MODEL],
        "methods": ["rome", "memit"],
        "datasets": [{"path": str(COUNTERFACT), "n": 2, "seed": 0, "shards": 2}],
        "protocols": [{"mode": "independent", "negative_edits": False, "generation_tokens": 4}],
        "hparams": {"rome": dict(TEST_HPARAMS), "memit": dict(TEST_HPARAMS)},
        "corpus": str(WIKITEXT),
    }
    d.update(changes)
    return d


@pytest.fixture(scope="module")
def spec() -> GridSpec:
    need_shared(COUNTERFACT)
    need_shared(WIKITEXT)
    return GridSpec.from_dict(grid_dict())


# ---- expansion and identity (no model) -----------------------------------------------------------------
def test_a_grid_expands_into_every_combination_models_outermost(spec):
    g = GridSpec.from_dict(
        grid_dict(
            models=[MODEL, {"name": "Qwen/Qwen2.5-7B-Instruct", "dtype": "bfloat16", "num_gpus": 1}],
            protocols=[{"negative_edits": False}, {"mode": "sequential", "batch_size": 2, "evaluate": "at_end"}],
            variants=[{"name": "default"}, {"name": "neg1", "hparams": {"rome": {"negation_weight": 1.0}}}],
        )
    )
    cells = g.cells()
    # 2 models × 2 shards × 2 protocols × (2 methods + the rome-only variant)
    assert len(cells) == 2 * 2 * 2 * 3 == len({c.key for c in cells})
    assert [c.model.name for c in cells[:12]] == [MODEL] * 12
    neg = [c for c in cells if c.variant == "neg1"]
    assert {c.method for c in neg} == {"rome"} and all(c.hparams["negation_weight"] == 1.0 for c in neg)
    assert all(c.hparams["v_num_grad_steps"] == 8 for c in neg)  # the grid's hparams under the variant's
    assert cells[0].label == f"{MODEL} rome counterfact-edit.json [1/2] independent/1 -neg default"
    assert cells[-1].model.num_gpus == 1 and cells[-1].protocol.label == "sequential/2/at_end"


def test_a_cells_key_is_stable_and_names_everything_that_determines_its_results(spec, tmp_path, monkeypatch):
    cells = spec.cells()
    assert [c.key for c in cells] == [c.key for c in GridSpec.from_dict(grid_dict()).cells()]
    c = cells[0]
    assert len(c.key) == 20 and int(c.key, 16) >= 0
    # Placement, labels and the order keys are written in do not change what a cell computes ...
    same = [
        replace(c, model=replace(c.model, num_cpus=8, num_gpus=1)),
        replace(c, variant="renamed"),
        Cell(c.model, c.method, c.dataset, c.protocol, c.variant, tuple(reversed(c.hparam_items)), c.corpus),
    ]
    assert {x.key for x in same} == {c.key}
    # ... every input does.
    different = [
        replace(c, method="memit"),
        replace(c, dataset=replace(c.dataset, shard=1)),
        replace(c, dataset=replace(c.dataset, seed=1)),
        replace(c, protocol=replace(c.protocol, batch_size=2)),
        replace(c, model=replace(c.model, dtype="bfloat16")),
        replace(c, hparam_items=(("mom2_n_tokens", 1),)),
        replace(c, corpus=None),
    ]
    assert len({x.key for x in different} | {c.key}) == len(different) + 1
    # Relative paths in a grid file are read from the file's folder, so the key does not depend on the cwd.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cf.json").write_text(COUNTERFACT.read_text())
    (tmp_path / "g.yaml").write_text(
        yaml.safe_dump(grid_dict(datasets=[{"path": "data/cf.json", "n": 2, "shards": 2}]))
    )
    monkeypatch.chdir(tmp_path.parent)
    a = GridSpec.from_yaml(tmp_path / "g.yaml").cells()
    monkeypatch.chdir("/")
    assert [x.key for x in GridSpec.from_yaml(tmp_path / "g.yaml").cells()] == [x.key for x in a]
    assert a[0].dataset.path == str((tmp_path / "data" / "cf.json").resolve())


def test_shards_are_contiguous_near_equal_and_cover_the_subset(spec):
    from editlab.facts.datasets import load_dataset

    ds = load_dataset(COUNTERFACT, n=7, seed=3)
    pieces = [shard(ds, i, 3) for i in range(3)]
    assert [len(p) for p in pieces] == [2, 2, 3]
    assert sum((p.records for p in pieces), ()) == ds.records
    cells = GridSpec.from_dict(
        grid_dict(datasets=[{"path": str(COUNTERFACT), "n": 7, "seed": 3, "shard_size": 3}])
    ).cells()
    assert sorted({(c.dataset.shard, c.dataset.shards) for c in cells}) == [(0, 3), (1, 3), (2, 3)]
    assert [f.subject for f in cells[0].dataset.load()] == [f.subject for f in pieces[0]]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"methods": ["rome", "nosuch"]}, r"unknown editing method 'nosuch'; available: .*rome"),
        ({"datasets": [{"path": "missing.json"}]}, r"no such file"),
        ({"datasets": [{"path": str(COUNTERFACT), "n": 2, "shards": 3}]}, r"3 shards asked of 2 facts"),
        ({"datasets": [{"path": str(COUNTERFACT), "shards": 2, "shard_size": 5}]}, r"shards or shard_size, not both"),
        ({"protocols": [{"mode": "parallel"}]}, r"protocol mode 'parallel'"),
        ({"variants": [{"name": "a", "hparams": {"pmet": {"x": 1}}}]}, r"'pmet' is not among the grid's methods"),
        ({"modles": [MODEL]}, r"the grid: unknown key 'modles'"),
        ({"models": [{"name": MODEL, "num_cpus": 0}]}, r"needs some CPUs or GPUs"),
    ],
)
def test_a_bad_grid_is_refused_with_what_is_wrong(changes, message):
    need_shared(COUNTERFACT)
    with pytest.raises(ValueError, match=message):
        GridSpec.from_dict(grid_dict(**changes)).cells()


@pytest.fixture
def tiny_grid(tmp_path):
    """A grid of one method on a three-fact file, and ``with_`` to change it."""
    facts = [{"subject": s, "prompt": f"{s} is in", "target_new": "Paris", "target_true": "Rome"} for s in "ABC"]
    (tmp_path / "facts.json").write_text(json.dumps(facts))
    return lambda **changes: {"methods": ["rome"], "datasets": [str(tmp_path / "facts.json")], **changes}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"resources": True}, r"resources: expected a mapping"),  # was a TypeError
        ({"resources": "ab"}, r"resources: expected a mapping"),  # was dict()'s own ValueError
        (
            {"corpus": "~nobody-at-all/c.txt"},
            r"the path '~nobody-at-all/c.txt' in the grid cannot be used",
        ),  # RuntimeError
        ({"datasets": ["a" * 300]}, r"no such file"),  # OSError: file name too long
        ({"datasets": ["\ud800"]}, r"the path '\\ud800' in the grid cannot be used"),  # UnicodeEncodeError
        ({"datasets": [{"path": "facts.json", "format": [1]}]}, r"format \[1\] is not one of"),  # TypeError in cells()
        ({"models": [{"name": "m", "num_cpus": [1]}]}, r"num_cpus must be a number >= 0, got \[1\]"),  # TypeError
        ({"models": [{"name": "m", "num_gpus": float("nan")}]}, r"num_gpus must be a number >= 0, got nan"),  # accepted
        ({"models": [{"name": "m", "revision": {"a": 1}}]}, r"revision should be a string"),
        ({"models": [["x" * 5000]]}, r"a model is a name or a mapping with a name, got \['xxx"),  # quoted whole
        ({"variants": [{"name": ["x" * 5000]}]}, r"a variant is a mapping with a name"),
        ({"methods": ["rome"] + ["x" * 5000] * 50}, r"unknown editing methods 'xxx"),
        ({"protocols": [{"mode": "x" * 5000}]}, r"protocol mode 'xxx"),
        ({"x" * 5000: 1}, r"the grid: unknown key 'xxx"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_a_grid_the_checks_did_not_foresee_is_refused_in_a_short_message(tiny_grid, tmp_path, changes, message):
    with pytest.raises(ValueError, match=message) as e:
        GridSpec.from_dict(tiny_grid(**changes), base_dir=tmp_path).cells()
    assert len(str(e.value)) <= 2000


def test_a_grid_of_one_model_by_name_and_hparams_keyed_alike_expand(tiny_grid, tmp_path):
    spec = GridSpec.from_dict(
        tiny_grid(models="smollm2-135m-instruct", hparams={"rome": {1: [1], "1": "a"}}), base_dir=tmp_path
    )
    assert [m.name for m in spec.models] == ["smollm2-135m-instruct"]  # not one model per character
    [cell] = spec.cells()  # the overrides' keys 1 and "1" no longer make sorting compare [1] with "a"
    assert cell.hparams == {"1": "a"}


def test_hyperparameters_may_come_from_an_easyedit_file(tmp_path):
    need_shared(COUNTERFACT)
    (tmp_path / "rome.yaml").write_text("layers: [4]\nmom2_n_samples: 100\n")
    g = GridSpec.from_dict(grid_dict(hparams={"rome": "rome.yaml"}), base_dir=tmp_path)
    rome = [c for c in g.cells() if c.method == "rome"]
    assert rome[0].hparams == {"layers": [4], "mom2_n_samples": 100}  # carried by the cell: workers need no file


# ---- the driver, with a scripted engine (no model) ------------------------------------------------------
class Scripted(Experiment):
    """Results without a model. ``failures[method]``: how many first attempts of each of that method's
    cells raise."""

    def __init__(self, failures=None, unloadable=()):
        self.failures, self.unloadable, self.ran = dict(failures or {}), set(unloadable), []

    def load(self, model):
        if model.name in self.unloadable:
            raise OSError(f"{model.name}: no such model")
        return model.name

    def run(self, resident, cell):
        self.ran.append(cell.key)
        if self.ran.count(cell.key) <= self.failures.get(cell.method, 0):
            raise RuntimeError(f"{cell.method} ran out of memory")
        metrics = {"method": cell.method, "ES": 1.0, "PS": 0.5, "NS": 0.25, "PN": 0.75, "RE": 0.25}
        return {
            "kind": "bench",
            "config": {"model": resident, "method": cell.method, "shard": cell.dataset.shard},
            "checkpoints": [
                {
                    "step": 0,
                    "metrics": metrics,
                    "samples": [{"scores": metrics, "edit_seconds": 1.0}],
                    "timings": {"seconds_per_edit": 1.0},
                }
            ],
            "headline": {k: metrics[k] for k in ("ES", "PS", "NS", "PN", "RE")},
            "seconds": 0.01,
        }


def test_a_failed_cell_is_retried_once_the_rest_go_on_and_a_rerun_skips_finished_cells(spec, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    seen = []
    engine = Scripted(failures={"rome": 1, "memit": 99})  # each rome cell fails once, memit always
    result = run_grid(spec, store, experiment=engine, progress=lambda states, s: seen.append((s.index, s.status)))
    by = {s.cell.method: [] for s in result.states}
    for s in result.states:
        by[s.cell.method].append(s)
    assert [(s.status, s.attempts) for s in by["rome"]] == [("done", 2), ("done", 2)]
    assert by["rome"][0].error == "RuntimeError: rome ran out of memory"  # the first attempt's error is kept
    assert [(s.status, s.attempts, s.errors) for s in by["memit"]] == [
        ("failed", 2, ["RuntimeError: memit ran out of memory"] * 2)
    ] * 2
    assert not result.ok and len(result.failed) == 2
    # Retries go after the other cells: the first cell's second try comes after every first try.
    starts = [i for i, st in seen if st == "running"]
    assert starts[:4] == [0, 1, 2, 3] and sorted(starts[4:]) == [0, 1, 2, 3]
    assert seen[:3] == [(0, "running"), (0, "queued"), (1, "running")]
    table = format_table(result.states)
    assert "2 done, 2 failed of 4 cells" in table and "memit ran out of memory" in table
    assert set(stored_cells(store)) == {s.cell.key for s in by["rome"]}

    again = Scripted()
    second = run_grid(spec, store, experiment=again)
    assert second.ok
    assert [s.stored for s in second.states] == [s.cell.method == "rome" for s in second.states]
    assert sorted(again.ran) == sorted(s.cell.key for s in by["memit"])  # only the failed cells ran again
    assert {s.run_id for s in second.states if s.stored} == {s.run_id for s in by["rome"]}
    assert [s.headline["ES"] for s in second.states] == [1.0] * 4  # stored cells show their figures too
    assert len(store.runs("bench")) == 4


def test_a_model_that_cannot_be_loaded_fails_its_cells_with_the_reason(spec, tmp_path):
    g = GridSpec.from_dict(grid_dict(models=["no/such-model", MODEL]))
    result = run_grid(g, tmp_path / "runs.sqlite", experiment=Scripted(unloadable={"no/such-model"}))
    bad = [s for s in result.states if s.cell.model.name == "no/such-model"]
    assert {s.status for s in bad} == {"failed"}
    assert all(s.error == "loading no/such-model failed: OSError: no/such-model: no such model" for s in bad)
    assert all(s.status == "done" for s in result.states if s.cell.model.name == MODEL)


def test_cli_dry_run_lists_the_cells_and_refuses_ray_options_in_process(spec, tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid_dict()))
    assert main(["grid", str(path), "--store", str(tmp_path / "runs.sqlite"), "--dry-run"]) == 0
    out = capsys.readouterr()
    assert out.out.count("to run") == 4 and "4 cells" in out.err
    assert main(["grid", str(path), "--in-process", "--workers", "2"]) == 2
    assert "--address and --workers are for Ray" in capsys.readouterr().err
    path.write_text("methods: [rome\n")
    assert main(["grid", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


# ---- the real model: in-process, then on Ray --------------------------------------------------------------
def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k != "edit_seconds"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def stored_results(store) -> dict:
    """{cell key: [(step, metrics, per-fact results without timings), ...]} of the finished cells."""
    return {
        key: [(c.step, c.metrics, _without_timings(c.samples)) for c in store.checkpoints(run_id)]
        for key, run_id in stored_cells(store).items()
    }


def same_results(a, b, rel: float = 1e-3) -> bool:
    """Equal structure, equal texts, flags and counts; probabilities and scores equal up to float
    rounding (a Ray worker runs one thread, the test process may run two: summation order differs,
    so the last digits do too — the greedy texts and every flag must still agree). Whole numbers
    too, at the same relative tolerance: the rank of a very unlikely token (30,250 vs 30,249) moves
    with near-ties; small counts, steps and indices stay exact."""
    number = (int, float)
    if isinstance(a, number) and isinstance(b, number) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == pytest.approx(b, rel=rel, abs=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_results(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_results(x, y, rel) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def in_process(handle, spec, tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("grid") / "runs.sqlite")
    return store, run_grid(spec, store, residents={MODEL: handle})


@pytest.mark.slow
def test_in_process_grid_stores_one_benchmark_run_per_cell(in_process, spec, tmp_path, capsys):
    store, result = in_process
    assert result.ok and [s.status for s in result.states] == ["done"] * 4
    for s in result.states:
        run = store.run(s.run_id)
        assert run.config["grid"]["cell"] == s.cell.key and run.config["n"] == 1
        bench = load_result(store, s.run_id)  # what the Benchmark page shows
        assert [r.method for r in bench.rows] == ["unedited", s.cell.method]
        assert bench.row(s.cell.method).metrics["ES"] == s.headline["ES"] == 1.0  # the edit took
    assert {r.id for r in past_runs(store)} == {s.run_id for s in result.states}
    merged = result.merged(store)
    assert (
        sorted(merged["method"]) == ["memit", "rome"]
        and list(merged["n"]) == [2, 2]
        and list(merged["shards"]) == [2, 2]
    )
    # The two shards hold different facts: their stored configurations differ only there.
    a, b = (store.run(s.run_id).config for s in result.states if s.cell.method == "rome")
    assert a["dataset_digest"] != b["dataset_digest"] and a["grid"]["shard"] == 0 and b["grid"]["shard"] == 1
    # The CLI sees them as stored.
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid_dict()))
    assert main(["grid", str(path), "--store", str(store.path), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("stored run #") == 4


@pytest.mark.slow
def test_ray_grid_matches_in_process_retries_a_killed_worker_and_resumes(
    in_process, spec, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'editlab[cluster]')")
    base_store, base = in_process
    store = RunStore(tmp_path / "runs.sqlite")
    cells = spec.cells()
    # A fifth cell that cannot run (ROME at layer 99 of a 30-layer model): reported, retried, the rest go on.
    broken = replace(cells[0], variant="broken", hparam_items=(("layer", 99),))
    # The first cell to start kills its worker process once, as an out-of-memory kill would.
    monkeypatch.setenv("EDITLAB_GRID_TEST_KILL_ONCE", str(tmp_path / "killed"))
    result = run_grid([*cells, broken], store, backend="ray", workers=2)

    states = {s.cell.key: s for s in result.states}
    assert (tmp_path / "killed").exists()
    killed = [s for s in result.states if any(e.startswith("worker died") for e in s.errors)]
    assert len(killed) == 1 and killed[0].status == "done" and killed[0].attempts == 2
    bad = states[broken.key]
    assert bad.status == "failed" and bad.attempts == 2 and "layer" in bad.error and "99" in bad.error
    assert [states[c.key].status for c in cells] == ["done"] * 4
    # Same cells, same stored metrics and per-fact results as in-process (timings aside).
    assert same_results(stored_results(store), stored_results(base_store))

    # A second invocation (the CLI, on the grid file) finds every cell stored: nothing runs, no run is added.
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid_dict()))
    runs_before = [r.id for r in store.runs()]
    capsys.readouterr()  # Ray's own messages about the killed worker
    assert main(["grid", str(path), "--store", str(store.path), "--workers", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["stored"] for c in out["cells"]] == [True] * 4 and [r.id for r in store.runs()] == runs_before
    assert [c["ES"] for c in out["cells"]] == [states[c.key].headline["ES"] for c in cells]
    assert out["backend"] == "ray" and [m["n"] for m in out["merged"]] == [2, 2]
