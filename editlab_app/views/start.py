"""Start page: the resident model, the model box, and what the app is for."""

import time

import pandas as pd
import streamlit as st
import torch

from editlab.core.limits import Limits
from editlab_app import errors
from editlab_app import state as S
from editlab_app.main import view

cfg = S.app_config()
ss = st.session_state

st.title("editlab")
st.markdown(
    "Edit one fact in a language model, live, and see honestly what the edit did. Every edit is "
    "measured on the **unedited** model, the model **before** this edit and **after** it, on the "
    "prompt itself, its **negation**, a **True/False** question, paraphrases and unrelated "
    "neighbour prompts."
)
with st.expander("The two findings this app exposes", expanded=True):
    st.markdown(
        "1. **The new target survives negation.** After a ROME-style edit of *The Eiffel Tower is "
        "located in the city of* → *Rome*, the model also answers *Rome* to *The Eiffel Tower is "
        "**not** located in the city of*. The edit wrote an association between the subject and "
        "the target, not a fact the model can reason about.\n"
        "2. **The fact-check disagrees with the completion.** The edited model completes the prompt "
        "with the new target, yet asked *True or false: The Eiffel Tower is located in the city of "
        "Rome.* it still rates that statement less true than the one with *Paris*: what it says and "
        "what it judges true come apart.\n\n"
        "The edit page flags both whenever they occur — the fact-check only where the True/False "
        "probe can be read on the loaded model (it is calibrated on facts the model knows; where it "
        "is at chance, the page says so instead)."
    )

S.show_flash(ss)
session = S.ensure_session(ss, cfg, stop=False)  # on failure: the error, then the model box
key: S.ModelKey = ss.get(S.MODEL_KEY) or S.default_key(cfg)

st.subheader("Model")
cuda = torch.cuda.is_available()
with st.form("model_form"):
    name = st.text_input(
        "Model",
        value=key.name,
        key="model_name",
        disabled=not cfg.allow_model_change,
        help="`smollm2-135m-instruct` is the embedded default (no download). Or a Hugging Face Hub id "
        "(e.g. `Qwen/Qwen2.5-0.5B-Instruct`) or a local folder. Supported families: "
        "gpt2, gptj, gpt_neox, llama, mistral, qwen2, qwen3.",
    )
    device = dtype = quant = None
    if cuda:
        c1, c2, c3 = st.columns(3)
        devices = ["auto"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] + ["cpu"]
        device = c1.selectbox("Device", devices, index=devices.index(key.device) if key.device in devices else 0)
        dtypes = ["auto", "bfloat16", "float16", "float32"]
        dtype = c2.selectbox("Dtype", dtypes, index=dtypes.index(key.dtype) if key.dtype in dtypes else 0)
        quants = ["none", "8bit", "4bit"]
        quant = c3.selectbox(
            "Quantisation",
            quants,
            index=quants.index(key.quantization) if key.quantization in quants else 0,
            help="bitsandbytes; the MLP output projections that edits rewrite stay in full precision",
        )
    else:
        st.caption(
            "No CUDA GPU here: the model runs on the CPU in float32 (device, dtype and quantisation "
            "choices appear on a GPU machine)."
        )
    if session is not None and session.records:
        st.caption(f"Loading another model drops this session's {len(session.records)} edit(s).")
    load = st.form_submit_button("Load model", disabled=not cfg.allow_model_change)

if load:
    new_key = S.ModelKey(
        (name or "").strip(),
        None if device in (None, "auto") else device,
        None if dtype in (None, "auto") else dtype,
        None if quant in (None, "none") else quant,
    )
    if new_key == key and session is not None:
        st.info(f"{key.label()} is already loaded.")
    else:
        t0 = time.perf_counter()
        with st.status(f"Loading {new_key.label()} ...", expanded=True) as status:
            st.write(
                "Reading the configuration, then the weights (a hub model downloads first; "
                "a model another visitor already loaded is reused at once)."
            )
            try:
                session = S.switch_model(ss, new_key, cfg)
            except Exception as e:  # any loading failure: keep the previous model, say why
                status.update(label=f"Could not load {new_key.name or '(empty)'}", state="error", expanded=True)
                kept = f"The previous model, **{key.label()}**, is still loaded." if session else "No model is loaded."
                st.error(f"Could not load **{new_key.name or '(empty)'}**: {errors.message(e)}\n\n{kept}")
            else:
                status.update(
                    label=f"Loaded {new_key.label()} in {time.perf_counter() - t0:.1f} s",
                    state="complete",
                    expanded=False,
                )
                key = new_key

if session is None:
    st.stop()
handle = session.handle
info = handle.describe()
c1, c2, c3, c4 = st.columns(4)
c1.metric("Parameters", f"{info['params'] / 1e6:,.0f} M")
c2.metric("Device", info["device"])
c3.metric("Weights in memory", f"{info['memory_bytes'] / 2**20:,.0f} MiB", help=f"dtype {info['dtype']}")
if handle.device.type == "cuda":
    c4.metric("GPU memory allocated", f"{torch.cuda.memory_allocated(handle.device) / 2**30:.2f} GiB")
else:
    try:
        rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
        c4.metric("Process memory", f"{rss / 2**20:,.2f} GiB", help="resident set size of the app's process")
    except (OSError, StopIteration):
        c4.metric("Process memory", "n/a")
st.caption(
    f"Loaded: **{info['name']}** · {info['family']}, {info['layers']} layers · source: {info['source'] or 'hub'}"
    + (f" · revision {info['revision']}" if info.get("revision") else "")
)

with st.expander("Settings fixed by the operator"):
    st.markdown(
        f"- remote model code (`trust_remote_code`): **{'on' if cfg.trust_remote_code else 'off'}** "
        "(`EDITLAB_TRUST_REMOTE_CODE`)\n"
        f"- model box: **{'open' if cfg.allow_model_change else 'fixed to ' + cfg.default_model}** "
        "(`EDITLAB_ALLOW_MODEL_CHANGE`)\n"
        f"- {cfg.corpus_line()} (`EDITLAB_CORPUS`)\n"
        f"- statistics tokens: **{cfg.mom2_tokens or 'method default'}** (`EDITLAB_MOM2_TOKENS`)\n"
        f"- uploads: JSON / JSONL / CSV up to **{cfg.max_upload_mb:g} MB** (`EDITLAB_MAX_UPLOAD_MB`)"
    )
with st.expander("Limits of this server"):
    st.caption(
        "Every request is bounded so that the server stays responsive for every visitor; the "
        "library refuses a request above a limit with a message naming it. The operator sets each "
        "one with the variable shown (0 or `off`: no limit)."
    )
    st.table(pd.DataFrame(Limits.from_env().rows()).set_index("limit"))
st.page_link(view("edit.py"), label="Edit a fact →", icon=":material/edit:")
