"""Findings: a paper's protocol run on this model at a small scale, beside the published numbers."""

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from editlab import methods
from editlab.core.limits import SLOTS
from editlab.runs.findings import to_html
from editlab.runs.reproduce import DEFAULT_METHOD, PROTOCOLS, PUBLISHED, run
from editlab_app import bench as B
from editlab_app import errors, shipped
from editlab_app import state as S
from editlab_app import sweep as W

RESULT = "editlab.runs.findings.result"
OPENED = "editlab.runs.findings.opened"  # the file id of the saved report shown, so a later run is not overwritten
ABOUT = {
    "negation": "Edit a fact, then ask with \"not\" inserted (PN) and edit the negated statement (NN, NP): "
    "does the new object survive negation?",
    "factcheck": "After the edit, ask \"True or false: …\": does the model agree with what it now completes?",
    "ablation": "Change only the predicate (\"is\" / \"is not\" / none): does the edited model's answer change?",
    "muting": "Edit facts one after another; at log-spaced checkpoints measure held-out perplexity and next-token "
    "accuracy, empty and repetitive outputs, n-gram entropy and retention of simple facts.",
}
cfg = S.app_config()
ss = st.session_state
session = S.ensure_session(ss, cfg)
handle = session.handle

st.title("Findings: the papers, reproduced here")
st.caption(
    "Runs one protocol of the two studies on the loaded model at a small scale, with 95 % bootstrap "
    "intervals, and sets the published numbers beside it. The published numbers come from 7–8B models; "
    "a small model can agree in direction, not in value."
)

st.subheader("What the shipped runs found")
st.caption(
    "Real runs of the four protocols on the default model, shipped with editlab and drawn here as they are: "
    "the muting curves over 1,000 sequential MEMIT edits, and the negation, fact-check and predicate-ablation "
    "findings on 20 facts. Run your own below."
)
shipped.show(key="findings_shipped_view")

st.subheader("Published numbers")
st.dataframe(
    pd.DataFrame(
        [
            {
                "protocol": r.protocol,
                "metric": r.metric,
                "value": r.value,
                "edits": r.edits,
                "model": r.model,
                "method": r.method,
                "dataset": r.dataset,
                "source": f"{r.paper}, {r.where}",
                "checked": "yes" if r.checked else r.provenance,
            }
            for r in PUBLISHED
        ]
    ),
    hide_index=True,
    key="findings_published",
)

st.subheader("Run your own")
operator = B.operator_datasets()
with st.form("findings_form"):
    c1, c2, c3 = st.columns(3)
    protocol = c1.selectbox("Protocol", PROTOCOLS, key="findings_protocol")
    n = c2.number_input("Facts (or edits, for muting)", min_value=1, max_value=50, value=3, key="findings_n")
    available = methods.available()
    method = c3.selectbox(
        "Method",
        available,
        index=available.index(DEFAULT_METHOD["negation"]) if DEFAULT_METHOD["negation"] in available else 0,
        key="findings_method",
    )
    source = st.radio(
        "Facts (CounterFact-style)", [B.EXAMPLES, B.UPLOAD, *operator], key="findings_source", horizontal=True
    )
    upload = st.file_uploader("Dataset file", type=["json", "jsonl", "csv"], key="findings_upload")
    submitted = st.form_submit_button("Run", type="primary", icon=":material/play_arrow:")
st.caption(ABOUT[protocol])

if submitted:
    try:
        dataset = B.chosen_dataset(source, upload, operator, cfg.max_upload_mb)
        hp = (
            {"mom2_n_tokens": cfg.mom2_tokens}
            if cfg.mom2_tokens and methods.get(method).HParams.accepts("mom2_n_tokens")
            else None
        )
        kw = dict(dataset=dataset, corpus=cfg.corpus, online=cfg.online, hparams=hp)
        if protocol == "factcheck":
            kw["zsre"] = None
        if protocol == "muting":
            kw["heldout"] = (W.ability_sources().get("sources") or {}).get("perplexity")
    except (ValueError, FileNotFoundError) as e:
        st.error(errors.message(e))
    else:
        bar = st.progress(0.0, text="starting ...")

        def progress(done, total, stage):
            bar.progress(min(1.0, done / total) if total else 1.0, text=stage)

        try:
            with SLOTS.hold(S.visitor(ss)), st.spinner(f"{protocol}: {method} on {n} ..."):
                ss[RESULT] = run(protocol, handle, int(n), method, progress=progress, **kw)
        except Exception as e:
            errors.show(st, e, f"{protocol}: the run stopped")
        bar.empty()

with st.expander(
    "Open a saved report: a long run made elsewhere (e.g. `editlab reproduce muting --n 1000` "
    "on a GPU), shown here without running it again"
):
    saved = st.file_uploader(
        "Report (the .json `editlab reproduce` or this page's download writes)", type=["json"], key="findings_open"
    )
    if saved is not None and ss.get(OPENED) != saved.file_id:
        ss[OPENED] = saved.file_id
        try:
            ss[RESULT] = B.read_report(saved.name, saved.getvalue(), cfg.max_upload_mb)
        except ValueError as e:
            st.error(str(e))
    shipped = B.shipped_reports()
    if shipped:
        c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
        pick = c1.selectbox(
            "Or a report shipped with editlab (real runs the README quotes)", list(shipped), key="findings_shipped"
        )
        if c2.button("Open", key="findings_open_shipped"):
            try:
                ss[RESULT] = B.read_report(pick, shipped[pick].read_bytes(), cfg.max_upload_mb)
            except ValueError as e:  # its message already names the file
                st.error(str(e))
            except OSError as e:
                st.error(f"{pick} could not be read: {e}")

result = ss.get(RESULT)
if result is None:
    st.caption(
        "No result yet in this browser session: run a protocol above, or open a saved report. "
        "The shipped runs' findings are at the top of the page."
    )
    st.stop()
st.subheader(f"Measured: {result.protocol}, {result.method} on {result.model}, n={result.n}")
for sentence in result.at_chance_sentences():
    st.warning(sentence)
st.dataframe(result.table(), hide_index=True, key="findings_table")
st.caption(
    f"Cost: {result.cost.get('total_s')} s in all"
    + (f" on {result.cost['machine']}" if result.cost.get("machine") else "")
    + "; "
    + "; ".join(result.notes)
)
report = to_html(result)
components.html(report, height=900, scrolling=True)
c1, c2 = st.columns(2)
c1.download_button("Report (HTML)", report, f"editlab-{result.protocol}.html", "text/html", key="findings_dl_html")
c2.download_button(
    "Result (JSON)",
    result.to_json(indent=1),
    f"editlab-{result.protocol}.json",
    "application/json",
    key="findings_dl_json",
)
