"""Sweep: edit facts one after another and watch edit quality, general ability and muting."""

import tempfile
from pathlib import Path

import streamlit as st

from editlab import methods
from editlab.core.errors import Cancelled
from editlab.core.limits import SLOTS
from editlab.measure.ability import TASKS, AbilityConfig
from editlab.runs.store import StoreError
from editlab.runs.sweep import KIND, SweepConfig, cost_line, parse_counts, run_sweep
from editlab_app import bench as B
from editlab_app import errors, shipped
from editlab_app import state as S
from editlab_app import sweep as W

SHOWN = "editlab.runs.sweep.shown"  # run ids this browser session started (shown first)
cfg = S.app_config()
ss = st.session_state
session = S.ensure_session(ss, cfg)
handle = session.handle

st.title("Sweep: sequential edits")
st.caption(
    "Edit facts one after another on a private copy of the edit state and, after each chosen number of "
    "edits, measure what the model still does: the edits so far (retention), general ability on small fixed "
    "benchmark subsets, and whether it still says anything (muting). The dotted lines are the unedited model. "
    "Every checkpoint is stored as soon as it is measured; starting the same configuration again resumes it."
)

try:
    store = S.run_store(ss, cfg)  # this visitor's runs only (every run in operator mode)
except StoreError as e:
    st.error(errors.message(e))
    st.stop()

with st.expander(
    "The muting effect, as shipped: MEMIT's 1,000 sequential edits on the default model",
    expanded=not store.runs(KIND),
):
    if not shipped.show(("muting",), key="sweep_shipped"):
        st.caption("No shipped muting run in this installation.")
    else:
        st.caption("Run your own sweep below: its curves are drawn under it and stored as they are measured.")

operator = B.operator_datasets()
sources = [B.EXAMPLES, B.UPLOAD, *operator]
with st.form("sweep_form"):
    c1, c2 = st.columns([2, 3])
    source = c1.radio("Facts (edited in file order)", sources, key="sweep_source")
    upload = c2.file_uploader(
        "Dataset file (CounterFact, zsRE, KnowEdit or your own facts)",
        type=["json", "jsonl", "csv"],
        key="sweep_upload",
    )
    chosen = st.multiselect("Methods (one sweep each)", methods.available(), default=["rome"], key="sweep_methods")
    c1, c2, c3, c4 = st.columns(4)
    counts_text = c1.text_input(
        "Numbers of edits",
        "1,2,5,10",
        key="sweep_counts",
        help="checkpoints, e.g. 1,2,5,10,20,50,100 (each needs that many facts)",
    )
    batch = c2.number_input("Batch size", min_value=1, max_value=100, value=1, key="sweep_batch")
    seed = c3.number_input("Seed", min_value=0, value=0, key="sweep_seed")
    n_items = c4.number_input(
        "Ability items per task",
        min_value=0,
        max_value=200,
        value=3,
        key="sweep_items",
        help="0 skips general ability; GSM8K and perplexity use fewer items (they cost more)",
    )
    submitted = st.form_submit_button("Start", type="primary", icon=":material/play_arrow:")

