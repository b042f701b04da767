"""EasyEdit's own ROME, MEMIT, AlphaEdit and PMET hyperparameter files, loaded by editlab's importer
and checked field by field against what EasyEdit runs with them: every key whose meaning differs is
converted (and the load report says how), none silently renamed."""

import warnings

import pytest

from editlab.methods import alphaedit, memit, pmet, rome
from editlab.methods.base import UnknownHParamsWarning
from editlab.model.stats import EASYEDIT_TOKENS_PER_SAMPLE, easyedit_samples_to_tokens

# The files as they are in zjunlp/EasyEdit (commit 14cea82); trailing blanks and the
# commented-out older variant at the end of ROME's llama-7b.yaml left out.

# hparams/ROME/llama-7b.yaml
ROME_LLAMA_7B = """\
alg_name: "ROME"
model_name: "./hugging_cache/llama-2-7b-chat"
stats_dir: "./data/stats"
device: 0
layers: [5]
fact_token: "subject_last"
v_num_grad_steps: 25
v_lr: 5e-1
v_loss_layer: 31
v_weight_decay: 1e-3
clamp_norm_factor: 4
kl_factor: 0.0625
mom2_adjustment: false
context_template_length_params: [[5, 10], [10, 10]]
rewrite_module_tmp: "model.layers.{}.mlp.down_proj"
layer_module_tmp: "model.layers.{}"
mlp_module_tmp: "model.layers.{}.mlp"
attn_module_tmp: "model.layers.{}.self_attn"
ln_f_module: "model.norm"
lm_head_module: "lm_head"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
model_parallel: false
# fp16: true
"""

# hparams/ROME/gpt2-xl.yaml
ROME_GPT2_XL = """\
alg_name: "ROME"
model_name: "./hugging_cache/gpt2-xl"
stats_dir: "./data/stats"
device: 0
layers: [17]
fact_token: "subject_last"
v_num_grad_steps: 20
v_lr: 5e-1
v_loss_layer: 47
v_weight_decay: 0.5
clamp_norm_factor: 4
kl_factor: 0.0625
mom2_adjustment: false
context_template_length_params: [[5, 10], [10, 10]]
rewrite_module_tmp: "transformer.h.{}.mlp.c_proj"
layer_module_tmp: "transformer.h.{}"
mlp_module_tmp: "transformer.h.{}.mlp"
attn_module_tmp: "transformer.h.{}.attn"
ln_f_module: "transformer.ln_f"
lm_head_module: "transformer.wte"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
model_parallel: false
fp16: false
"""

# hparams/MEMIT/llama-7b.yaml
MEMIT_LLAMA_7B = """\
alg_name: "MEMIT"
model_name: "./hugging_cache/llama-2-7b"
stats_dir: "./data/stats"
device: 0
layers: [4, 5, 6, 7, 8]
clamp_norm_factor: 4
layer_selection: "all"
fact_token: "subject_last"
v_num_grad_steps: 25
v_lr: 5e-1
v_loss_layer: 31
v_weight_decay: 1e-3
kl_factor: 0.0625
mom2_adjustment: true
mom2_update_weight: 15000
rewrite_module_tmp: "model.layers.{}.mlp.down_proj"
layer_module_tmp: "model.layers.{}"
mlp_module_tmp: "model.layers.{}.mlp"
attn_module_tmp: "model.layers.{}.self_attn"
ln_f_module: "model.norm"
lm_head_module: "lm_head"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
model_parallel: false
"""

# hparams/MEMIT/gpt2-xl.yaml
MEMIT_GPT2_XL = """\
alg_name: "MEMIT"
model_name: "./hugging_cache/gpt2-xl"
stats_dir: "./data/stats"
device: 0
layers: [13, 14, 15, 16, 17]
clamp_norm_factor: 0.75
layer_selection: "all"
fact_token: "subject_last"
v_num_grad_steps: 20
v_lr: 5e-1
v_loss_layer: 47
v_weight_decay: 0.5
kl_factor: 0.0625
mom2_adjustment: true
mom2_update_weight: 20000
rewrite_module_tmp: "transformer.h.{}.mlp.c_proj"
layer_module_tmp: "transformer.h.{}"
mlp_module_tmp: "transformer.h.{}.mlp"
attn_module_tmp: "transformer.h.{}.attn"
ln_f_module: "transformer.ln_f"
lm_head_module: "transformer.wte"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
model_parallel: false
"""

