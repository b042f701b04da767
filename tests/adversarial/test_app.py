"""The app: two visitors never see each other's runs (the operator sees both), no page names a
server path, and the error boundary turns any exception into a message with a details toggle."""

import pytest

from editlab import methods
from editlab.runs.store import RunStore
from editlab.runs.sweep import KIND as SWEEP_KIND
from editlab_app import errors
from editlab_app import state as S

from .. import stand_in_method
from ..app.conftest import app_env, open_app  # noqa: F401 - the app's operator settings

BENCH, SWEEP = "views/bench.py", "views/sweep.py"


@pytest.fixture
def store_env(app_env, tmp_path):  # noqa: F811 - the imported fixture, injected by pytest
    app_env.setitem(methods.REGISTRY, stand_in_method.NAME, stand_in_method.MODULE)
    app_env.setenv("EDITLAB_STORE", str(tmp_path / "runs.sqlite"))
    return tmp_path / "runs.sqlite"


def _page_text(at) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "error", "warning", "info", "title", "subheader")
        for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def _listed(at, column="run") -> list:
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value[column].tolist()
    return []


def test_two_visitors_never_see_each_others_runs(store_env):
    alice = open_app(BENCH)
    alice.multiselect(key="bench_methods").set_value([stand_in_method.NAME])
    alice.number_input(key="bench_n").set_value(2)
    alice.number_input(key="bench_gen").set_value(2)
    alice.checkbox(key="bench_negative").uncheck()
    alice.button(key="FormSubmitter:bench_form-Run benchmark").click().run()
    assert not alice.exception and not alice.error, [e.value for e in alice.error]
    (bench_run,) = RunStore(store_env).runs("bench")
    assert _listed(alice) == [bench_run.id]

    # Alice's sweep, stored under her visitor id as the sweep page would.
    owned = RunStore(store_env).scoped(alice.session_state[S.VISITOR])
    sweep_id = owned.create_run(
        SWEEP_KIND, {"model": "smollm2-135m-instruct", "method": "rome", "dataset": "alice.json"}
    )
    owned.add_checkpoint(sweep_id, 0, {"quality_all": {"ES": 1.0}})

    bob = open_app(BENCH)
    assert bob.session_state[S.VISITOR] != alice.session_state[S.VISITOR]
    assert _listed(bob) == [] and "No benchmark of yours stored yet." in _page_text(bob)
    bob_store = RunStore(store_env).scoped(bob.session_state[S.VISITOR])
    with pytest.raises(KeyError, match="among your runs"):
        bob_store.checkpoints(bench_run.id)  # opening Alice's run by its number fails too
    bob.switch_page(SWEEP).run()
    assert not bob.exception
    assert "No sweep of yours stored yet" in _page_text(bob) and "alice.json" not in _page_text(bob)

    alice.switch_page(SWEEP).run()
    assert _listed(alice) == [sweep_id]
    operator = open_app(SWEEP, operator=True)
    assert _listed(operator) == [sweep_id]
    operator.switch_page(BENCH).run()
    assert _listed(operator) == [bench_run.id]
    for at in (alice, bob, operator):
        assert str(store_env.parent) not in _page_text(at)


class FakeSt:
    """Records what the boundary draws."""

    def __init__(self):
        self.errors, self.codes = [], []

    def error(self, text):
        self.errors.append(text)

    def expander(self, label):
        import contextlib

        self.errors.append(f"[{label}]")
        return contextlib.nullcontext()

    def code(self, text, language=None):
        self.codes.append(text)


@pytest.mark.parametrize(
    "exc,words",
    [
        (ValueError("hyperparameter 'v_lr': -1.0 is out of range"), "'v_lr': -1.0"),
        (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
        (AttributeError("'int' object has no attribute 'strip'"), "AttributeError"),
        (OSError("/root/.cache/huggingface/x does not appear to have a file named model.safetensors"), "huggingface/x"),
        (KeyError("no run #3 among your runs"), "KeyError"),
        (MemoryError(), "ran out of memory"),
    ],
)
def test_the_boundary_turns_any_exception_into_a_message_and_details(exc, words):
    fake = FakeSt()
    with errors.boundary(fake, "The benchmark stopped"):
        raise exc
    assert len(fake.errors) == 2 and fake.errors[1] == "[details]"
    assert words in fake.errors[0] and "Traceback" not in fake.errors[0]
    assert "/root/" not in fake.errors[0] and "Traceback" in fake.codes[0]


def test_streamlit_control_flow_passes_the_boundary():
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    with pytest.raises(StopException):
        with errors.boundary(FakeSt()):
            raise StopException()


BOMB = (
    "[&a [&b [&c [&d [&e [&f [&g [1,1,1,1,1,1,1,1,1], *g,*g,*g,*g,*g,*g,*g,*g], *f,*f,*f,*f,*f,*f,*f,*f],"
    " *e,*e,*e,*e,*e,*e,*e,*e], *d,*d,*d,*d,*d,*d,*d,*d], *c,*c,*c,*c,*c,*c,*c,*c], *b,*b,*b,*b,*b,*b,*b,*b],"
    " *a,*a,*a,*a,*a,*a,*a,*a]"
)


@pytest.mark.parametrize(
    "text,words",
    [
        (BOMB, "more than 20,000 values"),
        ("[" * 3000 + "]" * 3000, "nested"),
        ("{a: 1, a: 2}", "appears twice"),
    ],
)
def test_a_hostile_value_in_a_list_box_is_a_short_message_and_no_edit(app_env, text, words):  # noqa: F811
    """A YAML alias bomb, deep nesting or a duplicate key typed into MEMIT's ``layers`` box: refused
    in a message of a few hundred characters, in well under a second of parsing, the model untouched."""
    import time

    from ..app.test_edit_page import EDIT, fill

    at = open_app(EDIT)
    at.selectbox(key="method").select("memit").run()
    session = at.session_state[S.SESSION]
    at.text_input(key=f"hp.{session.handle.name}.memit.layers").set_value(text)
    fill(at, paraphrases="", neighbors="")
    t0 = time.perf_counter()
    at.button(key="edit_button").click().run()
    assert time.perf_counter() - t0 < 60
    shown = [e.value for e in at.error]
    assert not at.exception and len(shown) == 1 and words in shown[0], shown
    assert len(shown[0]) < 500 and session.records == []
