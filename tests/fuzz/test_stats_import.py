"""editlab.model.stats_import.read_mom2 on any .npz: arrays of any shape and dtype (floats, whole numbers,
complex, bool, text, object arrays pickled in), symmetric, non-symmetric and non-PSD matrices,
NaN and infinities, a missing key, the file cut short, bytes flipped, random bytes. Read or refused
with a bounded ValueError that names the file."""

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from editlab.model.stats_import import read_mom2

from .strategies import accepted_or_refused, examples, settings

NAME = "model.layers.1.mlp.down_proj_float32_mom2_1000.npz"
DTYPES = [
    "float64",
    "float32",
    "float16",
    ">f8",
    "int64",
    "uint8",
    "int8",
    "complex128",
    "bool",
    "<U3",
    "S2",
    "datetime64[s]",
    "timedelta64[s]",
    "V8",
    [("a", "f8"), ("b", "i4")],
]


@st.composite
def matrix(draw, d: int) -> np.ndarray:
    """A d×d second moment, or something near one: Σ k kᵀ (PSD), a scaled one, non-symmetric,
    negative definite, NaN or infinite entries, huge or tiny values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    k = rng.standard_normal((d + draw(st.integers(0, 4)), d))
    m = k.T @ k
    kind = draw(
        st.sampled_from(["psd", "psd", "scaled", "asym", "negative", "nan", "inf", "zero", "huge", "tiny", "rank1"])
    )
    if kind == "scaled":
        m = m * draw(st.sampled_from([1e-300, 1e-30, 1e30, 1e300]))
    elif kind == "asym":
        m = m + rng.standard_normal((d, d))
    elif kind == "negative":
        m = -m
    elif kind in ("nan", "inf"):
        m[draw(st.integers(0, d - 1)), draw(st.integers(0, d - 1))] = np.nan if kind == "nan" else np.inf
    elif kind == "zero":
        m = np.zeros((d, d))
    elif kind == "huge":
        m = np.full((d, d), 1e308)
    elif kind == "tiny":
        m = np.full((d, d), 5e-324)
    elif kind == "rank1":
        m = np.outer(k[0], k[0])
    return m


@st.composite
def arrays(draw, d: int) -> np.ndarray:
    """Anything an .npz may hold under a key."""
    kind = draw(st.sampled_from(["matrix", "matrix", "shape", "object", "scalar"]))
    if kind == "matrix":
        return draw(matrix(d))
    if kind == "object":
        return np.array(draw(st.sampled_from([[1, "a", None], [[1.0] * d] * d, [{"a": 1}], [b"x", 2.5]])), dtype=object)
    if kind == "scalar":
        return np.array(draw(st.one_of(st.integers(-2, 10**6), st.floats(), st.sampled_from([2**63 - 1, 2**64 - 1]))))
    shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, d, d + 1]), max_size=3)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    return np.ones(shape, dtype=dtype) if dtype.kind in "fiucb" else np.zeros(shape, dtype=dtype)


@st.composite
def npz_bytes(draw, d: int) -> bytes:
    if draw(st.sampled_from([False] * 9 + [True])):
        return draw(st.binary(max_size=400))
    content = {
        "mom2.mom2": draw(matrix(d)),
        "mom2.count": np.array(draw(st.sampled_from([1000, 1, 0, -5, 2.5, 1e300]))),
    }
    for key in draw(st.lists(st.sampled_from(["mom2.mom2", "mom2.count", "mom2.mean", "other"]), max_size=2)):
        if draw(st.booleans()):
            content.pop(key, None)
        else:
            content[key] = draw(arrays(d))
    buf = io.BytesIO()
    (np.savez_compressed if draw(st.booleans()) else np.savez)(buf, **content)
    data = buf.getvalue()
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "flip"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        for at in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


@st.composite
def mom2_file(draw) -> tuple[int, int, bytes]:
    d = draw(st.integers(4, 8))
    file_d = d if draw(st.sampled_from([True, True, True, False])) else draw(st.integers(1, 9))
    return d, draw(st.integers(0, 40)), draw(npz_bytes(file_d))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # a 1e308 matrix, refused as not PSD
@settings(max_examples=examples(300))
@given(mom2_file())
def test_any_npz_is_read_or_refused_naming_the_file(case):
    d_in, layer, data = case
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / NAME
        f.write_bytes(data)
        out, _ = accepted_or_refused(read_mom2, f, d_in, layer, names=[NAME])
    if out is None:
        return
    mom2, count = out
    assert mom2.dtype == np.float64 and mom2.shape == (d_in, d_in) and np.isfinite(mom2).all()
    assert np.allclose(mom2, mom2.T, rtol=1e-5, atol=1e-6 * (float(np.abs(mom2).max()) or 1.0))
    assert isinstance(count, int) and count >= 1