# hparams/AlphaEdit/llama3-8b.yaml
ALPHAEDIT_LLAMA3_8B = """\
alg_name: "AlphaEdit"
model_name: "./hugging_cache/llama-3-8b-instruct"
stats_dir: "./data/stats"
# Make sure that the projection matrix P has been downloaded from the baidu netdisk (For details, please refer to the EasyEdit/easyeditor/models/alphaedit/README.md) beforehand to avoid double computation.
# But if the projection matrix P which we provided is not needed, then nothing needs to be done to the P_loc field;
# just run the program, and the program will compute P and save it locally automatically.
P_loc: "./null_space_project.pt"
device: 0
layers: [4, 5, 6, 7, 8]
clamp_norm_factor: 0.75
layer_selection: "all"
fact_token: "subject_last"
v_num_grad_steps: 25
v_lr: 1e-1
v_loss_layer: 31
v_weight_decay: 0.5
kl_factor: 0.0625
mom2_adjustment: true
mom2_update_weight: 15000
rewrite_module_tmp: "model.layers.{}.mlp.down_proj"
layer_module_tmp: "model.layers.{}"
mlp_module_tmp: "model.layers.{}.mlp"
attn_module_tmp: "model.layers.{}.self_attn"
ln_f_module: "model.norm"
lm_head_module: "lm_head"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
nullspace_threshold: 2e-2
L2: 1
"""  # noqa: E501 (EasyEdit's file, verbatim)

# hparams/AlphaEdit/gpt2-xl.yaml
ALPHAEDIT_GPT2_XL = """\
alg_name: "AlphaEdit"
model_name: "./hugging_cache/gpt2-xl"
stats_dir: "./data/stats"
# Make sure that the projection matrix P has been downloaded from the baidu netdisk (For details, please refer to the EasyEdit/easyeditor/models/alphaedit/README.md) beforehand to avoid double computation.
# But if the projection matrix P which we provided is not needed, then nothing needs to be done to the P_loc field;
# just run the program, and the program will compute P and save it locally automatically.
P_loc: "./null_space_project.pt"
device: 0
layers: [13, 14, 15, 16, 17]
clamp_norm_factor: 0.75
layer_selection: "all"
fact_token: "subject_last"
v_num_grad_steps: 20
v_lr: 5e-1
v_loss_layer: 47
v_weight_decay: 0.5
kl_factor: 0.0625
mom2_adjustment: true
mom2_update_weight: 20000
rewrite_module_tmp: "transformer.h.{}.mlp.c_proj"
layer_module_tmp: "transformer.h.{}"
mlp_module_tmp: "transformer.h.{}.mlp"
attn_module_tmp: "transformer.h.{}.attn"
ln_f_module: "transformer.ln_f"
lm_head_module: "lm_head"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
nullspace_threshold: 2e-2
L2: 10
"""  # noqa: E501 (EasyEdit's file, verbatim)

# hparams/PMET/llama-7b.yaml
PMET_LLAMA_7B = """\
alg_name: "PMET"
model_name: "./hugging_cache/llama-2-7b"
stats_dir: "./data/stats"
device: 0
layers: [4, 5, 6, 7, 8]
clamp_norm_factor: 1
layer_selection: "all"
fact_token: "subject_last"
v_num_grad_steps: 20
v_lr: 5e-1
v_loss_layer: 31
v_weight_decay: 0.5
kl_factor: 0.0625
mom2_adjustment: true
mom2_update_weight: 15000
rewrite_module_tmp: "model.layers.{}.mlp.down_proj"
rewrite_module_tmps: ["model.layers.{}.mlp.down_proj"]
layer_module_tmp: "model.layers.{}"
mlp_module_tmp: "model.layers.{}.mlp.down_proj"
attn_module_tmp: "model.layers.{}.self_attn.o_proj"
ln_f_module: "model.norm"
lm_head_module: "lm_head"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
model_parallel: false
nll_loss_factor: 1
"""