if submitted:
    try:
        if not chosen:
            raise ValueError("choose at least one method")
        counts = parse_counts(counts_text)
        dataset = B.chosen_dataset(source, upload, operator, cfg.max_upload_mb)
        if counts[-1] > len(dataset):
            raise ValueError(f"{dataset.name} has {len(dataset)} facts; the largest number of edits is {counts[-1]}")
        data = W.ability_sources()
        if n_items:
            ability = AbilityConfig.scaled(int(n_items), seed=int(seed), online=cfg.online, **data)
        else:
            ability = AbilityConfig(sizes={t: 0 for t in TASKS})
        configs = []
        for m in chosen:
            hp = {}
            if cfg.mom2_tokens and methods.get(m).HParams.accepts("mom2_n_tokens"):
                hp = {"mom2_n_tokens": cfg.mom2_tokens}
            configs.append(
                SweepConfig(
                    method=m,
                    dataset=dataset.name,
                    counts=counts,
                    batch_size=int(batch),
                    hparams=hp,
                    seed=int(seed),
                    ability=ability,
                    corpus=cfg.corpus,
                    online=cfg.online,
                )
            )
    except (ValueError, FileNotFoundError) as e:
        st.error(errors.message(e))
    else:
        bar = st.progress(0.0, text="starting ...")
        live = st.empty()
        st.caption("To stop, press Stop (top right); starting the same sweep again resumes from its last checkpoint.")
        started = []
        for config in configs:

            def progress(p, _m=config.method):
                bar.progress(min(1.0, p.facts_done / p.facts_total) if p.facts_total else 1.0, text=f"{_m}: {p.line()}")
                if p.run_id is not None and p.run_id not in started:
                    started.append(p.run_id)
                if p.stage.startswith("checkpoint"):
                    ids = list(started)
                    live.plotly_chart(
                        W.sweep_figure(W.run_curves(store, ids), {i: W.run_label(store.run(i)) for i in ids}),
                        key=f"sweep_live_{p.run_id}_{p.step}",
                    )

            try:
                with SLOTS.hold(S.visitor(ss)), st.spinner(f"{config.method}: sweeping {config.counts[-1]} edits ..."):
                    result = run_sweep(
                        handle, config, store, progress=progress, facts=dataset.facts[: config.counts[-1]]
                    )
            except Cancelled:
                st.warning(f"{config.method}: cancelled")
                break
            except Exception as e:  # one method's failure is said, the next method still runs
                errors.show(st, e, f"{config.method}: the sweep stopped")
                break
            else:
                if result.run_id not in started:
                    started.append(result.run_id)
                if result.resumed_from is not None:
                    st.info(f"{config.method}: resumed run #{result.run_id} from {result.resumed_from} edits")
        ss[SHOWN] = started + [i for i in ss.get(SHOWN, []) if i not in started]
        live.empty()
        bar.empty()

# ---- runs in the store ----------------------------------------------------------------------------
runs = store.runs(KIND)
st.subheader("Sweeps")
if not runs:
    st.caption("No sweep of yours stored yet: the shipped 1,000-edit run is drawn at the top of the page.")
    st.stop()
st.dataframe(W.runs_table(runs), hide_index=True, key="sweep_runs")
by_id = {r.id: r for r in runs}
default = [i for i in ss.get(SHOWN, []) if i in by_id][:4] or [runs[-1].id]
shown = st.multiselect(
    "Runs to plot (overlay to compare methods)",
    list(by_id),
    default=default,
    key="sweep_shown",
    format_func=lambda i: W.run_label(by_id[i]),
)
if not shown:
    st.stop()
data = W.run_curves(store, shown)
event = st.plotly_chart(
    W.sweep_figure(data, {i: W.run_label(by_id[i]) for i in shown}),
    key="sweep_chart",
    on_select="rerun",
    selection_mode="points",
)
st.caption("Click a point to read that checkpoint's sample generations below.")
for i in shown:
    st.caption(f"{W.run_label(by_id[i])} — {cost_line(data[i])}")

clicked = W.selected_step(event)
c1, c2 = st.columns(2)
run_id = c1.selectbox("Run", shown, key="sweep_detail_run", format_func=lambda i: W.run_label(by_id[i]))
checkpoints = store.checkpoints(run_id)
steps = [c.step for c in checkpoints]
if not steps:
    st.caption("This run has no checkpoint yet.")
    st.stop()
index = steps.index(clicked) if clicked in steps else len(steps) - 1
step = c2.selectbox(
    "Checkpoint (number of edits; 0 = unedited)", steps, index=index, key=f"sweep_detail_step_{clicked}"
)
checkpoint = checkpoints[steps.index(step)]
if by_id[run_id].note:
    st.info(by_id[run_id].note)
st.dataframe(W.metrics_table(checkpoint), hide_index=True, key="sweep_metrics")
for title, df in W.samples_tables(checkpoint).items():
    st.markdown(f"**{title}**")
    st.dataframe(df, hide_index=True, key=f"sweep_samples_{title}")

c1, c2, c3 = st.columns(3)
for col, fmt, mime in (
    (c1, "csv", "text/csv"),
    (c2, "parquet", "application/octet-stream"),
    (c3, "json", "application/json"),
):
    with tempfile.TemporaryDirectory() as tmp:
        data_bytes = Path(store.export(shown, Path(tmp) / f"sweeps.{fmt}", fmt)).read_bytes()
    col.download_button(
        fmt.upper(), data_bytes, f"editlab-sweeps-{'-'.join(map(str, shown))}.{fmt}", mime, key=f"sweep_dl_{fmt}"
    )
