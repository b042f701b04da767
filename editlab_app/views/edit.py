"""Edit page: a fact, a method, an Edit button; then unedited / before / after, side by side."""

import time

import streamlit as st

from editlab import methods
from editlab_app import actions as A
from editlab_app import gallery as G
from editlab_app import hparams as H
from editlab_app import report as R
from editlab_app import state as S
from editlab_app import trace_view as TV

cfg = S.app_config()
ss = st.session_state
session = S.ensure_session(ss, cfg)
handle = session.handle
KEPT = ("fact.", "hp.", "method", "gallery_choice")
UPLOADED = "editlab.uploaded"

st.title("Edit a fact")
S.show_flash(ss)


@st.cache_resource(show_spinner=False)
def gallery() -> tuple:
    return tuple(G.load_gallery())


# ---- the fact: gallery, upload, form --------------------------------------------------------
S.restore_widgets(ss, KEPT)
choices = dict(gallery()) | dict(ss.get(UPLOADED, ()))


def fill_form() -> None:
    for k, v in A.form_values(choices[ss["gallery_choice"]]).items():
        ss[f"fact.{k}"] = v


if ss.get("gallery_choice") not in choices:
    ss["gallery_choice"] = next(iter(choices))
if "fact.subject" not in ss:
    fill_form()
methods_available = methods.available()
if ss.get("method") not in methods_available:
    ss["method"] = "rome" if "rome" in methods_available else methods_available[0]

c1, c2 = st.columns([3, 1])
c1.selectbox(
    "Example fact",
    list(choices),
    key="gallery_choice",
    on_change=fill_form,
    help="Built-in examples written for editlab, plus any facts you upload below. Picking one fills the form.",
)
method = c2.selectbox("Method", methods_available, key="method")

with st.expander("Load facts from a file (JSON, JSONL or CSV)"):
    st.caption(
        f"Columns/keys `subject, prompt, target_new` and optionally `target_true, paraphrases, neighbors, "
        f"negated_prompt`; "
        f"CounterFact / zsRE / KnowEdit files work too. Up to {cfg.max_upload_mb:g} MB; parsed as text only."
    )
    upload = st.file_uploader("Fact file", type=["json", "jsonl", "csv"], key="upload")
    if upload is not None and ss.get("upload_id") != upload.file_id:
        ss["upload_id"] = upload.file_id
        try:
            facts, skipped = G.read_upload(upload.name, upload.getvalue(), cfg.max_upload_mb)
        except ValueError as e:
            st.error(str(e))
        else:
            ss[UPLOADED] = facts
            S.flash(
                ss,
                "success",
                f"Loaded {len(facts)} fact(s) from {upload.name}; pick one under *Example fact*."
                + (f" Skipped {len(skipped)}: " + "; ".join(skipped[:3]) if skipped else ""),
            )
            st.rerun()

with st.expander(f"{method} hyperparameters (defaults for {handle.name})"):
    st.caption(f"{method} {methods.capabilities(method).describe()}")
    drawn = H.render(st, method, handle, cfg.hparam_defaults())
    if st.button("Back to the defaults", key="hp_defaults"):
        H.reset_widgets(ss, drawn)
        st.rerun()

with st.form("fact_form"):
    c1, c2 = st.columns(2)
    c1.text_input("Subject", key="fact.subject", help="the entity whose fact you rewrite; it must occur in the prompt")
    c2.text_input("Prompt", key="fact.prompt", help="a sentence start containing the subject, completed by the target")
    c1.text_input("New target", key="fact.target_new", help="what the model should say after the edit")
    c2.text_input(
        "True target", key="fact.target_true", help="what the model says now (optional, but most figures need it)"
    )
    c1.text_area("Paraphrases", key="fact.paraphrases", height=90, help="other phrasings of the prompt, one per line")
    c2.text_area(
        "Neighbour prompts",
        key="fact.neighbors",
        height=90,
        help="prompts about other subjects the edit must not change, one per line: `prompt => expected answer`",
    )
    c1.text_input(
        "Negated prompt (optional)",
        key="fact.negated_prompt",
        help="your own negation of the prompt; empty: editlab negates it (and says so when it cannot as English)",
    )
    b1, b2, _ = st.columns([1, 1, 4])
    do_edit = b1.form_submit_button(f"Edit with {method}", type="primary", key="edit_button")
    do_probe = b2.form_submit_button("Probe only", key="probe_button", help="measure the probes without editing")
S.remember_widgets(ss, KEPT)

if do_edit or do_probe:
    error = None
    try:
        fact = A.build_fact(*(ss.get(f"fact.{k}", "") for k in A.FORM_FIELDS))
        hp = H.resolve(method, handle, H.overrides(drawn["specs"], drawn["values"])) if do_edit else None
    except ValueError as e:
        error = f"Please fix the form: {e}"
    else:
        if do_edit:
            early = st.empty()  # the first verdict, until the full report replaces it
            started = time.perf_counter()

            def show_verdict(first) -> None:
                with early.container():
                    st.markdown(f"##### First verdict, {time.perf_counter() - started:.1f} s after Edit")
                    for _, level, sentence in R.flags(first):
                        getattr(st, level)(sentence)
                    st.caption("Measuring the paraphrases, neighbours and free generations; the full report follows.")

            with st.status(f"Editing with {method} ...", expanded=True) as status:
                bar = st.progress(0.0, text="waiting for the model ...")
                line = st.empty()

                def waiting(w) -> None:  # others' requests are ahead on the shared model
                    line.info(w.line(), icon=":material/hourglass_top:")

                def progress(done: int, total: int, stage: str) -> None:
                    line.empty()
                    text = f"{stage} ({done:,}/{total:,})"
                    if total and done >= total and stage.lower().startswith(method.lower()):
                        text = f"{stage}; measuring the probes after the edit ..."
                    bar.progress(min(1.0, done / total) if total else 1.0, text=text)

                try:
                    record, _ = A.edit(ss, fact, method, hp, progress=progress, on_wait=waiting, verdict=show_verdict)
                except Exception as e:
                    error = A.user_message(e)
                    if error is None:
                        raise
                    status.update(label="The edit failed; nothing was changed", state="error", expanded=False)
                else:
                    status.update(
                        label=f"Edited with {method} in {record.seconds:.1f} s", state="complete", expanded=False
                    )
            early.empty()
        else:
            with st.spinner("Probing ..."):
                line = st.empty()
                try:
                    A.probe(ss, fact, on_wait=lambda w: line.info(w.line(), icon=":material/hourglass_top:"))
                except ValueError as e:
                    error = str(e)
                line.empty()
    if error:
        st.error(error)