# EasyEdit's statistics size: mom2_n_samples 100,000 text samples, in tokens.
TOKENS_100K = easyedit_samples_to_tokens(100_000)
# The reference's v* loop (ROME compute_v, MEMIT/AlphaEdit/PMET compute_z): `if loss < 5e-2: break`
# on the total loss; no key in the files.
REFERENCE_STOP = 5e-2


def load(module, text, tmp_path, handle=None):
    path = tmp_path / "hparams.yaml"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownHParamsWarning)  # no key of EasyEdit's files is unknown
        return module.HParams.from_yaml(path, handle)


def mismatches(hp, want: dict) -> dict:
    """{field: (editlab's, EasyEdit's)} for every field that differs from what EasyEdit runs."""
    out = {}
    for name, value in want.items():
        got = getattr(hp, name)
        same = got == pytest.approx(value) if isinstance(value, float) else got == value
        if not same:
            out[name] = (got, value)
    return out


def test_the_token_count_per_sample_is_what_wikitext_paragraphs_measure(handle, corpus_path):
    # EASYEDIT_TOKENS_PER_SAMPLE: the mean tokens of a WikiText paragraph (a non-blank, non-heading
    # line) on the default model's tokenizer; 1,000 samples -> 139,000 tokens, not 1,000.
    lines = open(corpus_path, encoding="utf-8").read().split("\n")
    paragraphs = [l + "\n" for l in lines if l.strip() and not l.strip().startswith("=")]
    mean = sum(len(handle.tokenizer(p).input_ids) for p in paragraphs) / len(paragraphs)
    assert mean == pytest.approx(EASYEDIT_TOKENS_PER_SAMPLE, abs=0.1)
    assert easyedit_samples_to_tokens(1000) == 139_000 and TOKENS_100K == 13_900_000


ROME_COMMON = dict(
    fact_token="subject_last",
    v_lr=0.5,
    clamp_norm_factor=4.0,
    kl_factor=0.0625,
    loss_stop=REFERENCE_STOP,
    v_loss_layer=None,
    mom2_adjustment=False,
    context_template_length_params=[[5, 10], [10, 10]],
    mom2_dataset="wikipedia",
    mom2_n_tokens=TOKENS_100K,
    mom2_dtype="float32",
    negation_weight=0.0,
)


@pytest.mark.parametrize(
    "text,want",
    [
        (ROME_LLAMA_7B, dict(ROME_COMMON, layer=5, v_num_grad_steps=25, v_weight_decay=1e-3)),
        (ROME_GPT2_XL, dict(ROME_COMMON, layer=17, v_num_grad_steps=20, v_weight_decay=0.5)),
    ],
    ids=["llama-7b", "gpt2-xl"],
)
def test_easyedit_rome_files_give_what_easyedit_runs(tmp_path, text, want):
    hp, report = load(rome, text, tmp_path)
    assert mismatches(hp, want) == {}
    # layers [L] -> layer L; v_loss_layer -> the model's output, where EasyEdit's ROME reads the
    # loss whatever the file says; samples -> tokens. Each conversion said, none a bare rename.
    assert set(report.converted) == {"layers", "v_loss_layer", "mom2_n_samples"} and report.renamed == {}
    assert report.unknown == [] and {"rewrite_module_tmp", "ln_f_module", "device", "stats_dir"} <= set(report.ignored)
    lines = "\n".join(report.lines())
    assert (
        "converted: mom2_n_samples 100,000 (text samples) -> mom2_n_tokens 13,900,000 (× 139 tokens per sample"
    ) in lines
    assert f"converted: layers [{want['layer']}] -> layer {want['layer']}" in lines


def test_a_rome_file_for_a_deeper_model_loads_on_the_default_model(tmp_path, handle):
    # Llama-7B's v_loss_layer 31 does not exist in SmolLM2's 30 layers; EasyEdit's ROME never
    # reads the loss there anyway, so the file loads and the loss is the model's own output.
    hp, _ = load(rome, ROME_LLAMA_7B, tmp_path, handle)
    assert hp.layer == 5 and hp.v_loss_layer is None


def test_a_rome_file_listing_several_layers_is_refused_with_the_reason(tmp_path):
    # EasyEdit's ROME writes each listed layer in turn; editlab's writes one, so no silent first.
    with pytest.raises(ValueError, match="writes each listed layer in turn"):
        load(rome, ROME_LLAMA_7B.replace("layers: [5]", "layers: [5, 6]"), tmp_path)


