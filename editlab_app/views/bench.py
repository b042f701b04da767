"""Benchmark: several editing methods on the same facts, every metric, the unedited row, past runs."""

import streamlit as st

from editlab import methods
from editlab.core.errors import Cancelled
from editlab.core.limits import SLOTS
from editlab.measure.metrics import CONVENTIONS, METRICS
from editlab.runs.bench import BenchConfig, compare, load_result, past_runs, run_bench
from editlab.runs.store import StoreError
from editlab_app import bench as B
from editlab_app import errors
from editlab_app import state as S

RESULT = "editlab.runs.bench.result"  # the BenchResult this page shows
cfg = S.app_config()
ss = st.session_state
session = S.ensure_session(ss, cfg)
handle = session.handle

st.title("Benchmark")
st.caption(
    "Edit many facts with several methods and score every edit under three conventions: CounterFact's "
    "probability comparisons, EasyEdit's token accuracy, and the negation / fact-check tests that expose "
    "illusory success. The **unedited** row is the same model before any edit. Edits here never touch "
    "your session's edits."
)

try:
    store = S.run_store(ss, cfg)  # this visitor's runs only (every run in operator mode)
except StoreError as e:
    store = None
    st.warning(f"Results will not be kept: {errors.message(e)}")

# ---- the run form ---------------------------------------------------------------------------------
operator = B.operator_datasets()
sources = [B.EXAMPLES, B.UPLOAD, *operator]
with st.form("bench_form"):
    c1, c2 = st.columns([2, 3])
    source = c1.radio("Facts", sources, key="bench_source")
    upload = c2.file_uploader(
        "Dataset file (CounterFact, zsRE, KnowEdit or your own facts)",
        type=["json", "jsonl", "csv"],
        key="bench_upload",
    )
    chosen = st.multiselect(
        "Methods",
        methods.available(),
        default=["rome"],
        key="bench_methods",
        help="Leave empty to measure the unedited model only.",
    )
    c1, c2, c3, c4 = st.columns(4)
    n = c1.number_input("Facts", min_value=1, max_value=500, value=5, key="bench_n")
    seed = c2.number_input("Subset seed", min_value=0, value=0, key="bench_seed")
    batch = c3.number_input("Batch size", min_value=1, max_value=100, value=1, key="bench_batch")
    gen = c4.number_input("Generation tokens", min_value=1, max_value=64, value=16, key="bench_gen")
    c1, c2, c3 = st.columns(3)
    mode = c1.selectbox(
        "Protocol",
        ["independent", "sequential"],
        key="bench_mode",
        help="independent: every edit starts from the unedited model; sequential: edits accumulate",
    )
    evaluate = c2.selectbox(
        "Sequential: evaluate",
        ["after_each", "at_end"],
        key="bench_evaluate",
        help="score each batch right after its edit, or every fact once all edits are in (retention)",
    )
    negative = c3.checkbox(
        "Negated edits (NP, NN)",
        value=True,
        key="bench_negative",
        help="a second edit per fact, '... not' → new target; doubles the time",
    )
    submitted = st.form_submit_button("Run benchmark", type="primary", icon=":material/play_arrow:")

if submitted:
    try:
        dataset = B.chosen_dataset(source, upload, operator, cfg.max_upload_mb)
        dataset = dataset.subset(int(n), int(seed))
        # The operator's fixed hyperparameters (e.g. statistics size), for each method that has them.
        hp = {m: {k: v for k, v in cfg.hparam_defaults().items() if methods.get(m).HParams.accepts(k)} for m in chosen}
        hp = {m: v for m, v in hp.items() if v}
        config = BenchConfig(
            dataset=dataset.name,
            methods=tuple(chosen),
            n=len(dataset),
            seed=int(seed),
            mode=mode,
            batch_size=int(batch),
            evaluate=evaluate,
            negative_edits=negative,
            generation_tokens=int(gen),
            hparams=hp,
            corpus=cfg.corpus,
            online=cfg.online,
        )
        config.validate()
    except (ValueError, FileNotFoundError) as e:
        st.error(errors.message(e))
    else:
        if dataset.skipped:
            st.info(f"Left out {len(dataset.skipped)} invalid record(s); first: {dataset.skipped[0]}")
        bar = st.progress(0.0, text="starting ...")

        def progress(done, total, stage):
            bar.progress(min(1.0, done / total) if total else 1.0, text=f"{stage} ({done}/{total} facts measured)")

        with st.status(
            f"{config.protocol}: {len(dataset)} facts, {', '.join(chosen) or 'unedited only'}", expanded=False
        ) as box:
            try:
                with SLOTS.hold(S.visitor(ss)):
                    ss[RESULT] = run_bench(handle, config, dataset=dataset, store=store, progress=progress)
            except Cancelled:
                box.update(label="cancelled", state="error")
            except Exception as e:
                box.update(label="failed", state="error")
                errors.show(st, e, "The benchmark stopped")
            else:
                box.update(label=f"done: {config.protocol}", state="complete")

