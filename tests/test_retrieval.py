"""The repository index and the retriever: exact lookups, atomic files, calibrated candidates."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from completiond.completion.calibration import (
    CALIBRATION_FILE,
    FORMAT,
    Calibration,
    CalibrationConfig,
    calibrate,
    fit,
    load_calibration,
    right,
    save_calibration,
)
from completiond.completion.retrieval import (
    DEFAULT_WEIGHTS,
    SHAPE_RANK,
    Found,
    RetrievalConfig,
    Retriever,
    _with_mass,
    contexts,
)
from completiond.core.bundle import ModelStore
from completiond.core.index import INDEX_FILE, IndexConfig, RepoIndex
from completiond.daemon.decoder import Query
from completiond.daemon.model_slot import ModelSlot, load_index

TOKEN_START = re.compile(r"\n|(?<!\w)\w|[^\w\s]")


def brute_force(text: str, piece: str) -> list[int]:
    """Token starts of `text` where `piece` occurs."""
    return [m.start() for m in TOKEN_START.finditer(text) if text.startswith(piece, m.start())]


@settings(max_examples=60, deadline=None)
@given(
    files=st.lists(st.text(alphabet="ab( )\n.é", max_size=40), min_size=1, max_size=4),
    cut=st.integers(0, 200),
    length=st.integers(1, 12),
    key_chars=st.integers(1, 6),
)
def test_a_span_holds_exactly_the_occurrences_at_token_starts(
    files: list[str], cut: int, length: int, key_chars: int
) -> None:
    index = RepoIndex.build((f + "\n" for f in files), IndexConfig(key_chars=key_chars))
    starts = [m.start() for m in TOKEN_START.finditer(index.text)]
    start = starts[cut % len(starts)]
    piece = index.text[start : start + length]
    lo, hi = index.span(piece)
    found = sorted(p for p in index.positions[lo:hi].tolist() if index.text.startswith(piece, p))
    assert found == brute_force(index.text, piece)
    if len(piece) <= key_chars:  # the whole span matches: no false positives to filter
        assert hi - lo == len(found)
    counts = index.continuations(piece, limit=10_000)
    assert sum(counts.values()) == len(found)  # "" counts the lines that end there
    assert counts.get("", 0) == sum(
        1 for p in found if not index.text[p + len(piece) :].split("\n", 1)[0].rstrip()
    )


def test_continuations_read_an_even_sample_of_common_pieces() -> None:
    lines = [f"x = value_{i % 3}\n" for i in range(3000)]
    index = RepoIndex.build(["".join(lines)])
    counts = index.continuations("x = ", limit=100)
    assert sum(counts.values()) == 3000  # scaled from the sample
    assert set(counts) == {"value_0", "value_1", "value_2"}  # not the first ones in sort order
    assert all(900 <= c <= 1100 for c in counts.values())


def test_the_index_file_round_trips_and_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / INDEX_FILE
    RepoIndex.build(["naïve = 'ü'\n", "def f(x):\n    return x\n"]).save(path)
    loaded = RepoIndex.load(path)
    assert loaded.text == "\nnaïve = 'ü'\ndef f(x):\n    return x\n"
    assert loaded.continuations("return ", 10) == {"x": 1}
    RepoIndex.build(["y = 2\n"]).save(path)
    assert RepoIndex.load(path).text == "\ny = 2\n"
    assert [p.name for p in tmp_path.iterdir()] == [INDEX_FILE]  # no staging file left


def test_a_damaged_index_is_not_used_and_serving_goes_on(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    (tmp_path / INDEX_FILE).write_bytes(b"not an index")
    assert load_index(store) is None
    np.savez(tmp_path / INDEX_FILE, text=np.frombuffer(b"\nab\n", np.uint8), positions=[9],
             key_chars=np.array(4))  # fmt: skip
    with pytest.raises(ValueError, match="outside"):
        RepoIndex.load(tmp_path / INDEX_FILE)
    assert load_index(store) is None


def test_contexts_go_from_two_lines_to_the_last_token() -> None:
    prefix = "import os\n\ndef f(x):\n    return os.pa"
    assert contexts(prefix) == [
        (0, "\ndef f(x):\n    return os.pa"),
        (1, "\n    return os.pa"),
        (2, "return os.pa"),
        (2, "os.pa"),
        (2, ".pa"),
        (2, "pa"),
    ]
    assert contexts("first li") == [(1, "\nfirst li"), (2, "first li"), (2, "li")]


def test_a_huge_line_is_looked_up_from_its_end_only() -> None:
    line = "x = [" + ", ".join(f"item_{i}" for i in range(5000))
    found = contexts("import os\n" + line, max_chars=40)
    assert found and all(len(c) <= 40 for _, c in found) and {r for r, _ in found} == {2}
    assert found[-1] == (2, "item_4999")
    retriever = Retriever(RepoIndex.build([line + "]\n"]))
    start = time.perf_counter()
    candidates = retriever.candidates("import os\n" + line, "")
    assert time.perf_counter() - start < 0.5
    assert candidates[0][0] == "]"


def test_the_current_file_is_searched_above_and_below_the_cursor() -> None:
    retriever = Retriever(None)
    above = "conn = open_conn(host, port=8080)\nx = 1\nconn = open_c"
    best, confidence = retriever.candidates(above, "")[0]
    assert best == "onn(host, port=8080)" and 0 < confidence < 1
    # The same line after the same previous line: a more specific match, more confidence.
    again = "y = 2\nconn = open_conn(host, port=8080)\nx = 1\ny = 2\nconn = open_c"
    assert retriever.candidates(again, "")[0][0] == best
    assert retriever.candidates(again, "")[0][1] > confidence
    below = "\nlater = 2\nconn = open_conn(host, port=9090)\n"
    assert retriever.candidates("x = 1\nconn = open_c", below)[0][0] == "onn(host, port=9090)"
    # The line above and the line below the cursor's are not adjacent in the file: no two-line
    # match may join them.
    (joined,) = retriever.find("a = 1\nb = f", "\nb = f(z)\n")
    assert (joined.text, joined.rank) == ("(z)", 1)
    # The rest of the cursor's own line is not a source: it follows the cursor already.
    assert retriever.candidates("conn = open_c", "onn(a)\n") == []


def test_more_evidence_means_more_confidence() -> None:
    retriever = Retriever(None)
    once = retriever.candidates("a = compute(1)\nb = comp", "")[0][1]
    often = retriever.candidates("a = compute(1)\n" * 5 + "b = comp", "")[0][1]
    split = retriever.candidates("a = compute(1)\na = compute(2)\nb = comp", "")
    assert once < often
    assert {t for t, _ in split} == {"ute(1)", "ute(2)"} and split[0][1] < often


def test_a_start_many_continuations_share_leads_when_it_saves_more_keystrokes() -> None:
    retriever = Retriever(None, RetrievalConfig(shared_below=0.1))  # lines of about 1 in 6
    prefix = "".join(f"    def __init__(self, arg{i}, b{i}):\n" for i in range(6)) + "    def __in"
    starts = {f.text: f for f in retriever.find(prefix, "") if f.partial}
    assert set(starts) == {"it__", "it__(", "it__(self", "it__(self,"}  # ends at a token
    assert starts["it__(self,"].document_count == 6
    (best, confidence), *wholes = retriever.candidates(prefix, "")
    assert best == "it__(self," and all(confidence > c for _, c in wholes)
    assert {t for t, _ in wholes} == {f"it__(self, arg{i}, b{i}):" for i in range(6)}
    # Not when a whole line is confident enough.
    whole_first = Retriever(None, RetrievalConfig(shared_below=0.0))
    assert whole_first.candidates(prefix, "")[0][0].startswith("it__(self, arg")
    # A shared start is right when the line goes on with it, a whole line when it is the rest.
    assert right(starts["it__(self,"], "it__(self, other):") and not right(
        starts["it__(self,"], "it__(cls):"
    )
    assert not right(Found("it__(self, arg1, b1):", 1, 5, 1, 0, 6), "it__(self, arg1):")


def test_a_shared_start_may_lead_whenever_the_best_line_is_below_the_clients_threshold() -> None:
    prefix = "".join(f"    def __init__(self, arg{i}, b{i}):\n" for i in range(6)) + "    def __in"
    rarely = Retriever(None, RetrievalConfig(shared_below=1e-4))
    assert rarely.candidates(prefix, "")[0][0].startswith("it__(self, arg")  # sure enough at 0
    # An editor showing 0.6 or more would show none of the lines (each about 0.07): the start
    # (0.69) leads. At 0.9 it would show neither: a start it will not show does not lead.
    assert rarely.candidates(prefix, "", min_confidence=0.6)[0][0] == "it__(self,"
    assert rarely.candidates(prefix, "", min_confidence=0.9)[0][0].startswith("it__(self, arg")
    never = Retriever(None, RetrievalConfig(shared_below=0.0))
    assert never.candidates(prefix, "", min_confidence=0.9)[0][0].startswith("it__(self, arg")


def test_a_start_is_at_least_as_confident_as_the_whole_lines_beginning_with_it() -> None:
    wholes = [("ab.c(x)", 0.08), ("ab.c(y)", 0.07), ("zz(1)", 0.02)]
    starts = dict(_with_mass([("ab", 0.05), ("zz", 0.03)], wholes))
    # "ab" was found less sure than the two lines that begin with it, together.
    assert starts["ab"] == starts["ab.c("] == pytest.approx(0.15)
    assert starts["zz"] == 0.03  # one line only: its own confidence stands
    assert "ab.c(x" not in starts and "zz(" not in starts  # not shared by another line
    assert dict(_with_mass([], [("a(", 0.7), ("a(b)", 0.6)]))["a("] == 0.99  # a probability


def test_a_start_that_is_also_a_whole_line_is_listed_once() -> None:
    unsure = Retriever(
        None, RetrievalConfig(weights=(-6.0, *[0.0] * (len(DEFAULT_WEIGHTS) - 1)))
    )  # every line 0.25%
    document = "a = foo\na = foo(x)\na = foo(y)\na = foo.z\na = "
    texts = [text for text, _ in unsure.candidates(document, "")]
    assert texts[0] == "foo" and texts.count("foo") == 1  # the four lines begin with it
    assert set(texts) == {"foo", "foo(x)", "foo(y)", "foo.z"}


def test_a_line_of_the_same_shape_in_the_file_is_copied_with_its_names_renamed() -> None:
    retriever = Retriever(None)
    above = "module.exports = {\n" + "".join(
        f"  '{name}': require('./{name}'),\n" for name in ("isError", "isArray")
    )
    found = {f.text: f for f in retriever.find(above + "  'isEmpty':", "\n};\n")}
    shaped = found[" require('./isEmpty'),"]
    assert (shaped.rank, shaped.document_count, shaped.total) == (SHAPE_RANK, 2, 2)
    assert retriever.candidates(above + "  'isEmpty':", "")[0][0] == " require('./isEmpty'),"
    # Lines below the cursor count too; a name renamed two ways is no match.
    assert " require('./isEmpty')," in dict(retriever.candidates("x = 1\n  'isEmpty':", above))
    clash = "f(a, a, b)\n"
    assert all(f.rank != SHAPE_RANK for f in retriever.find(clash + "f(x, y,", ""))
    # Not inside a name (its end is unknown), and not when turned off.
    assert all(f.rank != SHAPE_RANK for f in retriever.find(above + "  'isEm", ""))
    off = Retriever(None, RetrievalConfig(shape_lines=0))
    assert all(f.rank != SHAPE_RANK for f in off.find(above + "  'isEmpty':", ""))


def test_the_end_of_the_name_being_typed_is_offered_even_from_one_occurrence() -> None:
    retriever = Retriever(None)
    above = 'import re\n\n_embedded_header = re.compile(r"x")\n\n\ndef f(value):\n'
    found = retriever.find(above + "    if _emb", "\n")
    (word,) = [f for f in found if f.word]
    assert (word.text, word.partial, word.document_count, word.total) == (
        "edded_header",
        True,
        1,
        1,
    )
    assert not any(f.partial and not f.word for f in found)  # no two continuations share it
    # Where no whole line is as sure as the client asks, the name's end leads.
    assert retriever.candidates(above + "    if _emb", "\n", min_confidence=0.5)[0][0] == (
        "edded_header"
    )
    # Every occurrence counts: where the name ends at the cursor, the line too or not, counts
    # against the longer name.
    (bar,) = [
        f for f in retriever.find("x = foo(1)\ny = foo\nz = foobar(3)\nw = foo", "") if f.word
    ]
    assert (bar.text, bar.document_count, bar.total) == ("bar", 1, 3)
    # The most specific context found decides: here every `self.data` ends the name.
    dataset = "v = self.data[i]\n" * 3 + "w = metadataset + 1\n"
    assert not any(f.word for f in retriever.find(dataset + "v = self.data", ""))
    # Only inside a name: not after a blank or a symbol, not in a number.
    for prefix in ("x = foo(1)\nw = foo(", "x = 12345 + 1\ny = 12", "x = foo bar(1)\ny = foo "):
        assert not any(f.word for f in retriever.find(prefix, ""))


def test_a_shorter_candidate_the_client_shows_leads_a_line_it_would_not() -> None:
    retriever = Retriever(None)
    above = "class A:\n    def __init__(self):\n        self.timeout = None\n        self.x = 3\n"
    prefix = above + "\n    def close(self):\n        self.time"
    (line, unsure), *_ = retriever.candidates(prefix, "\n")
    assert line == "out = None" and unsure < 0.6
    (first, sure), *_ = retriever.candidates(prefix, "\n", min_confidence=0.6)
    assert first == "out" and sure >= 0.6


def test_disabled_retrieval_finds_nothing() -> None:
    assert Retriever(None, RetrievalConfig(enabled=False)).candidates("a = 1\na = ", "") == []


def test_training_writes_the_index_and_serving_answers_from_it(
    trained_store: ModelStore, fixture_repo: Path
) -> None:
    index = load_index(trained_store)
    assert index is not None and "def handler_" in index.text
    assert "hunter2" not in index.text  # an ignored file is not indexed
    served = ModelSlot(trained_store).load_current()
    assert served.decoder.retriever is not None and served.decoder.retriever.index is not None
    # A document the daemon never saw: the key that goes with handler 307 is in the repository.
    prefix = "import os\n\n\ndef handler_307(request):\n    value = request.g"
    candidates = served.decoder.complete(Query(prefix=prefix))
    assert candidates[0].text == 'et("key_307")'


# --- calibration ------------------------------------------------------------------------------


def _found(share_right: bool, rank: int) -> Found:
    return Found("x" * 5, rank, 10, 9 if share_right else 1, 0, 10)


def test_the_fit_follows_the_evidence_and_the_prior_holds_it_back() -> None:
    # Candidates that most occurrences continue with are right; the others are wrong.
    labelled = [(_found(True, 2), True)] * 60 + [(_found(False, 2), False)] * 60
    labelled += [(_found(True, 2), False)] * 6 + [(_found(False, 2), True)] * 6
    free = fit(labelled, 3.0, prior=1.0)
    held = fit(labelled, 3.0, prior=1e6)
    share = 1  # index of log(share) in `features`
    assert free[share] > DEFAULT_WEIGHTS[share] + 0.2
    assert held == pytest.approx(np.array(DEFAULT_WEIGHTS), abs=1e-3)


def test_calibration_keeps_the_defaults_without_enough_examples() -> None:
    texts = {f"f{i}.py": f"value_{i} = compute({i})\n" * 3 for i in range(8)}
    result = calibrate(texts, RetrievalConfig(), CalibrationConfig(min_right=10_000))
    assert not result.fitted and result.weights == DEFAULT_WEIGHTS and result.lines > 0


def test_a_damaged_calibration_file_means_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / CALIBRATION_FILE
    path.write_text('{"weights": [1, 2]}')
    assert load_calibration(path) is None
    save_calibration(path, Calibration((0.5,) * len(DEFAULT_WEIGHTS), True, 10, 20, 5))
    assert load_calibration(path) == Calibration((0.5,) * len(DEFAULT_WEIGHTS), True, 10, 20, 5)
    assert json.loads(path.read_text())["format"] == FORMAT
    # Format 1 (no format field) had one feature less: its default weight, the fitted ones kept.
    old = {"weights": [0.5] * (len(DEFAULT_WEIGHTS) - 1), "fitted": True, "lines": 10}
    path.write_text(json.dumps({**old, "candidates": 20, "right": 5}))
    weights = (0.5,) * (len(DEFAULT_WEIGHTS) - 1) + DEFAULT_WEIGHTS[-1:]
    assert load_calibration(path) == Calibration(weights, True, 10, 20, 5)
    # A current file with a weight missing is damaged, not old.
    save_calibration(path, Calibration((0.5,) * (len(DEFAULT_WEIGHTS) - 1), True, 10, 20, 5))
    assert load_calibration(path) is None


def test_training_fits_the_confidences_to_the_repository_and_serving_uses_them(
    trained_store: ModelStore,
) -> None:
    calibration = load_calibration(trained_store.root / CALIBRATION_FILE)
    assert calibration is not None and calibration.lines > 0 and calibration.candidates > 0
    assert trained_store.current().meta["retrieval_calibration"]["weights"] == list(
        calibration.weights
    )
    served = ModelSlot(trained_store).load_current()
    assert served.decoder.retriever is not None
    assert served.decoder.retriever.config.weights == calibration.weights