# ---- the result ----------------------------------------------------------------------------
report = ss.get(S.REPORT)
if report is not None and A.report_is_stale(ss):
    with st.spinner("Your edits changed since these probes ran; measuring again ..."):
        report = A.refresh(ss)


def _heading(report) -> None:
    """The fact as the title, then the model, the edit's time and the notes."""
    f = report.fact
    title = f"{report.method}: " if report.method else "Probe run: "
    st.subheader(title + f"{f.prompt} → {f.target_new}" + (f" (was {f.target_true})" if f.target_true else ""))
    meta = [f"model {report.model}"]
    if report.method:
        meta.append(f"edit took {report.edit_seconds:.1f} s")
    else:
        meta.append("no edit in this run: **now** is this session's model with its edits so far")
    meta += list(report.notes)
    st.caption(" · ".join(meta))


def _undo_button(last) -> None:
    """A button that undoes ``last``, the session's latest edit."""

    def _undo_last() -> None:
        try:
            rec = A.undo(ss, last.id)
        except ValueError as e:
            S.flash(ss, "error", str(e))
        else:
            S.flash(
                ss,
                "success",
                f"Undid edit {rec.id} ({rec.facts[0].subject} → {rec.facts[0].target_new}): "
                "the weights it changed are back to what they were before it.",
            )

    label = (
        "Undo this edit"
        if ss.get(S.REPORT_RECORD) == last.id
        else f"Undo the last edit ({last.facts[0].subject} → {last.facts[0].target_new})"
    )
    st.button(label, key="undo_last", on_click=_undo_last, icon=":material/undo:")


def _factcheck(report) -> None:
    """The fact-check table with its calibration, when the report has one."""
    tf = R.factcheck_table(report)
    if len(tf):
        st.markdown("##### Fact-check: True or false?")
        if report.factcheck is not None:
            st.caption(
                f"Read pairwise: is the statement with the new target rated truer (normalised P(True)) than "
                f"the one with the true target? Calibration — {report.factcheck.sentence()}."
            )
        st.table(R.style(tf, report))


def _generations(report) -> None:
    """Each generation probe's continuation in every state, side by side."""
    st.markdown("##### Free generations")
    for g in R.generations(report):
        if g["probe"] != "generation":
            continue
        cols = st.columns(len(R.states(report)))
        for col, (_, name) in zip(cols, R.states(report)):
            col.markdown(f"**{name}**")
            col.text(f"{g['prompt']}{g[name]}")


def _probe_editor(report) -> None:
    """The report's probe prompts as text boxes; run them again (or the defaults) without editing."""
    f = report.fact
    probes = [r.probe for r in report.rows]
    serial = ss.get(S.REPORT_SERIAL, 0)  # new widget keys for each new report's prompts
    with st.form("probe_form"):
        prompts = []
        for label, p in zip(A.probe_labels(probes), probes):
            box = st.text_area if "\n" in p.prompt else st.text_input
            prompts.append(box(label, value=p.prompt, key=f"probe.{serial}.{label}"))
        r1, r2, _ = st.columns([1, 1, 4])
        rerun = r1.form_submit_button("Run probes again", key="rerun_probes")
        defaults = r2.form_submit_button("Default probes", key="default_probes")
    if rerun or defaults:
        try:
            new = session.probes_for(f) if defaults else A.with_prompts(probes, prompts)
            with st.spinner("Probing ..."):
                A.probe(ss, f, new)
        except ValueError as e:
            st.error(f"Could not run the probes: {e}")
        else:
            st.rerun()


def _every_field(report) -> None:
    """The report as a table and as a JSON download."""
    st.dataframe(report.to_dataframe(), hide_index=True)
    st.download_button(
        "Download the report (JSON)",
        report.to_json(indent=1),
        file_name="editlab-report.json",
        mime="application/json",
        key="download_report",
    )


def show(report) -> None:
    """The side-by-side result: flags, table, bars, fact-check, generations, probe editor."""
    st.divider()
    _heading(report)

    for _, level, text in R.flags(report):
        getattr(st, level)(text)
    st.caption(R.summary_caption(report))

    if session.records:
        _undo_button(session.records[-1])

    st.markdown("##### Completions: probability of each target")
    st.table(R.style(R.cloze_table(report), report))
    st.plotly_chart(R.bars(report), key="bars")

    _factcheck(report)
    _generations(report)

    TV.ablation_section(st, report)
    TV.trace_expander(st, ss, session, report.fact, method)

    with st.expander("Probe prompts: edit them and run again without editing"):
        _probe_editor(report)

    with st.expander("Every measured field"):
        _every_field(report)


if report is None:
    st.info("Pick or type a fact, then press **Edit** (or **Probe only** to see what the model says now).")
else:
    show(report)
