"""The current file as the model's cache: contexts found, followed, and mixed in."""

from __future__ import annotations

import numpy as np

from completiond.completion.file_cache import NOWHERE, FileCache, FileCacheConfig, Pointer
from completiond.core.tokenizer import CharTokenizer

TOK = CharTokenizer.fit([""])
UNIFORM = np.full(TOK.vocab_size, -np.log(TOK.vocab_size))


def cache(prefix: str, suffix: str = "", **config: float) -> FileCache:
    return FileCache(prefix, suffix, TOK, FileCacheConfig(**config))  # type: ignore[arg-type]


def most_likely(file: FileCache, pointer) -> str:  # type: ignore[no-untyped-def]
    return TOK.decode([int(np.argmax(file.mix(UNIFORM, pointer)))])


def test_what_followed_the_text_before_the_cursor_above_is_likelier() -> None:
    file = cache("total_price = 3\nprint(total_p")
    pointer = file.start()
    assert pointer.length == len("total_p")  # the longest end that occurred before
    assert most_likely(file, pointer) == "r"


def test_the_cursors_own_place_is_not_a_place_the_text_occurred() -> None:
    assert cache("ab xyz").start() == NOWHERE


def test_the_text_below_the_cursors_line_counts_and_the_rest_of_its_line_does_not() -> None:
    file = cache("x = compute_", "q + compute_q\nresult = compute_width(3)\n")
    assert most_likely(file, file.start()) == "w"


def test_a_beam_that_goes_on_copying_keeps_its_places_and_one_that_leaves_searches_again() -> None:
    file = cache("alpha_beta = 1\nalpha_gamma = 2\nz = alpha_")
    start = file.start()
    assert len(start.places) == 2  # "b" and "g" followed "alpha_"
    copying = file.advance(start, TOK.encode("g"))
    assert copying.length == start.length + 1 and len(copying.places) == 1
    assert most_likely(file, copying) == "a"
    left = file.advance(copying, TOK.encode("gx"))
    assert left.length < copying.length  # a shorter context, found again


def test_nowhere_leaves_the_models_probabilities_as_they_are() -> None:
    file = cache("abc")
    assert np.array_equal(file.mix(UNIFORM, NOWHERE), UNIFORM)


def test_a_longer_context_weighs_more_and_the_mix_is_a_distribution() -> None:
    file = cache("total_price = 3\nprint(total_p", kappa=4.0)
    long = file.start()
    short = Pointer(2, long.places)  # the same places, found from a 2-character context
    assert long.length > 2
    sure = {}
    for pointer in (long, short):
        mixed = np.exp(file.mix(UNIFORM, pointer))
        assert np.isclose(mixed.sum(), 1.0)
        sure[pointer.length] = mixed.max()  # the one character that followed there
    assert sure[long.length] > sure[2]
    # The file's share is L / (L + kappa), the model's uniform share the rest.
    expected = long.length / (long.length + 4.0) + 4.0 / (long.length + 4.0) / TOK.vocab_size
    assert np.isclose(sure[long.length], expected)


def test_only_the_configured_window_is_searched() -> None:
    far = "total_price = 3\n" + "#" * 100 + "\n"
    assert cache(far + "print(total_p", above_chars=50).start() == NOWHERE
    assert cache(far + "print(total_p", above_chars=200).start().length == len("total_p")
