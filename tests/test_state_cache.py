"""The per-document state cache, on a real (random) ONNX model wrapped to count characters read."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from completiond.core.errors import Cancelled
from completiond.core.tokenizer import CharTokenizer
from completiond.daemon.decoder import Decoder, Query
from completiond.daemon.engine import OnnxEngine, State
from completiond.daemon.state_cache import ContextConfig, DocumentStates, common_prefix_length
from completiond.training.export import export_onnx
from completiond.training.model import CharLSTM, ModelConfig

TOK = CharTokenizer.fit([""])


class CountingEngine:
    """A real engine that counts the characters it was given (batch 1 reads), and sets
    `cancelled` once it has read `cancel_after` (a client giving up while the engine runs)."""

    def __init__(self, inner: OnnxEngine) -> None:
        self.inner = inner
        self.vocab_size = inner.vocab_size
        self.chars = 0
        self.cancel_after = sys.maxsize
        self.cancelled = threading.Event()

    def zero_state(self, batch: int) -> State:
        return self.inner.zero_state(batch)

    def run(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        self.chars += ids.shape[1]
        if self.chars >= self.cancel_after:
            self.cancelled.set()
        return self.inner.run(ids, state)


@pytest.fixture(scope="module")
def onnx_engine(tmp_path_factory: pytest.TempPathFactory) -> OnnxEngine:
    torch.manual_seed(0)
    model = CharLSTM(ModelConfig(vocab_size=TOK.vocab_size, hidden_size=32, embed_dim=8))
    path = tmp_path_factory.mktemp("m") / "model.onnx"
    export_onnx(model, path)
    return OnnxEngine(path, TOK.vocab_size)


def make(onnx_engine: OnnxEngine, **config: int) -> tuple[DocumentStates, CountingEngine]:
    engine = CountingEngine(onnx_engine)
    return DocumentStates(engine, TOK, ContextConfig(**config)), engine


def direct(engine: OnnxEngine, text: str) -> np.ndarray:
    logits, _ = engine.run(TOK.encode(text)[None, :], engine.zero_state(1))
    return logits[:, -1, :]


DOC = "".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(40))  # 1,000+ chars


def test_typing_on_reads_only_the_new_character(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, cold_chars=10_000)
    states.read(DOC[:500], "a.py")
    assert engine.chars == 500
    logits, _ = states.read(DOC[:501], "a.py")
    assert engine.chars == 501
    np.testing.assert_allclose(logits, direct(onnx_engine, DOC[:501]), atol=1e-5)
    states.read(DOC[:501], "a.py")  # the same prefix again costs nothing
    assert engine.chars == 501 and states.hits == 2


def test_an_edit_earlier_resumes_from_the_nearest_checkpoint(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, cold_chars=10_000, checkpoint_every=64)
    states.read(DOC[:900], "a.py")
    edited = DOC[:300] + "X" + DOC[301:900]
    before = engine.chars
    logits, _ = states.read(edited, "a.py")
    assert engine.chars - before == 900 - 256  # from the checkpoint at 256, not from 0
    np.testing.assert_allclose(logits, direct(onnx_engine, edited), atol=1e-5)
    before = engine.chars
    logits, _ = states.read(edited[:130], "a.py")  # cursor moved back (or backspaces)
    assert engine.chars - before == 130 - 128
    np.testing.assert_allclose(logits, direct(onnx_engine, edited[:130]), atol=1e-5)


def test_a_new_document_reads_a_bounded_tail_from_a_line_start(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, cold_chars=200)
    logits, _ = states.read(DOC, "big.py")
    assert 150 <= engine.chars <= 200
    tail = DOC[-engine.chars :]
    assert DOC[-engine.chars - 1] == "\n"
    np.testing.assert_allclose(logits, direct(onnx_engine, tail), atol=1e-5)


def test_without_a_document_key_nothing_is_cached(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, cold_chars=300)
    states.read(DOC[:400], "")
    states.read(DOC[:401], "")
    assert len(states) == 0 and engine.chars > 500


def test_other_text_under_the_same_key_is_read_afresh(onnx_engine: OnnxEngine) -> None:
    states, _ = make(onnx_engine, cold_chars=10_000)
    states.read("import os\nprint(os.sep)", "doc")
    other = "class A:\n    pass"
    logits, _ = states.read(other, "doc")
    np.testing.assert_allclose(logits, direct(onnx_engine, other), atol=1e-5)


def test_warm_makes_the_first_completion_cheap(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, warm_chars=5_000, checkpoint_every=64)
    states.warm(DOC, "w.py")
    before = engine.chars
    states.read(DOC[:700], "w.py")  # a completion in the middle of the opened document
    assert engine.chars - before <= 64


def test_memory_stays_within_the_budget(onnx_engine: OnnxEngine) -> None:
    states, _ = make(onnx_engine, cold_chars=1_000, max_bytes=40_000)
    for i in range(30):
        states.read(DOC[: 600 + i], f"doc{i}.py")
    assert 1 <= len(states) < 30
    assert states._bytes <= 40_000
    assert "doc29.py" in states._entries  # the most recent survives


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [("", "", 0), ("abc", "abd", 2), ("abc", "abc", 3), ("ab", "abc", 2), ("x", "y", 0)],
)
def test_common_prefix_length(a: str, b: str, n: int) -> None:
    assert common_prefix_length(a, b) == n


def test_common_prefix_length_on_long_strings() -> None:
    a = "q" * 100_000
    assert common_prefix_length(a, a[:77_777] + "z" + a[77_778:]) == 77_777


def test_cache_is_per_model(fixture_repo: Path, trained_store: object) -> None:
    from completiond.daemon.model_slot import ModelSlot

    slot = ModelSlot(trained_store)  # type: ignore[arg-type]
    first = slot.load_current()
    first.decoder.states.read("x = 1", "doc")
    second = slot.load_current()
    assert len(first.decoder.states) == 1 and len(second.decoder.states) == 0


BIG = "".join(f"def g{i}(y):\n    return y + {i}\n" for i in range(8_000))  # 200,000+ chars


def test_a_jump_through_a_huge_file_reads_a_fresh_tail(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, cold_chars=512, catch_up_chars=2_048)
    states.read(BIG[:300], "big.py")  # near the top, then near the bottom
    before = engine.chars
    logits, _ = states.read(BIG[:190_000], "big.py")
    assert engine.chars - before <= 512
    tail = BIG[190_000 - (engine.chars - before) : 190_000]
    np.testing.assert_allclose(logits, direct(onnx_engine, tail), atol=1e-5)
    before = engine.chars  # a short way on still catches up, from the state kept
    logits, _ = states.read(BIG[:191_500], "big.py")
    assert engine.chars - before == 1_500
    np.testing.assert_allclose(logits, direct(onnx_engine, tail + BIG[190_000:191_500]), atol=1e-5)


def test_a_cancelled_read_stops_and_keeps_what_it_read(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, cold_chars=100, catch_up_chars=5_000, checkpoint_every=64)
    states.read(BIG[:100], "a.py")
    engine.cancel_after = engine.chars + 200
    with pytest.raises(Cancelled):
        states.read(BIG[:1_100], "a.py", engine.cancelled)  # a long catch-up
    assert engine.chars <= 100 + 256
    engine.cancel_after, engine.cancelled = sys.maxsize, threading.Event()
    before = engine.chars
    logits, _ = states.read(BIG[:1_100], "a.py")  # the next request goes on from there
    assert engine.chars - before < 1_000 - 100
    np.testing.assert_allclose(logits, direct(onnx_engine, BIG[:1_100]), atol=1e-5)


def test_a_cancelled_warm_stops(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, warm_chars=16_384, checkpoint_every=64)
    engine.cancel_after = 640
    with pytest.raises(Cancelled):
        states.warm(BIG, "w.py", engine.cancelled)
    assert engine.chars <= 640 + 64 and len(states) == 0


def test_a_document_typed_through_keeps_a_bounded_state(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, cold_chars=500, warm_chars=1_000, checkpoint_every=64)
    for end in range(500, 20_000, 400):
        logits, _ = states.read(BIG[:end], "t.py")
        entry = states._entries["t.py"]
        assert len(entry.text) <= 2_000 and len(entry.states) <= 2_000 // 64 + 1
    np.testing.assert_allclose(logits, direct(onnx_engine, BIG[:end]), atol=1e-5)  # no tail
    assert engine.chars == end  # read once, from the top
    before = engine.chars  # an edit inside what is kept resumes from its checkpoint
    edited = BIG[: end - 500] + "X" + BIG[end - 499 : end]
    logits, _ = states.read(edited, "t.py")
    assert engine.chars - before <= 500 + 64
    np.testing.assert_allclose(logits, direct(onnx_engine, edited), atol=1e-5)


def test_keys_count_in_the_budget(onnx_engine: OnnxEngine) -> None:
    states, _ = make(onnx_engine, cold_chars=100, max_bytes=200_000)
    for i in range(40):
        states.read(DOC[:100], f"{i:05d}" + "k" * 20_000)  # a client's long document ids
    held = sum(sys.getsizeof(k) + e.nbytes() for k, e in states._entries.items())
    assert held <= 200_000 and states._bytes == held


def test_an_entry_keeps_only_its_last_logits(onnx_engine: OnnxEngine) -> None:
    states, _ = make(onnx_engine, cold_chars=1_000)
    states.read(DOC[:900], "a.py")
    states.read(DOC[:901], "a.py")
    logits = states._entries["a.py"].logits
    assert logits.flags.owndata and logits.shape == (1, TOK.vocab_size)


def test_a_completion_given_up_stops_reading_the_prefix(onnx_engine: OnnxEngine) -> None:
    states, engine = make(onnx_engine, cold_chars=100, catch_up_chars=5_000)
    decoder = Decoder(engine, TOK, states)
    decoder.complete(Query(BIG[:100], document="a.py"))
    engine.cancel_after = engine.chars + 200
    with pytest.raises(Cancelled):
        decoder.complete(Query(BIG[:4_000], document="a.py", cancelled=engine.cancelled))
    assert engine.chars < 1_000
