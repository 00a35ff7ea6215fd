"""Suggestions typed through: kept per document and line, offered again as their first word."""

from __future__ import annotations

from completiond.daemon.declined import DeclinedSuggestions, first_word, without_declined
from completiond.daemon.decoder import Query
from completiond.daemon.retrieval import RetrievalConfig, Retriever

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


def test_typing_on_declines_the_suggestion_and_accepting_it_does_not() -> None:
    memory = DeclinedSuggestions()
    memory.answered("doc", HEAD + "x = ev", ["al(1, 2)"])
    # Typed the next character instead of accepting: the line it would have made is declined.
    assert memory.at("doc", HEAD + "x = eva") == {"l(1, 2)"}
    memory.answered("doc", HEAD + "x = eva", ["l"])
    assert memory.at("doc", HEAD + "x = eval") == {"(1, 2)"}  # accepted "l": still declined
    assert memory.at("doc", HEAD + "x = eval(1, 2)") == frozenset()  # nothing declined beyond
    # Accepting it whole declines nothing.
    memory.answered("other", HEAD + "y = ev", ["al(3)"])
    assert memory.at("other", HEAD + "y = eval(3)") == frozenset()
    assert memory.at("other", HEAD + "y = eval(") == frozenset()  # then deleted back: settled
    # Deleting back declines nothing either, and forgets what was declined from there on.
    memory.answered("back", HEAD + "z = ev", ["al(4)"])
    assert memory.at("back", HEAD + "z = e") == frozenset()
    assert memory.at("back", HEAD + "z = eva") == frozenset()
    memory.answered("back", HEAD + "z = e", ["val(5)"])
    assert memory.at("back", HEAD + "z = ev") == {"al(5)"}
    assert memory.at("back", HEAD + "z = eva") == {"l(5)"}  # still beyond where it was offered
    assert memory.at("back", HEAD + "z = e") == frozenset()  # back there: forgotten
    assert memory.at("back", HEAD + "z = ev") == frozenset()


def test_declined_suggestions_belong_to_one_line_of_one_document() -> None:
    memory = DeclinedSuggestions(documents=2)
    memory.answered("doc", HEAD + "x = ev", ["al(1, 2)"])
    assert memory.at("", HEAD + "x = eva") == frozenset()  # no document: no history
    assert memory.at("elsewhere", HEAD + "x = eva") == frozenset()
    assert memory.at("doc", HEAD + "x = eva") == {"l(1, 2)"}
    # The same text on another line is another line; answering there forgets this one.
    assert memory.at("doc", HEAD + "pass\nx = eva") == frozenset()
    memory.answered("doc", HEAD + "pass\nx = ev", ["al"])
    assert memory.at("doc", HEAD + "x = eva") == frozenset()
    # Documents beyond the bound are forgotten, least recently used first.
    memory.answered("a", "x", ["y1"])
    memory.answered("b", "x", ["y1"])
    memory.answered("c", "x", ["y1"])
    assert memory.at("a", "xz") == frozenset()
    assert memory.at("c", "xy") == {"1"}


def test_the_decoder_offers_a_typed_through_suggestion_as_its_first_word() -> None:
    document = "x = self.alpha(1)\n"
    model = decoder(SELF, retriever=Retriever(None, RetrievalConfig(weights=(8.0, *[0.0] * 9))))
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
    model.config.keep_typed_through = True
    assert model.complete(Query(prefix=document + "x =", document="d"))[0].text == " self.alpha(1)"
