"""Each training run chooses whether its model is served with the current file as its cache."""

from __future__ import annotations

import random

from completiond.completion.file_cache import FileCacheConfig
from completiond.core.bundle import ModelStore
from completiond.daemon.model_slot import ModelSlot
from completiond.training.file_cache_fit import CacheFitConfig, fit_file_cache


def _names_the_model_never_saw(files: int) -> dict[str, str]:
    """Files whose lines repeat, each with names of its own: only the file itself knows them."""
    rng = random.Random(0)

    def name() -> str:
        return "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(7))

    texts = {}
    for n in range(files):
        a, b, c = name(), name(), name()
        line = f"    {a}_total = {b}_compute({c}_items, {a}_limit)\n"
        texts[f"m{n}.py"] = f"def first():\n{line}\n\ndef second():\n{line}"
    return texts


def test_the_cache_is_chosen_where_lines_repeat_names_only_the_file_has(
    trained_store: ModelStore,
) -> None:
    bundle = trained_store.current()
    texts = _names_the_model_never_saw(40)
    fit = fit_file_cache(bundle.model_path, bundle.tokenizer, texts, CacheFitConfig())
    assert fit["kappa"] == 4.0
    assert fit["exact"]["4"] > fit["exact"]["0"] and fit["lines"] > 0


def test_a_training_run_records_its_choice_and_the_daemon_serves_with_it(
    trained_store: ModelStore,
) -> None:
    bundle = trained_store.current()
    fit = bundle.meta["file_cache"]
    tried = [float(k) for k in fit["exact"]]
    best = max(tried, key=lambda k: (fit["exact"][f"{k:g}"], -tried.index(k)))
    assert fit["kappa"] == best and fit["lines"] > 0
    served = ModelSlot(trained_store).load_current()
    assert served.decoder.config.file_cache.kappa == fit["kappa"]
    fixed = FileCacheConfig(kappa=16.0, from_model=False)
    slot = ModelSlot(trained_store)
    slot.decoder_config.file_cache = fixed
    assert slot.load_current().decoder.config.file_cache.kappa == 16.0
