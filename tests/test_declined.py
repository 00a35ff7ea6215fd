"""Suggestions typed through: kept per document and line, offered again as their first word."""

from __future__ import annotations

from completiond.completion.declined import (
    DECLINED_BELOW,
    DeclinedSuggestions,
    first_word,
    without_declined,
)
from completiond.completion.retrieval import DEFAULT_WEIGHTS, RetrievalConfig, Retriever
from completiond.daemon.decoder import Query

from .test_decoder import SELF, decoder

HEAD = "import os\n"


def test_first_word_ends_at_the_end_of_the_first_name() -> None:
    assert first_word("dded_header = re.compile(x)") == "dded_header"
    assert first_word(" = re.compile(x)") == " = re"
    assert first_word("(self, other):") == "(self"
    assert first_word("name") is None  # nothing left to cut
    assert first_word("):") is None  # no name at all
    assert first_word("    deep") is None  # more than a few symbols before the name


def test_a_declined_candidate_becomes_its_first_word_or_goes() -> None:
    candidates = [("al(1, 2)", 0.4), ("al", 0.3), ("ue", 0.2)]
    assert without_declined(candidates, frozenset()) == candidates
    assert without_declined(candidates, frozenset({"al(1, 2)"})) == [
        ("al", 0.4),
        ("al", 0.3),
        ("ue", 0.2),
    ]
    assert without_declined(candidates, frozenset({"al(1, 2)", "al"})) == [("ue", 0.2)]


def ask(
    memory: DeclinedSuggestions, document: str, prefix: str, answer: str = "", sure: float = 0.1
) -> frozenset[str]:
    """One request as the decoder makes it: what is declined here, then the answer recorded."""
    declined, ticket = memory.begin(document, prefix)
    memory.answered(document, prefix, (answer, sure) if answer else None, ticket)
    return declined


def test_typing_on_declines_the_suggestion_and_accepting_it_does_not() -> None:
    memory = DeclinedSuggestions()
    ask(memory, "doc", HEAD + "x = ev", "al(1, 2)")
    # Typed the next character instead of accepting: the line it would have made is declined.
    assert ask(memory, "doc", HEAD + "x = eva", "l") == {"l(1, 2)"}
    assert ask(memory, "doc", HEAD + "x = eval") == {"(1, 2)"}  # accepted "l": still declined
    assert ask(memory, "doc", HEAD + "x = eval(1, 2)") == frozenset()  # nothing beyond
    # Accepting it whole declines nothing, and deleting back after that neither.
    ask(memory, "other", HEAD + "y = ev", "al(3)")
    assert ask(memory, "other", HEAD + "y = eval(3)") == frozenset()
    assert ask(memory, "other", HEAD + "y = eval(") == frozenset()
    # Typing something else declines nothing that could still be offered.
    ask(memory, "else", HEAD + "z = ev", "al(4)")
    assert ask(memory, "else", HEAD + "z = evx") == frozenset()


def test_a_confident_suggestion_typed_along_is_kept_whole() -> None:
    memory = DeclinedSuggestions()  # people type along right suggestions too
    ask(memory, "doc", HEAD + "x = ev", "al(1, 2)", sure=DECLINED_BELOW)
    assert ask(memory, "doc", HEAD + "x = eva") == frozenset()
    always = DeclinedSuggestions(declined_below=2.0)  # above 1: any
    ask(always, "doc", HEAD + "x = ev", "al(1, 2)", sure=0.99)
    assert ask(always, "doc", HEAD + "x = eva") == {"l(1, 2)"}


def test_deleting_back_to_where_a_suggestion_was_offered_forgets_it() -> None:
    memory = DeclinedSuggestions()
    ask(memory, "doc", HEAD + "z = e", "val(5)")
    assert ask(memory, "doc", HEAD + "z = ev") == {"al(5)"}
    assert ask(memory, "doc", HEAD + "z = eva") == {"l(5)"}  # still beyond where it was offered
    assert ask(memory, "doc", HEAD + "z = e") == frozenset()  # back there: forgotten
    assert ask(memory, "doc", HEAD + "z = ev") == frozenset()


