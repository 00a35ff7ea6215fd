"""Quality measurement: metrics on hand-made cases, query construction, the n-gram baseline and
`run_eval` end to end on the tiny trained model."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from completiond.core.bundle import ModelStore
from completiond.core.errors import CompletiondError, InvalidRequest
from completiond.daemon.decoder import Candidate, Query
from completiond.evaluation.evaluate import (
    EvalConfig,
    ModeResult,
    QueryResult,
    build_queries,
    edit_similarity,
    eligible_lines,
    evaluate,
    exact_match,
    keystrokes_saved,
    levenshtein,
    run_eval,
    sample_lines,
)


def _load_bench(name: str):
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"completiond_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


baselines = _load_bench("baselines")
peers = _load_bench("peers")

TEXT = "def f(x):\n    return x + 1\n\n    short\n  total = compute(a, b)  \n"


def oracle(text: str, confidence: float = 0.9):
    """A `complete` that knows the file: it answers exactly the rest of the line."""

    def complete(query: Query) -> list[Candidate]:
        assert text.startswith(query.prefix)
        rest = text[len(query.prefix) : text.index("\n", len(query.prefix))].rstrip()
        return [Candidate(rest, confidence)] if rest else []

    return complete


def silent(query: Query) -> list[Candidate]:
    return []


# --- metrics --------------------------------------------------------------------------------


def test_exact_match_compares_whitespace_tokens() -> None:
    assert exact_match("a(b, c)", "a(b, c)")
    assert exact_match("  a(b,  c) ", "a(b, c)")
    assert not exact_match("a(b,c)", "a(b, c)")
    assert not exact_match("", "x")
    assert not exact_match("a(b", "a(b, c)")


def _levenshtein_reference(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def test_levenshtein_on_known_pairs_and_against_a_reference() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3
    assert levenshtein("same", "same") == 0
    assert levenshtein("é→x", "e→x") == 1
    rng = random.Random(1)
    for _ in range(200):
        a = "".join(rng.choice("ab(c ") for _ in range(rng.randrange(12)))
        b = "".join(rng.choice("ab(c ") for _ in range(rng.randrange(12)))
        assert levenshtein(a, b) == levenshtein(b, a) == _levenshtein_reference(a, b)


def test_edit_similarity() -> None:
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("", "abc") == 0.0
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)


def _result(confidence: float | None, exact: bool, column: int = 0) -> QueryResult:
    return QueryResult(
        file="f.py",
        line=1,
        column=column,
        line_length=20,
        typed="",
        truth="x",
        prediction="x" if exact else "",
        confidence=confidence,
        exact=exact,
        edit_similarity=1.0 if exact else 0.0,
        latency_s=0.001,
    )


def test_calibration_buckets_and_precision_coverage() -> None:
    mode = ModeResult(
        "typed",
        [
            _result(0.05, False),
            _result(0.2, False),
            _result(0.25, True),
            _result(0.9, True),  # the last bucket is [0.9, 1]
            _result(1.0, True),
            _result(None, False),  # no answer: in no bucket, never covered
        ],
    )
    buckets = {b.label: b for b in mode.calibration()}
    assert [b.count for b in mode.calibration()] == [1, 2, 0, 0, 0, 2]
    assert buckets["[0.1, 0.3)"].exact_match == 0.5
    assert buckets["[0.9, 1]"].exact_match == 1.0
    assert buckets["[0.9, 1]"].mean_confidence == pytest.approx(0.95)
    assert buckets["[0.1, 0.3)"].accepted == 0.5 and math.isnan(buckets["[0.3, 0.5)"].accepted)
    assert mode.answer_rate == pytest.approx(5 / 6)
    assert mode.exact_match == pytest.approx(3 / 6)
    rows = {t: (coverage, precision) for t, coverage, precision, _ in mode.precision_coverage()}
    assert rows[0.0] == (pytest.approx(5 / 6), pytest.approx(3 / 5))
    assert rows[0.2] == (pytest.approx(4 / 6), pytest.approx(3 / 4))
    assert rows[0.9] == (pytest.approx(2 / 6), 1.0)


def test_a_prefix_of_the_truth_counts_as_accepted() -> None:
    def result(prediction: str) -> QueryResult:
        return QueryResult("f.py", 1, 0, 10, "", "foo(a,  b) + c", prediction, 0.5, False, 0, 0)

    assert result("foo(a, b)").accepted and result("fo").accepted
    assert not result("foo(b)").accepted and not result("").accepted
    mode = ModeResult("typed", [result("foo(a, b)"), result("bar")])
    assert mode.precision_coverage((0.0,)) == [(0.0, 1.0, 0.0, 0.5)]


# --- queries --------------------------------------------------------------------------------


def test_eligible_lines_skip_blank_and_short_ones() -> None:
    lines = eligible_lines({"a.py": TEXT}, typed_chars=10)
    # "def f(x):" has 9 characters, "short" 5, the blank line none.
    assert [(x.number, x.indent, x.length) for x in lines] == [(2, 4, 12), (5, 2, 21)]
    assert [x.number for x in eligible_lines({"a.py": TEXT}, typed_chars=0)] == [1, 2, 4, 5]


def test_typed_cursor_after_the_indentation_plus_typed_chars() -> None:
    texts = {"a.py": TEXT}
    config = EvalConfig(typed_chars=10)
    first, second = build_queries(texts, eligible_lines(texts, 10), "typed", config)
    assert first.prefix == "def f(x):\n    return x +"
    assert first.truth == " 1"
    assert first.suffix == "\n\n    short\n  total = compute(a, b)  \n"
    assert second.prefix.endswith("\n  total = co")
    assert second.truth == "mpute(a, b)"  # trailing blanks are not part of the truth
    assert second.suffix == "\n"


def test_random_cursor_is_inside_the_line_with_at_least_one_character_left() -> None:
    texts = {"a.py": TEXT}
    lines = eligible_lines(texts, 10)
    columns = set()
    for seed in range(60):
        for q in build_queries(texts, lines, "random", EvalConfig(seed=seed)):
            body = TEXT.splitlines()[q.line.number - 1].rstrip()
            assert 0 <= q.column < q.line.length
            assert q.truth and q.prefix.endswith(body[: q.line.indent + q.column])
            assert body[: q.line.indent + q.column] + q.truth == body
            columns.add((q.line.number, q.column))
    assert len(columns) > 20  # the points are spread over both lines
    again = build_queries(texts, lines, "random", EvalConfig(seed=3))
    assert again == build_queries(texts, lines, "random", EvalConfig(seed=3))


def test_sampling_is_seeded_and_capped() -> None:
    lines = eligible_lines({"a.py": TEXT * 20}, 10)
    assert len(sample_lines(lines, 500, 0)) == len(lines) == 40
    assert sample_lines(lines, 5, 1) == sample_lines(lines, 5, 1)
    assert len(set(sample_lines(lines, 5, 1))) == 5


def test_config_is_validated() -> None:
    for bad in (
        EvalConfig(queries=0),
        EvalConfig(modes=("typed", "sideways")),
        EvalConfig(min_confidence=1.5),
        EvalConfig(accept_rate=0.0),
    ):
        with pytest.raises(InvalidRequest):
            bad.validate()


# --- evaluate and keystrokes ----------------------------------------------------------------


def _repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    texts = {"a.py": TEXT, "pkg/b.py": "import os\n\n\ndef main():\n    print(os.getcwd())\n"}
    for rel, text in texts.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path, texts


def test_keystrokes_saved_by_an_oracle_and_by_a_silent_completer(tmp_path: Path) -> None:
    _, texts = _repo(tmp_path)
    lines = eligible_lines(texts, 0)
    config = EvalConfig()
    in_a = [x for x in lines if x.file == "a.py"]
    knows = keystrokes_saved(oracle(texts["a.py"]), {"a.py": texts["a.py"]}, in_a, config)
    assert knows.lines == 4 and knows.keystrokes == 4 and knows.accepted == 4
    assert knows.chars == 9 + 12 + 5 + 21
    assert knows.saved == pytest.approx(1 - 4 / 47)
    nothing = keystrokes_saved(silent, texts, lines, config)
    assert nothing.saved == 0.0 and nothing.accepted == 0
    assert nothing.keystrokes == nothing.chars

    def wrong(query: Query) -> list[Candidate]:
        return [Candidate("zzz", 0.9)]

    assert keystrokes_saved(wrong, texts, lines, config).saved == 0.0


def test_a_user_who_sometimes_types_along_a_right_suggestion_saves_less(tmp_path: Path) -> None:
    _, texts = _repo(tmp_path)
    in_a = [x for x in eligible_lines(texts, 0) if x.file == "a.py"]
    always = keystrokes_saved(oracle(texts["a.py"]), texts, in_a, EvalConfig())
    half = keystrokes_saved(oracle(texts["a.py"]), texts, in_a, EvalConfig(accept_rate=0.5))
    again = keystrokes_saved(oracle(texts["a.py"]), texts, in_a, EvalConfig(accept_rate=0.5))
    assert 0.0 < half.saved < always.saved and half.accepted == always.accepted  # each line once
    assert half.keystrokes > always.keystrokes
    assert (again.saved, again.keystrokes) == (half.saved, half.keystrokes)  # seeded


def test_evaluate_with_an_oracle_is_perfect_and_silence_answers_nothing(tmp_path: Path) -> None:
    repo, texts = _repo(tmp_path)
    config = EvalConfig(queries=50, typed_chars=4, replay_lines=2)

    def knows(query: Query) -> list[Candidate]:
        for text in texts.values():
            if text.startswith(query.prefix) and query.suffix and text.endswith(query.suffix):
                return oracle(text)(query)
        raise AssertionError("prefix of no file")

    report = evaluate(knows, repo, sorted(texts), config)
    assert set(report.modes) == {"typed", "random"}
    for mode in report.modes.values():
        assert mode.count == report.eligible_lines == 7
        assert mode.exact_match == mode.edit_similarity == mode.answer_rate == 1.0
        assert mode.latency_p50_ms >= 0
    assert report.keystrokes is not None and report.keystrokes.lines == 2
    assert report.keystrokes.keystrokes == 2

    low = evaluate(silent, repo, sorted(texts), config)
    for mode in low.modes.values():
        assert mode.answer_rate == mode.exact_match == 0.0
    shy = EvalConfig(queries=50, typed_chars=4, replay_lines=0, min_confidence=0.5)

    def unsure(query: Query) -> list[Candidate]:
        return [Candidate(c.text, 0.1) for c in knows(query)]

    unsure_report = evaluate(unsure, repo, sorted(texts), shy)
    assert unsure_report.modes["typed"].answer_rate == 0.0
    assert unsure_report.keystrokes is None
    markdown = report.to_markdown()
    assert "## Summary" in markdown and "| typed | 7 | 100.0% |" in markdown
    assert "Keystrokes saved" in markdown


# A peer following the reference peers' protocol that knows the files: it checks each query's
# fields as the protocol defines them and answers the rest of the line, in 7 ms by its own count.
ORACLE_PEER = """
import json, sys
args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
if sys.argv[1] == "train":
    open(args["--workdir"], "w").write(open(args["--train-list"]).read())
    sys.exit(0)