BATCH_COMMON = dict(
    layer_selection="all",
    fact_token="subject_last",
    v_lr=0.5,
    kl_factor=0.0625,
    loss_stop=REFERENCE_STOP,
    mom2_adjustment=True,
    mom2_dataset="wikipedia",
    mom2_n_tokens=TOKENS_100K,
    mom2_dtype="float32",
    context_template_length_params=[[10, 5]],  # EasyEdit's MEMIT family: fixed, no key
    negation_weight=0.0,
)
LLAMA = dict(layers=[4, 5, 6, 7, 8], v_loss_layer=31)
GPT2_XL = dict(layers=[13, 14, 15, 16, 17], v_loss_layer=47, v_num_grad_steps=20, v_weight_decay=0.5)


@pytest.mark.parametrize(
    "text,want",
    [
        (
            MEMIT_LLAMA_7B,
            dict(
                BATCH_COMMON,
                **LLAMA,
                clamp_norm_factor=4.0,
                v_num_grad_steps=25,
                v_weight_decay=1e-3,
                mom2_update_weight=15000.0,
            ),
        ),
        (MEMIT_GPT2_XL, dict(BATCH_COMMON, **GPT2_XL, clamp_norm_factor=0.75, mom2_update_weight=20000.0)),
    ],
    ids=["llama-7b", "gpt2-xl"],
)
def test_easyedit_memit_files_give_what_easyedit_runs(tmp_path, text, want):
    hp, report = load(memit, text, tmp_path)
    # λ as the file says (absolute): editlab's scaling of λ to the key dimension is only its default.
    assert mismatches(hp, want) == {}
    assert set(report.converted) == {"mom2_n_samples"} and report.renamed == {} and report.unknown == []
    assert "EasyEdit's 'wikipedia' samples are whole articles" in report.converted["mom2_n_samples"]


@pytest.mark.parametrize(
    "text,want",
    [
        (
            ALPHAEDIT_LLAMA3_8B,
            dict(
                BATCH_COMMON,
                **LLAMA,
                clamp_norm_factor=0.75,
                v_num_grad_steps=25,
                v_lr=0.1,
                v_weight_decay=0.5,
                nullspace_threshold=2e-2,
                nullspace_energy=None,
                L2=1.0,
            ),
        ),
        (
            ALPHAEDIT_GPT2_XL,
            dict(
                BATCH_COMMON,
                **GPT2_XL,
                clamp_norm_factor=0.75,
                nullspace_threshold=2e-2,
                nullspace_energy=None,
                L2=10.0,
            ),
        ),
    ],
    ids=["llama3-8b", "gpt2-xl"],
)
def test_easyedit_alphaedit_files_give_what_easyedit_runs(tmp_path, text, want):
    hp, report = load(alphaedit, text, tmp_path)
    assert mismatches(hp, want) == {}
    # The null space by the absolute eigenvalue threshold, α = L2 whatever the keys' spectrum.
    assert hp.rule() == ("absolute", 0.02) and hp.alpha(123.0) == want["L2"]
    assert set(report.converted) == {"mom2_n_samples"} and report.unknown == []
    # Keys EasyEdit's AlphaEdit files carry but it does not use (λ), or a pickled projection: said why.
    assert set(report.not_used) == {"P_loc", "mom2_update_weight"}
    assert any(line.startswith("not used: mom2_update_weight (") for line in report.lines())


def test_easyedit_pmet_file_gives_what_easyedit_runs(tmp_path):
    hp, report = load(pmet, PMET_LLAMA_7B, tmp_path)
    want = dict(
        BATCH_COMMON,
        **LLAMA,
        clamp_norm_factor=1.0,
        v_num_grad_steps=20,
        v_weight_decay=0.5,
        mom2_update_weight=15000.0,
        nll_loss_factor=1.0,
        rewrite_modules=["mlp"],
    )
    assert mismatches(hp, want) == {}
    assert set(report.converted) == {"mom2_n_samples", "rewrite_module_tmps"} and report.unknown == []
    assert (
        report.converted["rewrite_module_tmps"]
        == "rewrite_module_tmps ['model.layers.{}.mlp.down_proj'] -> rewrite_modules ['mlp']"
    )
