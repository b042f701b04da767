"""Import second-moment statistics computed by EasyEdit / ROME / MEMIT into editlab's cache.

Those tools save, per layer, ``{layer_name}_{dtype}_mom2_{N}.npz`` (e.g.
``model.layers.4.mlp.down_proj_float32_mom2_100000.npz`` under ``{dataset}_stats/``) holding the
running sum ``mom2.mom2`` = Σ k kᵀ and the key count ``mom2.count``; C = mom2 / count. Importing
writes C where :func:`editlab.model.stats.second_moments` looks for a corpus named
``easyedit:{dataset}`` with ``n_tokens = N``, so a method whose ``mom2_dataset`` is that dataset
name and whose ``mom2_n_samples`` is N (``mom2_n_tokens`` its token equivalent, N × the mean
tokens per sample, :func:`editlab.model.stats.easyedit_samples_to_tokens`: the entry is registered under
that token count) uses the imported matrices and skips the statistics pass. Files are read with
``allow_pickle=False``: nothing in them runs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from editlab.core import paths
from editlab.model.stats import Corpus, cache_path, easyedit_samples_to_tokens, resolve_corpus

FILE_RE = re.compile(r"^(?P<module>.+?)_(?P<dtype>float16|bfloat16|float32|float64)_mom2(?:_(?P<n>\d+))?\.npz$")
PREFIX = "easyedit:"


@dataclass(frozen=True)
class ImportedStat:
    """One imported layer: where it came from and where it now lives in the cache."""

    layer: int
    module: str
    source: str  # the .npz file
    cached: str  # the cache file second_moments reads
    dataset: str
    n_tokens: int  # what the entry is registered under: n_samples × the mean tokens per sample
    dtype: str
    count: int  # the keys the file actually summed
    n_samples: int | None = None  # EasyEdit's N (text samples), from the file name


def parse_name(filename: str) -> tuple[str, str, int | None]:
    """``(module, dtype, N)`` from an EasyEdit statistics file name; ValueError if it is not one."""
    m = FILE_RE.match(Path(filename).name)
    if not m:
        raise ValueError(
            f"{Path(filename).name!r} is not an EasyEdit/ROME statistics file name "
            "(expected '{layer_name}_{dtype}_mom2_{N}.npz', "
            "e.g. 'model.layers.4.mlp.down_proj_float32_mom2_100000.npz')"
        )
    return m["module"], m["dtype"], int(m["n"]) if m["n"] else None


def corpus_for(dataset: str) -> Corpus:
    """The corpus identity imported statistics are registered under (no text: never recomputed)."""
    return Corpus(ident=PREFIX + dataset, source="imported", texts=())


def _manifest_path(handle, dataset: str) -> Path:
    return paths.cache_dir("stats", handle.fingerprint) / f"imported-{paths.key_digest(dataset=dataset)}.json"


def manifest(handle, dataset: str) -> dict:
    """What has been imported for this model under ``dataset``: {layer: {n_tokens, n_samples, dtype, source, count}}."""
    f = _manifest_path(handle, dataset)
    if not f.exists():
        return {}
    try:
        return {int(k): v for k, v in json.loads(f.read_text()).items()}
    except (ValueError, AttributeError):
        return {}


def _layer_of(handle, module: str) -> int:
    for i in range(handle.arch.n_layers):
        if handle.arch.mlp_out_proj(i) == module:
            return i
    raise ValueError(
        f"statistics file names module {module!r}, which is not an MLP output projection of this "
        f"{handle.arch.family} model (expected e.g. {handle.arch.mlp_out_proj(0)!r}): "
        "the file is for another architecture"
    )


def _files(sources) -> list[Path]:
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.npz") if FILE_RE.match(q.name))
            if not found:
                raise FileNotFoundError(f"no '*_mom2_*.npz' statistics files under {str(p)!r}")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"statistics file or folder {str(p)!r} does not exist")
    return out


def _npy_header(zf, name: str, f: Path) -> tuple[tuple, np.dtype]:
    """The shape and dtype an array in an .npz declares, read from its header without loading it."""
    with zf.open(name + ".npy") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    return tuple(shape), np.dtype(dtype)


def read_mom2(f: Path, d_in: int, layer: int) -> tuple[np.ndarray, int]:
    """(Σ k kᵀ as float64 [d_in, d_in], count) from a ROME/EasyEdit ``*_mom2_*.npz``, checked before
    and after loading: a zip holding ``mom2.mom2`` and ``mom2.count``, the matrix's declared shape
    and real numeric type read from its header first (so a header declaring a huge or object
    array is refused, never allocated), then finite, symmetric and positive semi-definite, with a
    positive whole count. Every error names the file."""
    import zipfile
    import zlib

    where = f"{f.name} (layer {layer})"
    try:
        with zipfile.ZipFile(f) as zf:
            names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            missing = [k for k in ("mom2.mom2", "mom2.count") if k not in names]
            if missing:
                raise ValueError(
                    f"{where}: missing {', '.join(missing)} (found {', '.join(sorted(names)[:10]) or 'no arrays'}); "
                    "not a ROME/EasyEdit mom2 file"
                )
            for key, want in (("mom2.mom2", (d_in, d_in)), ("mom2.count", None)):
                shape, dtype = _npy_header(zf, key, f)
                if dtype.kind not in "fiu":
                    raise ValueError(f"{where}: {key} holds {dtype} values; a mom2 file holds real numbers")
                if want is not None and shape != want:
                    raise ValueError(
                        f"{where}: {key} has shape {shape}, but layer {layer}'s keys have dimension "
                        f"{d_in} (expected {want}); the file is for another model"
                    )
                if want is None and int(np.prod(shape)) != 1:
                    raise ValueError(f"{where}: {key} has shape {shape}; expected one number (the sample count)")
        with np.load(f, allow_pickle=False) as data:
            mom2 = np.asarray(data["mom2.mom2"], dtype=np.float64)
            count_raw = float(np.asarray(data["mom2.count"]).reshape(-1)[0])
    except zipfile.BadZipFile:
        raise ValueError(f"{where}: not an .npz (zip) file; give the *_mom2_*.npz that ROME/EasyEdit wrote") from None
    except (OSError, EOFError, KeyError, zlib.error, NotImplementedError, RuntimeError) as e:
        # a damaged deflate stream (zlib), or a zip member encrypted or packed in a way zipfile cannot read
        raise ValueError(f"{where}: unreadable ({type(e).__name__}: {str(e)[:200]}); the file is damaged") from None
    except ValueError as e:
        if str(e).startswith(where):
            raise
        raise ValueError(f"{where}: unreadable ({str(e)[:200]}); the file is damaged or not a mom2 file") from None
    if not (np.isfinite(count_raw) and count_raw > 0 and float(count_raw).is_integer()):
        raise ValueError(f"{where}: the sample count {count_raw:g} is not a positive whole number; the file is damaged")
    if not np.isfinite(mom2).all():
        raise ValueError(f"{where}: mom2 holds non-finite values (NaN or infinity); the file is damaged")
    scale = float(np.abs(mom2).max()) or 1.0
    if not np.allclose(mom2, mom2.T, rtol=1e-5, atol=1e-6 * scale):
        raise ValueError(f"{where}: mom2 is not symmetric; a second moment Σ k kᵀ is, so the file is damaged")
    c = torch.from_numpy((mom2 + mom2.T) / 2)
    _, info = torch.linalg.cholesky_ex(c + 1e-6 * scale * torch.eye(d_in, dtype=c.dtype))
    if int(info) != 0:
        raise ValueError(
            f"{where}: mom2 is not positive semi-definite (a second moment Σ k kᵀ is); the file is "
            "damaged or not a mom2 file"
        )
    return mom2, int(count_raw)


def import_easyedit_stats(
    handle,
    sources: str | os.PathLike | Iterable,
    dataset: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[ImportedStat]:
    """Import EasyEdit/ROME ``*_mom2_*.npz`` files (a file, a folder searched recursively, or a list).

    ``dataset`` names the statistics (default: the folder name without EasyEdit's ``_stats``
    suffix, e.g. ``wikipedia``). Each file must name an MLP output projection of ``handle``'s model
    and hold a square [d_in, d_in] ``mom2.mom2`` with a positive ``mom2.count``.
    """
    files = _files(sources)
    done: list[ImportedStat] = []
    for i, f in enumerate(files):
        done.append(_import_file(handle, f, dataset))
        if progress:
            progress(i + 1, len(files), f"imported {f.name}")
    return done


def _import_file(handle, f: Path, dataset: str | None) -> ImportedStat:
    """One ``*_mom2_*.npz``: read and checked, C = mom2 / count written to the statistics cache, and
    booked in the dataset's manifest."""
    from safetensors.torch import save_file

    module, fdtype, n = parse_name(f.name)
    layer = _layer_of(handle, module)
    name = (
        dataset
        or (f.parent.name[: -len("_stats")] if f.parent.name.endswith("_stats") else f.parent.name)
        or "imported"
    )
    if n is None:
        raise ValueError(
            f"{f.name}: no sample count in the name; rename it to '..._mom2_<N>.npz' with the N it was computed on"
        )
    d_in = handle.mlp_out_weight(layer).shape[1]
    mom2, count = read_mom2(f, d_in, layer)
    dtype = "float64" if fdtype == "float64" else "float32"
    c = torch.from_numpy(mom2 / count).to(torch.float64 if dtype == "float64" else torch.float32).contiguous()
    corpus = corpus_for(name)
    tokens = easyedit_samples_to_tokens(n)  # as the importer converts a YAML's mom2_n_samples N
    target = cache_path(handle, layer, corpus.ident, tokens, dtype)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    save_file(
        {"mom2": c, "count": torch.tensor([count])},
        str(tmp),
        metadata={"corpus": corpus.ident, "source": "imported", "file": f.name},
    )
    os.replace(tmp, target)
    entries = manifest(handle, name)
    entries[layer] = {"n_tokens": tokens, "n_samples": n, "dtype": dtype, "source": str(f), "count": count}
    paths.atomic_write_bytes(_manifest_path(handle, name), json.dumps({str(k): v for k, v in entries.items()}).encode())
    return ImportedStat(
        layer=layer,
        module=module,
        source=str(f),
        cached=str(target),
        dataset=name,
        n_tokens=tokens,
        dtype=dtype,
        count=count,
        n_samples=n,
    )


