"""Property-based tests (hypothesis) over request fields, the tokenizer, the decoder and the
per-document state cache."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from completiond.core.errors import InvalidRequest
from completiond.core.tokenizer import UNK_ID, CharTokenizer
from completiond.daemon.decoder import Decoder, DecoderConfig, Query
from completiond.daemon.engine import State
from completiond.daemon.service import RequestLimits, validate
from completiond.daemon.state_cache import ContextConfig, DocumentStates
from completiond.v1 import completion_pb2 as pb

TOK = CharTokenizer.fit(["def f(x):\n\treturn x  # é"])
LIMITS = RequestLimits()
int32 = st.integers(-(2**31), 2**31 - 1)
float32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@given(n=int32, max_chars=int32, temperature=float32, min_confidence=float32, prefix=st.text())
def test_validation_accepts_exactly_the_documented_ranges(
    n: int, max_chars: int, temperature: float, min_confidence: float, prefix: str
) -> None:
    request = pb.CompleteRequest(
        prefix=prefix,
        n=n,
        max_chars=max_chars,
        temperature=temperature,
        min_confidence=min_confidence,
    )
    ok = (
        0 <= n <= 16
        and 0 <= max_chars <= 400
        and math.isfinite(request.temperature)
        and 0 <= request.temperature <= 5
        and math.isfinite(request.min_confidence)
        and 0 <= request.min_confidence <= 1
    )
    try:
        query = validate(request, LIMITS, default_max_chars=80)
    except InvalidRequest:
        assert not ok
        return
    assert ok
    assert 1 <= query.n <= 16 and 1 <= query.max_chars <= 400


@given(st.text())
def test_tokenizer_encodes_every_string(text: str) -> None:
    ids = TOK.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert ((ids >= 0) & (ids < TOK.vocab_size)).all()
    decoded = TOK.decode(ids)
    assert len(decoded) == len(text)
    for original, back, i in zip(text, decoded, ids, strict=True):
        assert back == (original if i != UNK_ID else "\ufffd")


class TinyRnn:
    """A deterministic numpy recurrent model: its state depends on the whole history, so a
    wrong cached state gives different logits."""

    def __init__(self, vocab: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.vocab_size = vocab
        self.embed = rng.normal(size=(vocab, 8)).astype(np.float32)
        self.out = rng.normal(size=(8, vocab)).astype(np.float32) * 3

    def zero_state(self, batch: int) -> State:
        return np.zeros((1, batch, 8), np.float32), np.zeros((1, batch, 8), np.float32)

    def run(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        h = state[0][0].copy()  # [B,8]
        steps = []
        for t in range(ids.shape[1]):
            h = np.tanh(0.7 * h + self.embed[ids[:, t]])
            steps.append(h @ self.out)
        logits = np.stack(steps, axis=1)  # [B,T,V]
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        return logp.astype(np.float32), (h[None], state[1])


alphabet = st.sampled_from(list("ab(): \n\tx="))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 5),
    doc=st.text(alphabet, min_size=1, max_size=300),
    cursors=st.lists(st.integers(1, 300), min_size=1, max_size=8),
    edits=st.lists(st.tuples(st.integers(0, 300), st.text(alphabet, max_size=3)), max_size=4),
)
def test_cached_states_always_match_reading_from_scratch(
    seed: int, doc: str, cursors: list[int], edits: list[tuple[int, str]]
) -> None:
    engine = TinyRnn(TOK.vocab_size, seed)
    states = DocumentStates(engine, TOK, ContextConfig(cold_chars=10_000, checkpoint_every=16))
    for cursor, (where, insert) in zip(cursors, edits + [(0, "")] * len(cursors), strict=False):
        prefix = doc[: min(cursor, len(doc))]
        logits, _ = states.read(prefix, "doc")
        fresh, _ = engine.run(TOK.encode(prefix)[None, :], engine.zero_state(1))
        np.testing.assert_allclose(logits, fresh[:, -1, :], rtol=1e-5, atol=1e-5)
        doc = doc[:where] + insert + doc[where:]  # the user edits somewhere


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 50),
    prefix=st.text(alphabet, max_size=40),
    suffix=st.text(alphabet, max_size=10),
    n=st.integers(1, 16),
    max_chars=st.integers(1, 40),
    temperature=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_decoder_answers_are_well_formed(
    seed: int, prefix: str, suffix: str, n: int, max_chars: int, temperature: float
) -> None:
    engine = TinyRnn(TOK.vocab_size, seed)
    decoder = Decoder(engine, TOK, DocumentStates(engine, TOK, ContextConfig()), DecoderConfig())
    query = Query(prefix, suffix, n, max_chars, temperature, seed=seed)
    candidates = decoder.complete(query)
    assert len(candidates) <= n
    assert len({c.text for c in candidates}) == len(candidates)
    confidences = [c.confidence for c in candidates]
    assert confidences == sorted(confidences, reverse=True)
    for c in candidates:
        assert c.text and c.text == c.text.rstrip()
        assert "\n" not in c.text and len(c.text) <= max_chars
        assert 0.0 <= c.confidence <= 1.0
