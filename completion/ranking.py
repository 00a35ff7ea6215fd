"""Which suggestion is offered first: every rule in one place, each in one small function.

Candidates come from retrieval (whole rests of lines copied from the repository, and shorter
ones: starts several of them share, the end of the name typed) and from the model (decoded
lines, its confident start). Each carries a calibrated confidence: the chance that accepting it
is right. One measure compares a short suggestion with a long one: the keystrokes it is
expected to save.

The rules count only what the client shows (candidates at or above its `min_confidence`): a
line the editor would not show must not keep a shorter suggestion it would show from leading.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Scored = tuple[str, float]  # a candidate's text and its confidence

# The gates' defaults (the decoder's `model_below` and `start_below`; see DecoderConfig).
MODEL_BELOW = 0.0
START_BELOW = 0.02


def keystrokes_saved(chars: int, confidence: float) -> float:
    """What offering a suggestion of `chars` characters is expected to save: its characters
    less the one keystroke that accepts it, times the chance that it is right."""
    return confidence * (chars - 1)


def lead_gate(below: float, min_confidence: float) -> float:
    """The confidence under which shorter suggestions may lead: `below`, or the client's
    threshold when higher (a line it will not show cannot keep one it would show from leading);
    `below` 0 turns them off whatever the threshold."""
    return max(below, min_confidence) if below > 0 else 0.0


def shown(items: Sequence[Scored], min_confidence: float) -> list[Scored]:
    """The candidates the client shows."""
    return [item for item in items if item[1] >= min_confidence]


def best_saving(items: Sequence[Scored], min_confidence: float) -> float:
    """The most keystrokes any shown candidate is expected to save (0 with none shown)."""
    return max(
        (keystrokes_saved(len(text), conf) for text, conf in shown(items, min_confidence)),
        default=0.0,
    )


def order_retrieved(
    wholes: list[Scored],
    shorter: Callable[[], list[Scored]],
    min_confidence: float,
    shared_below: float,
) -> list[Scored]:
    """Retrieval's answer: whole lines, most confident first. When none reaches the shared
    gate, the shown shorter candidate expected to save the most leads, if it saves more than
    the best whole line shown (it may be a whole line too: listed once). `shorter` is asked
    for only then."""
    if wholes and wholes[0][1] >= lead_gate(shared_below, min_confidence):
        return wholes
    starts = shown(shorter(), min_confidence)
    if not starts:
        return wholes
    text, confidence = max(starts, key=lambda s: keystrokes_saved(len(s[0]), s[1]))
    if keystrokes_saved(len(text), confidence) > best_saving(wholes[:1], min_confidence):
        return [(text, confidence), *(w for w in wholes if w[0] != text)]
    return wholes


def copies_suffice(retrieved: Sequence[Scored], n: int, model_below: float) -> bool:
    """Retrieval found the n candidates asked for, the n-th at least `model_below` sure: the
    model need not decode lines."""
    return len(retrieved) >= n and retrieved[n - 1][1] >= model_below


def start_gate(start_below: float, min_confidence: float, light: bool) -> float:
    """Below this best confidence the model's confident start is tried; never for a light
    request (the daemon is busy: no extra decoding)."""
    return 0.0 if light else lead_gate(start_below, min_confidence)


def order_merged(merged: dict[str, float], model_ran: bool, lead: Scored | None) -> list[Scored]:
    """The final order: the model's confident start first when it was chosen; then most
    confident first when the model ran, else retrieval's own order (a shared start may lead
    more confident lines)."""
    ranked = sorted(merged.items(), key=lambda item: -item[1]) if model_ran else [*merged.items()]
    if lead is None:
        return ranked
    text = lead[0]
    return [(text, max(lead[1], merged.get(text, 0.0))), *(i for i in ranked if i[0] != text)]