def test_declined_suggestions_belong_to_one_line_of_one_document() -> None:
    memory = DeclinedSuggestions(documents=2)
    ask(memory, "doc", HEAD + "x = ev", "al(1, 2)")
    assert ask(memory, "", HEAD + "x = eva") == frozenset()  # no document: no history
    assert ask(memory, "elsewhere", HEAD + "x = eva") == frozenset()
    assert ask(memory, "doc", HEAD + "x = eva") == {"l(1, 2)"}
    # The same text on another line is another line; answering there forgets this one.
    assert ask(memory, "doc", HEAD + "pass\nx = eva") == frozenset()
    ask(memory, "doc", HEAD + "pass\nx = ev", "al")
    assert ask(memory, "doc", HEAD + "x = eva") == frozenset()
    # Documents beyond the bound are forgotten, least recently used first.
    for document in "abc":
        ask(memory, document, "x", "y1")
    assert ask(memory, "a", "xy") == frozenset()
    assert ask(memory, "c", "xy") == {"1"}


def test_a_stale_answer_is_not_recorded_and_long_lines_keep_no_history() -> None:
    memory = DeclinedSuggestions()
    ask(memory, "doc", HEAD + "x = ", "eval(1)")
    _, older = memory.begin("doc", HEAD + "x = e")
    _, newer = memory.begin("doc", HEAD + "x = e")  # the next request came before its answer
    memory.answered("doc", HEAD + "x = e", ("nothing", 0.1), older)  # not shown: not recorded
    memory.answered("doc", HEAD + "x = e", ("val(1)", 0.1), newer)
    assert ask(memory, "doc", HEAD + "x = ev") == {"al(1)"}
    long = HEAD + "x = " + "a" * 2000
    ask(memory, "doc", long, "b(1)")
    assert ask(memory, "doc", long + "b") == frozenset()


def test_the_decoder_offers_a_typed_through_suggestion_as_its_first_word() -> None:
    document = "x = self.alpha(1)\n"
    model = decoder(
        SELF,
        retriever=Retriever(
            None, RetrievalConfig(weights=(-2.0, *[0.0] * (len(DEFAULT_WEIGHTS) - 1)))
        ),
    )
    first = model.complete(Query(prefix=document + "x", document="d"))
    assert [c.text for c in first] == [" = self.alpha(1)"]
    # The user typed " " instead of accepting: the rest is offered as its first word.
    again = model.complete(Query(prefix=document + "x ", document="d"))
    assert [c.text for c in again] == ["= self"]
    assert again[0].confidence == first[0].confidence  # the whole's: a lower bound
    # Typed on past that too: nothing of the declined line is offered.
    assert model.complete(Query(prefix=document + "x =", document="d", min_confidence=0.5)) == []
    # Without a document, or by choice, suggestions are offered whole.
    assert model.complete(Query(prefix=document + "x "))[0].text == "= self.alpha(1)"
    model.declined.declined_below = 0.0  # serve --keep-typed-through
    assert model.complete(Query(prefix=document + "x =", document="d"))[0].text == " self.alpha(1)"


def test_a_declined_line_is_compared_as_shown_and_the_model_takes_its_place() -> None:
    # `abcd)` is found after `y = f(`; shown as `abcd`: the editor closed the bracket already.
    model = decoder(
        SELF,
        retriever=Retriever(
            None, RetrievalConfig(weights=(-2.0, *[0.0] * (len(DEFAULT_WEIGHTS) - 1)))
        ),
    )
    document = "y = f(abcd)\n"
    first = model.complete(Query(prefix=document + "y = f(", suffix=")", document="d"))
    assert [c.text for c in first] == ["abcd"]
    calls = model.engine.calls
    # Typed "a": `bcd` is that line, declined, a single word: the model answers instead.
    again = model.complete(Query(prefix=document + "y = f(a", suffix=")", document="d"))
    assert model.engine.calls > calls and all(c.text != "bcd" for c in again)
    assert model.complete(Query(prefix=document + "y = f(a", suffix=")"))[0].text == "bcd"
