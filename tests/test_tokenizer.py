"""The character tokenizer: round trips, unknown symbols, JSON form."""

from __future__ import annotations

import numpy as np
import pytest

from completiond.core.tokenizer import UNK_ID, CharTokenizer


def test_round_trip_of_text_inside_the_alphabet() -> None:
    text = "def f(x):\n\treturn x + 1  # ok\n"
    tok = CharTokenizer.fit([text])
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert UNK_ID not in ids
    assert tok.decode(ids) == text


def test_rare_and_unseen_characters_become_unknown() -> None:
    tok = CharTokenizer.fit(["ééé" + "ß"], min_count=3)
    ids = tok.encode("éß€😀\x00")
    assert ids[0] != UNK_ID  # seen three times
    assert list(ids[1:]) == [UNK_ID] * 4  # once, never, beyond the dense table, control char
    assert tok.covers("é") == 1.0 and tok.covers("ß") == 0.0


def test_characters_beyond_the_dense_table_are_encoded() -> None:
    tok = CharTokenizer.fit(["😀" * 5 + "中" * 5])
    assert tok.decode(tok.encode("😀中a")) == "😀中a"


def test_lone_surrogates_do_not_crash_encoding() -> None:
    tok = CharTokenizer.fit(["abc"])
    assert list(tok.encode("a\ud800b")) == [*tok.encode("a"), UNK_ID, *tok.encode("b")]


def test_json_round_trip_keeps_ids() -> None:
    tok = CharTokenizer.fit(["some code ∑∑∑"])
    again = CharTokenizer.from_json(tok.to_json())
    assert again.chars == tok.chars
    assert np.array_equal(again.encode("code ∑"), tok.encode("code ∑"))


def test_base_alphabet_always_has_newline_and_ascii() -> None:
    tok = CharTokenizer.fit([""])
    assert tok.decode(tok.encode("Zz~\n")) == "Zz~\n"


@pytest.mark.parametrize(
    "bad", ['{"type": "bpe"}', '{"type": "char", "unk_id": 0, "chars": ["a", "a"]}']
)
def test_foreign_or_inconsistent_json_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        CharTokenizer.from_json(bad)