def resolve_stats_corpus(
    handle,
    dataset: str | None,
    default_corpus: str | None,
    layers: list[int],
    n_tokens: int,
    dtype: str = "float32",
    online: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    sample_corpus: bool = False,
) -> tuple[Corpus, str | None]:
    """The corpus a method's statistics come from, and a note when the request was not met as asked.

    ``dataset`` (a method's ``mom2_dataset``): a corpus file path, or the name of imported
    statistics (EasyEdit's ``mom2_dataset: wikipedia`` after :func:`import_easyedit_stats`). Neither
    -> the default corpus (``default_corpus`` path, else WikiText online, else model-sampled) with a
    note saying so; imported statistics that cover only some layers or another N are an error.
    """
    if dataset and Path(dataset).exists():
        return resolve_corpus(handle, dataset, n_tokens, online=online, progress=progress), None
    note = None
    if dataset:
        corpus = corpus_for(dataset)
        have = [l for l in layers if cache_path(handle, l, corpus.ident, n_tokens, dtype).exists()]
        if len(have) == len(set(layers)):
            return corpus, None
        entries = manifest(handle, dataset)
        if entries:
            missing = sorted(set(layers) - set(have))
            raise ValueError(
                f"imported statistics {dataset!r} do not cover layer(s) {missing} "
                f"with mom2_n_tokens={n_tokens:,}, {dtype} "
                f"(imported: "
                + ", ".join(
                    f"layer {k}: "
                    + (f"N={v['n_samples']:,} samples = " if v.get("n_samples") else "")
                    + f"{v['n_tokens']:,} tokens, {v['dtype']}"
                    for k, v in sorted(entries.items())
                )
                + (
                    "); import the missing files, "
                    "or set mom2_n_samples to the imported N (or mom2_n_tokens to its tokens)"
                )
            )
        note = (
            f"mom2_dataset {dataset!r} is neither a corpus file nor imported statistics for this model; "
            "used the default corpus"
        )
    return resolve_corpus(
        handle,
        default_corpus,
        n_tokens,
        online=online,
        progress=progress,
        layers=layers,
        dtype=dtype,
        sample_corpus=sample_corpus,
    ), note