with open(args["--out"], "w") as out:
    for line in open(args["--queries"]):
        q = json.loads(line)
        text = open(q["path"]).read()
        assert text.startswith(q["prefix"]) and text.endswith(q["suffix"]), q["id"]
        rest = text[len(q["prefix"]) : len(text) - len(q["suffix"])]
        assert "\\n" not in rest and q["suffix"].startswith("\\n")
        out.write(json.dumps({"id": q["id"], "completion": rest.rstrip() + "\\nnext", "ms": 7}))
        out.write("\\n")
"""


def test_a_peer_runs_through_evaluate_in_batches_with_its_own_latency(tmp_path: Path) -> None:
    repo, texts = _repo(tmp_path / "repo")
    script = tmp_path / "oracle_peer.py"
    script.write_text(ORACLE_PEER)
    peer = peers.Peer("oracle", script, tmp_path / "work", threads=1)
    peer.train(repo, ["pkg/b.py"], 0.1)
    assert (tmp_path / "work" / "model").read_text() == f"{(repo / 'pkg/b.py').resolve()}\n"
    config = EvalConfig(queries=50, typed_chars=4, replay_lines=3)
    report = peers.evaluate_peer(peer, repo, sorted(texts), config, "oracle")
    for mode in report.modes.values():
        assert mode.exact_match == mode.answer_rate == 1.0  # what follows the newline is dropped
        assert mode.latency_p50_ms == pytest.approx(7.0)
    assert report.keystrokes is not None and report.keystrokes.keystrokes == 3
    assert report.notes and "in 1 batches" in report.notes[0]  # the replay asked nothing new


# --- the n-gram baseline --------------------------------------------------------------------

HANDLER = 'def handler_{i}(request):\n    value = request.get("key")\n    return respond(value)\n\n'


@pytest.fixture(scope="module")
def ngram():
    texts = ["".join(HANDLER.format(i=i) for i in range(f * 10, f * 10 + 10)) for f in range(3)]
    return baselines.NgramCompleter.fit(texts)


def test_ngram_completes_a_repeated_line(ngram) -> None:
    prefix = "import os\n\n\ndef handler_77(request):\n    "
    (best,) = ngram.complete(Query(prefix=prefix))
    assert best.text == 'value = request.get("key")'
    assert 0.1 < best.confidence <= 1.0
    after_typing = ngram.complete(Query(prefix=prefix + 'value = request.get("key")\n    return '))
    assert after_typing[0].text == "respond(value)"


def test_ngram_cursor_inside_a_token_completes_its_remainder(ngram) -> None:
    prefix = 'def handler_77(request):\n    value = request.get("key")\n    return resp'
    (best,) = ngram.complete(Query(prefix=prefix))
    assert best.text == "ond(value)"
    inside = ngram.complete(Query(prefix="def handler_77(request):\n    val"))
    assert inside[0].text == 'ue = request.get("key")'


def test_ngram_uses_the_file_cache_and_respects_the_request(ngram) -> None:
    # An identifier never seen in training, used earlier in this file.
    prefix = "def handler_1(request):\n    unusual_name = 1\n    return unusual_na"
    completion = ngram.complete(Query(prefix=prefix))[0].text
    assert completion.startswith("me") and not completion[2:3].isidentifier()
    # What already follows the cursor on its line is not repeated, and the cap holds.
    before = "def handler_1(request):\n    value = request.get("
    got = ngram.complete(Query(prefix=before, suffix='"key")\n'))
    assert all(not c.text.endswith('"key")') for c in got)
    assert all(len(c.text) <= 5 for c in ngram.complete(Query(prefix="def h", max_chars=5)))
    assert ngram.complete(Query(prefix="def h", min_confidence=1.01)) == []


def test_ngram_runs_through_evaluate(ngram, tmp_path: Path) -> None:
    (tmp_path / "held.py").write_text("".join(HANDLER.format(i=i) for i in range(100, 104)))
    report = evaluate(ngram.complete, tmp_path, ["held.py"], EvalConfig(queries=6, replay_lines=2))
    # `def handler_10x(` is new to it; the bodies are not.
    assert report.modes["typed"].exact_match >= 0.3
    assert report.keystrokes is not None and report.keystrokes.saved > 0.5


# --- end to end on the tiny trained model ---------------------------------------------------


def test_run_eval_on_the_trained_fixture(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> None:
    config = EvalConfig(queries=6, replay_lines=2)
    report = run_eval(fixture_repo, trained_store.root, config, report_dir=None)
    assert report.system.startswith("model ")
    assert report.files and all(f.startswith("handlers_") for f in report.files)
    for mode in ("typed", "random"):
        result = report.modes[mode]
        assert result.count == 6
        assert 0.0 <= result.exact_match <= 1.0 and 0.0 <= result.edit_similarity <= 1.0
    # The fixture is very regular: the tiny model completes most typed lines exactly.
    assert report.modes["typed"].exact_match >= 0.5
    assert report.keystrokes is not None and report.keystrokes.saved > 0.3

    out = tmp_path / "report"
    path = report.write(out, plots=False)
    assert path == out / "report.md" and "# Completion quality: model " in path.read_text()
    summary = json.loads((out / "report.json").read_text())
    assert summary["modes"]["typed"]["queries"] == 6
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(CompletiondError, match="pip install matplotlib"):
            report.plot(out)
        pytest.skip("matplotlib is not installed: the plots were not checked")
    report.plot(out)
    for name in ("accuracy.png", "calibration.png", "latency.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_module_stays_torch_free() -> None:
    code = (
        "import sys, completiond.evaluation.evaluate as e; "
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
