"""editlab.runs.grid.GridSpec.from_yaml on any grid file: mappings of the grid's keys (models, methods,
datasets, protocols, variants, hparams, corpus, online, resources) with plausible and random values,
hyperparameter files that exist or not, and hostile YAML. Read or refused with a bounded
ValueError; a grid read expands into cells (or is refused so) without any other error."""

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from editlab import methods
from editlab.runs.grid import GridSpec

from .strategies import accepted_or_refused, examples, ints, keys, scalars, settings, values, words, yaml_text

FACTS = [
    {"subject": s, "prompt": f"{s} is located in", "target_new": "Paris", "target_true": "Rome"}
    for s in ("Rome", "Milan", "Turin")
]
FILES = ["facts.json", "hp.yaml", "bad.yaml", "missing.json", "list.yaml", "."]

anything = values(max_leaves=8)


def mostly(*good):
    """Plausible values three times in four, anything at all otherwise."""
    return st.one_of(st.one_of(*good), st.one_of(*good), st.one_of(*good), anything)


name = mostly(words, st.sampled_from(["smollm2-135m-instruct", " ", "", "~nobody-at-all/x", "a" * 300]))
number = mostly(st.sampled_from([0, 1, 2, 3, 0.5, -1, "2", "many", 10**30, float("nan"), float("inf")]), ints)
path = mostly(st.sampled_from(FILES), words, st.sampled_from(["~nobody-at-all/facts.json", "a" * 300, "x\x00y"]))
method_key = st.one_of(
    st.sampled_from(methods.available()),
    st.sampled_from(methods.available()),
    st.sampled_from(["ROME", " memit ", "nope", ""]),
    keys,
)
method = mostly(method_key)


def sub(fields: dict):
    """A mapping with some of ``fields`` (each a strategy), once in a while a stray key too."""
    return st.one_of(
        st.fixed_dictionaries({}, optional=fields), st.fixed_dictionaries({}, optional={**fields, "stray": anything})
    )


def listed(strategy):
    return mostly(st.lists(strategy, min_size=1, max_size=3), strategy)


model = mostly(
    name,
    sub(
        {
            "name": name,
            "revision": mostly(words, st.none()),
            "dtype": mostly(st.sampled_from(["float32", "bfloat16"])),
            "quantization": anything,
            "num_cpus": number,
            "num_gpus": number,
        }
    ),
)
dataset = mostly(
    path,
    sub(
        {
            "path": path,
            "format": mostly(st.sampled_from(["facts", "zsre", "x"])),
            "n": number,
            "seed": number,
            "skip_invalid": anything,
            "shards": number,
            "shard_size": number,
        }
    ),
)
protocol = mostly(
    sub(
        {
            "mode": mostly(st.sampled_from(["independent", "sequential", "x"])),
            "batch_size": number,
            "evaluate": mostly(st.sampled_from(["after_each", "at_end"])),
            "negative_edits": anything,
            "generation_tokens": number,
        }
    )
)
overrides = mostly(
    st.dictionaries(st.one_of(st.sampled_from(["v_lr", "layers", "layer"]), keys), scalars, max_size=3),
    st.sampled_from(["hp.yaml", "bad.yaml", "list.yaml", "missing.yaml"]),
)
hparams = mostly(st.dictionaries(method_key, overrides, max_size=3))
variant = mostly(name, sub({"name": name, "hparams": hparams, "methods": listed(method)}))
grid = sub(
    {
        "name": anything,
        "models": listed(model),
        "methods": listed(method),
        "datasets": listed(dataset),
        "protocols": listed(protocol),
        "variants": listed(variant),
        "hparams": hparams,
        "corpus": mostly(path, st.none()),
        "online": anything,
        "resources": mostly(sub({"num_cpus": number, "num_gpus": number})),
    }
)


@st.composite
def grid_text(draw) -> str:
    if draw(st.sampled_from([False] * 5 + [True])):
        return draw(yaml_text())
    d = draw(grid)
    if draw(st.sampled_from([True, True, False])):  # the required keys, so that the checks after them are reached
        d.setdefault("methods", draw(listed(st.sampled_from(methods.available()))))
        d.setdefault("datasets", draw(listed(st.sampled_from(["facts.json", {"path": "facts.json", "n": 2}]))))
    try:
        return yaml.safe_dump(d, allow_unicode=True)
    except (yaml.YAMLError, UnicodeError):  # a value YAML cannot write (a lone surrogate)
        assume(False)


@settings(max_examples=examples(500))
@given(grid_text())
def test_any_grid_file_is_read_or_refused(text):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "facts.json").write_text(json.dumps(FACTS))
        (folder / "hp.yaml").write_text("v_lr: 0.5\nlayers: [1]\n")
        (folder / "bad.yaml").write_text("v_lr: [\n")
        (folder / "list.yaml").write_text("- 1\n- 2\n")
        f = folder / "grid.yaml"
        f.write_text(text, encoding="utf-8", errors="surrogatepass")
        spec, _ = accepted_or_refused(GridSpec.from_yaml, f)
        if spec is None:
            return
        cells, _ = accepted_or_refused(spec.cells, aim=False)
        for cell in cells or ():
            assert len(cell.key) > 8 and isinstance(cell.label, str)
