"""The decoder on a fake engine whose next-character probabilities are known exactly."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from completiond.completion.file_cache import FileCacheConfig
from completiond.completion.retrieval import DEFAULT_WEIGHTS, RetrievalConfig, Retriever
from completiond.core.errors import Cancelled
from completiond.core.tokenizer import CharTokenizer
from completiond.daemon.decoder import Decoder, DecoderConfig, Query, postprocess
from completiond.daemon.engine import State
from completiond.daemon.state_cache import ContextConfig, DocumentStates


class BigramEngine:
    """Next-character distribution depends on the last character only: p(next | last)."""

    def __init__(self, tokenizer: CharTokenizer, table: dict[str, dict[str, float]]) -> None:
        self.vocab_size = tokenizer.vocab_size
        self.logits = np.full((self.vocab_size, self.vocab_size), -1e4, dtype=np.float32)
        for last, nexts in table.items():
            for nxt, p in nexts.items():
                self.logits[tokenizer.encode(last)[0], tokenizer.encode(nxt)[0]] = math.log(p)
        self.calls = 0

    def zero_state(self, batch: int) -> State:
        return np.zeros((1, batch, 1), np.float32), np.zeros((1, batch, 1), np.float32)

    def run(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        assert ids.dtype == np.int64 and ids.ndim == 2 and state[0].shape[1] == ids.shape[0]
        self.calls += 1
        return self.logits[ids], state  # [B,T,V]


TOK = CharTokenizer.fit([""])


def decoder(
    table: dict[str, dict[str, float]],
    beam_width: int = 4,
    start_below: float | None = None,
    retriever: Retriever | None = None,
) -> Decoder:
    engine = BigramEngine(TOK, table)
    states = DocumentStates(engine, TOK, ContextConfig())
    if retriever is None and start_below:  # the model's start without any copied line
        retriever = Retriever(None, RetrievalConfig(enabled=False))
    gate = {} if start_below is None else {"start_below": start_below}
    return Decoder(engine, TOK, states, DecoderConfig(beam_width=beam_width, **gate), retriever)


CHAIN = {"a": {"b": 0.9, "z": 0.1}, "b": {"c": 0.8, "\n": 0.2}, "c": {"\n": 1.0}, "z": {"\n": 1.0}}


def test_stops_at_the_end_of_the_line_with_the_exact_line_probability() -> None:
    (best, *_) = decoder(CHAIN).complete(Query(prefix="xa"))
    assert best.text == "bc"
    assert best.confidence == pytest.approx(0.9 * 0.8 * 1.0, rel=1e-5)


def test_candidates_are_ranked_distinct_and_at_most_n() -> None:
    got = decoder(CHAIN).complete(Query(prefix="a", n=3))
    assert [c.text for c in got] == ["bc", "b", "z"]
    assert [round(c.confidence, 4) for c in got] == [0.72, 0.18, 0.1]


def test_honours_max_chars_on_a_line_that_never_ends() -> None:
    loop = {"x": {"y": 1.0}, "y": {"x": 1.0}}
    got = decoder(loop).complete(Query(prefix="x", max_chars=5))
    assert got[0].text == "yxyxy"


def test_beam_search_finds_the_likelier_line_that_greedy_misses() -> None:
    # Greedy takes "p" (0.6) and then has only unlikely ways to end; "q" (0.4) ends for sure.
    table = {
        "s": {"p": 0.6, "q": 0.4},
        "p": {"1": 0.3, "2": 0.25, "3": 0.25, "4": 0.2},
        **{d: {"\n": 1.0} for d in "1234"},
        "q": {"\n": 1.0},
    }
    assert decoder(table, beam_width=1).complete(Query(prefix="s"))[0].text == "p1"
    assert decoder(table, beam_width=4).complete(Query(prefix="s"))[0].text == "q"


def test_deterministic_at_temperature_zero() -> None:
    runs = [decoder(CHAIN).complete(Query(prefix="a", n=2)) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_sampling_is_reproducible_with_a_seed_and_gives_valid_lines() -> None:
    query = Query(prefix="a", n=8, temperature=1.0, seed=7)
    first = decoder(CHAIN).complete(query)
    assert first == decoder(CHAIN).complete(query)
    assert {c.text for c in first} <= {"bc", "b", "z"}
    assert all("\n" not in c.text for c in first)


def test_beams_run_as_one_batch_per_character() -> None:
    dec = decoder(CHAIN)
    dec.complete(Query(prefix="xa", n=3))
    assert dec.engine.calls <= 1 + 3  # the prefix once, then one call per character


def test_min_confidence_hides_unlikely_candidates() -> None:
    got = decoder(CHAIN).complete(Query(prefix="a", n=3, min_confidence=0.5))
    assert [c.text for c in got] == ["bc"]


def test_empty_prefix_is_treated_as_the_start_of_a_line() -> None:
    table = {"\n": {"a": 1.0}, **CHAIN}
    assert decoder(table).complete(Query(prefix=""))[0].text == "abc"


@pytest.mark.parametrize(
    ("line", "suffix", "expected"),
    [
        ("foo(x)", ")", "foo(x"),  # an auto-inserted bracket is not typed twice
        ("foo(x):", "):", "foo(x"),
        ("value  ", "", "value"),  # trailing blanks dropped
        ("= sel", "self.x\nnext line", "="),  # the rest of the line already follows
        ("abc", "xyz", "abc"),
        (")", ")", None),  # nothing left to insert: no candidate
    ],
)
def test_postprocess_never_repeats_what_follows_the_cursor(
    line: str, suffix: str, expected: str | None
) -> None:
    got = postprocess([(line, math.log(0.5))], Query(prefix="", suffix=suffix))
    assert [c.text for c in got] == ([] if expected is None else [expected])


def test_postprocess_merges_lines_that_become_equal() -> None:
    lines = [("x)", math.log(0.3)), ("x", math.log(0.2))]
    got = postprocess(lines, Query(prefix="", suffix=")", n=2))
    assert [(c.text, round(c.confidence, 3)) for c in got] == [("x", 0.5)]


# "self" is certain, what follows it is not: the start saves 4 keystrokes for sure, the likeliest
# whole line 5 about one time in three.
SELF = {"x": {"s": 1.0}, "s": {"e": 1.0}, "e": {"l": 1.0}, "l": {"f": 1.0}}
SELF |= {"f": {"1": 0.3, "2": 0.25, "3": 0.25, "4": 0.2}, **{d: {"\n": 1.0} for d in "1234"}}


def test_the_models_confident_start_leads_when_it_saves_more_than_any_line() -> None:
    got = decoder(SELF, start_below=0.5).complete(Query(prefix="x", n=2))
    assert [c.text for c in got] == ["self", "self1"]
    assert got[0].confidence == pytest.approx(1.0) and got[1].confidence == pytest.approx(0.3)
    # Not when a line is confident enough, nor by default (0.02) for lines this likely.
    assert decoder(SELF, start_below=0.02).complete(Query(prefix="x"))[0].text == "self1"
    assert decoder(SELF, start_below=0.2).complete(Query(prefix="x"))[0].text == "self1"
    # Nor when the daemon is busy (a light decode).
    assert decoder(SELF, start_below=0.5).complete(Query(prefix="x", light=True))[0].text == "self1"
    # A start no more likely than the line it begins is no better than that line.
    assert decoder(CHAIN, start_below=1.0).complete(Query(prefix="a"))[0].text == "bc"


def test_the_start_may_lead_whenever_no_line_reaches_the_clients_threshold() -> None:
    # Lines of 0.3 and less are sure enough to skip the start at 0.2, but an editor showing 0.5
    # or more would show none of them: the start (1.0) leads there.
    assert decoder(SELF, start_below=0.2).complete(Query(prefix="x"))[0].text == "self1"
    shown = decoder(SELF, start_below=0.2).complete(Query(prefix="x", min_confidence=0.5))
    assert [c.text for c in shown] == ["self"]
    # The start off (0) stays off whatever the threshold.
    model = decoder(SELF, start_below=0.2)
    model.config.start_below = 0.0
    assert model.complete(Query(prefix="x", min_confidence=0.5)) == []


def test_a_weak_copied_line_gets_the_models_start_and_a_sure_one_skips_the_model() -> None:
    document = "x = self.alpha(1)\n"
    unsure = Retriever(None, RetrievalConfig(weights=(-8.0, *[0.0] * (len(DEFAULT_WEIGHTS) - 1))))
    weak = decoder(SELF, retriever=unsure)
    assert [c.text for c in weak.complete(Query(prefix=document + "x"))] == ["self"]
    sure = decoder(
        SELF,
        retriever=Retriever(
            None, RetrievalConfig(weights=(8.0, *[0.0] * (len(DEFAULT_WEIGHTS) - 1)))
        ),
    )
    assert [c.text for c in sure.complete(Query(prefix=document + "x"))] == [" = self.alpha(1)"]
    assert sure.engine.calls == 0


def test_a_start_below_min_confidence_gives_way_to_a_candidate_above_it() -> None:
    unsure_self = {**SELF, "x": {"s": 0.3, "t": 0.25, "u": 0.25, "v": 0.2}}
    halves = Retriever(None, RetrievalConfig(weights=(0.0,) * len(DEFAULT_WEIGHTS)))  # all 0.5
    model = decoder(unsure_self, start_below=1.0, retriever=halves)
    assert [c.text for c in model.complete(Query(prefix="xy\nx"))] == ["self"]  # 0.3 x 3 > 0.5 x 0
    shown = model.complete(Query(prefix="xy\nx", min_confidence=0.4))
    assert [(c.text, c.confidence) for c in shown] == [("y", 0.5)]


def test_a_line_the_client_will_not_show_does_not_keep_the_models_start_from_leading() -> None:
    halves = Retriever(None, RetrievalConfig(weights=(0.0,) * len(DEFAULT_WEIGHTS)))  # all 0.5
    model = decoder(SELF, start_below=1.0, retriever=halves)
    document = "x = self.alpha(1)\n"
    # At 0: the copied line (0.5 x 15 keystrokes) beats the sure start `self` (1.0 x 3).
    assert model.complete(Query(prefix=document + "x"))[0].text == " = self.alpha(1)"
    # An editor at 0.6 will not show that line: the start it shows leads.
    shown = model.complete(Query(prefix=document + "x", min_confidence=0.6))
    assert [c.text for c in shown] == ["self"]


def test_a_start_too_unsure_to_show_does_not_displace_a_shorter_one_that_is_shown() -> None:
    # "ab" is sure; "abc" saves more (0.55 x 2 > 1 x 1) but is below the threshold asked.
    table = {"x": {"a": 1.0}, "a": {"b": 1.0}, "b": {"c": 0.55, "e": 0.45}, "e": {"\n": 1.0}}
    table |= {"c": {"1": 0.5, "2": 0.5}, "1": {"\n": 1.0}, "2": {"\n": 1.0}}
    assert decoder(table, start_below=1.0).complete(Query(prefix="x"))[0].text == "abc"
    shown = decoder(table, start_below=1.0).complete(Query(prefix="x", min_confidence=0.6))
    assert [c.text for c in shown] == ["ab"]


def test_a_cancelled_request_stops_decoding() -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):
        decoder(CHAIN).complete(Query(prefix="a", cancelled=cancelled))


def test_retrieval_alone_never_runs_the_model() -> None:
    # An unsure copied line: served as usual, the model runs for lines and for its start.
    unsure = Retriever(None, RetrievalConfig(weights=(-8.0, *[0.0] * (len(DEFAULT_WEIGHTS) - 1))))
    document = "x = self.alpha(1)\n"
    served = decoder(SELF, start_below=1.0, retriever=unsure)
    assert [c.text for c in served.complete(Query(prefix=document + "x"))] == ["self"]
    assert served.engine.calls > 0
    alone = decoder(SELF, start_below=1.0, retriever=unsure)
    alone.config.run_model = False
    got = alone.complete(Query(prefix=document + "x", n=2))
    assert [c.text for c in got] == [" = self.alpha(1)"]
    # Nothing found, a client's threshold, a temperature: still no model.
    assert alone.complete(Query(prefix="q")) == []
    assert alone.complete(Query(prefix=document + "x", min_confidence=0.6)) == []
    sampled = alone.complete(Query(prefix=document + "x", temperature=1.0, seed=1))
    assert [c.text for c in sampled] == [" = self.alpha(1)"]
    assert alone.engine.calls == 0


def test_the_current_file_gives_the_beams_a_name_the_model_does_not_know() -> None:
    alphabet = "fo_bar_z =1\nq"  # the model knows nothing: every next character as likely
    unsure = {ch: dict.fromkeys(alphabet, 1 / len(alphabet)) for ch in alphabet}
    text = "foo_bar_baz = 1\nfoo_b"
    cached = decoder(unsure).complete(Query(prefix=text))
    assert cached[0].text == "ar_baz = 1"
    off = decoder(unsure)
    off.config.file_cache = FileCacheConfig(kappa=0.0)
    assert off.complete(Query(prefix=text))[0].text != "ar_baz = 1"