# ---- the result -----------------------------------------------------------------------------------
result = ss.get(RESULT)
if result is not None:
    st.subheader(f"Run #{result.run_id}" if result.run_id is not None else "Result")
    st.markdown(
        f"**Protocol:** {result.protocol} · **model:** {result.config.get('model')} · "
        f"**dataset:** {result.config.get('dataset')} (n={result.config.get('n')}, seed={result.config.get('seed')})"
    )
    for title, df in B.convention_tables(result).items():
        st.markdown(f"**{title}**")
        st.dataframe(df.style.format("{:.3f}", na_rep="–"), key=f"bench_table_{title}")
    extra = result.table()[["n", "failed", "s/edit"]]
    st.dataframe(extra.style.format({"s/edit": "{:.1f}"}, na_rep="–"), key="bench_table_counts")
    with st.expander("What each metric means"):
        st.table(
            {
                m.label: {
                    "convention": CONVENTIONS[m.convention],
                    "definition": m.description,
                    "better": "higher" if m.higher_is_better else "lower",
                }
                for m in METRICS
            }
        )
    t1, t2, t3 = st.tabs(["Bars", "Efficacy vs rectified efficacy", "Per fact"])
    with t1:
        st.plotly_chart(B.grouped_bars(result), key="bench_bars")
    with t2:
        st.plotly_chart(B.efficacy_scatter(result), key="bench_scatter")
        st.caption(
            "A method far below the diagonal says the new target even after \"not\": its efficacy is an "
            "association with the subject, not a fact the model reasons with."
        )
    with t3:
        method = st.selectbox("Method", [r.method for r in result.rows], key="bench_drill_method")
        choices = B.fact_choices(result, method)
        idx = st.selectbox("Fact", [i for i, _ in choices], format_func=dict(choices).get, key="bench_drill_fact")
        fact_result = next(f for f in result.row(method).facts if f.index == idx)
        if fact_result.error:
            st.error(f"This edit failed: {fact_result.error}")
        st.json({k: v for k, v in fact_result.scores.items() if v is not None}, expanded=False)
        st.dataframe(B.probe_table(result, method, idx), key="bench_probe_table")
        st.dataframe(B.token_table(result, method, idx, handle.tokenizer), key="bench_token_table")
    c1, c2, c3 = st.columns(3)
    stem = f"editlab-bench-{result.run_id if result.run_id is not None else 'result'}"
    c1.download_button("CSV (per fact)", B.export_bytes(result, "csv"), f"{stem}.csv", "text/csv", key="bench_dl_csv")
    c2.download_button(
        "Parquet (per fact)",
        B.export_bytes(result, "parquet"),
        f"{stem}.parquet",
        "application/octet-stream",
        key="bench_dl_parquet",
    )
    c3.download_button(
        "JSON (everything)", B.export_bytes(result, "json"), f"{stem}.json", "application/json", key="bench_dl_json"
    )

# ---- past runs ------------------------------------------------------------------------------------
if store is not None:
    runs = past_runs(store)
    st.subheader("Past runs")
    if not runs:
        st.caption("No benchmark of yours stored yet.")
    else:
        st.dataframe(B.runs_table(runs), hide_index=True, key="bench_runs")
        ids = [r.id for r in runs]
        picked = st.multiselect(
            "Compare runs", ids, default=ids[:1], key="bench_compare", format_func=lambda i: f"#{i}"
        )
        if picked:
            loaded = [load_result(store, i) for i in picked]
            st.dataframe(compare(loaded).style.format(precision=3, na_rep="–"), key="bench_compare_table")
            st.plotly_chart(B.efficacy_scatter(loaded), key="bench_compare_scatter")
            if len(picked) == 1 and st.button("Show this run above", key="bench_show_run"):
                ss[RESULT] = loaded[0]
                st.rerun()
