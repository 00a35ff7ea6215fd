"""The served model and its atomic replacement.

A `ServedModel` bundles everything a request needs (bundle metadata, engine, decoder with its
per-document state cache, which therefore starts empty with every new model); the slot
holds exactly one and replaces it with a single reference assignment, so an in-flight request
keeps the model it started with and never sees a half-loaded one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

from completiond.completion.calibration import CALIBRATION_FILE, load_calibration
from completiond.completion.declined import DeclinedSuggestions
from completiond.completion.file_cache import FileCacheConfig, chosen_kappa
from completiond.completion.retrieval import RetrievalConfig, Retriever
from completiond.core.bundle import Bundle, ModelStore
from completiond.core.errors import BundleError, NoModel
from completiond.core.index import INDEX_FILE, RepoIndex, Searchable, load_usable

from .decoder import Decoder, DecoderConfig
from .engine import EngineConfig, OnnxEngine
from .state_cache import ContextConfig, DocumentStates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    bundle: Bundle
    engine: OnnxEngine
    decoder: Decoder

    @property
    def version(self) -> str:
        return self.bundle.version


class ModelSlot:
    def __init__(
        self,
        store: ModelStore,
        engine_config: EngineConfig | None = None,
        decoder_config: DecoderConfig | None = None,
        context_config: ContextConfig | None = None,
        retrieval_config: RetrievalConfig | None = None,
        index: Searchable | None = None,
    ) -> None:
        self.store = store
        self.index = index  # the daemon's, kept up to date; else the store's index as it is
        self.engine_config = engine_config or EngineConfig()
        self.decoder_config = decoder_config or DecoderConfig()
        self.context_config = context_config or ContextConfig()
        self.retrieval_config = retrieval_config or RetrievalConfig()
        # What users typed through outlives a model swap: it is about their code, not the model.
        self.declined = DeclinedSuggestions(
            self.decoder_config.declined_documents, self.decoder_config.declined_below
        )
        self._model: ServedModel | None = None
        self._load_lock = threading.Lock()

    def get(self) -> ServedModel:
        model = self._model
        if model is None:
            raise NoModel(
                "no model for this repository yet: the daemon is training one "
                "(see `completiond status`) or run `completiond retrain`"
            )
        return model

    @property
    def loaded(self) -> ServedModel | None:
        return self._model

    def load_current(self) -> ServedModel:
        """Load and verify the store's current bundle, warm it, then swap it in.

        Raises BundleError (and keeps serving the previous model) when it does not verify."""
        with self._load_lock:
            bundle = self.store.current()
            engine = OnnxEngine(bundle.model_path, bundle.tokenizer.vocab_size, self.engine_config)
            states = DocumentStates(engine, bundle.tokenizer, self.context_config)
            retriever = self._retriever()
            decoding = replace(
                self.decoder_config,
                file_cache=chosen_file_cache(bundle, self.decoder_config.file_cache),
            )
            decoder = Decoder(engine, bundle.tokenizer, states, decoding, retriever, self.declined)
            engine.run(bundle.tokenizer.encode("def f(x):\n    ")[None, :], engine.zero_state(1))
            self._model = ServedModel(bundle, engine, decoder)
            log.info("serving model %s", bundle.version)
            return self._model

    def reload_calibration(self) -> None:
        """Use the store's confidence weights as they are now (a training run refitted them)."""
        model = self._model
        if model is not None:
            model.decoder.retriever = self._retriever()

    def _retriever(self) -> Retriever:
        index = self.index if self.index is not None else load_index(self.store)
        return Retriever(index, calibrated(self.store, self.retrieval_config))

    def load_newest_usable(self) -> list[str]:
        """At start-up: the current bundle, else the newest one that verifies (made current).

        Returns what was wrong on the way, for the user; an empty store is not a problem."""
        problems: list[str] = []
        current = self.store.current_version()
        candidates = [current] if current else []
        candidates += [v for v in reversed(self.store.versions()) if v != current]
        for version in candidates:
            try:
                if version != current:
                    self.store.set_current(version)
                self.load_current()
            except BundleError as exc:
                problems.append(f"the stored model is unusable: {exc}")
                continue
            if problems:
                problems.append(f"serving the last good model, {version}")
            break
        return problems

    def rollback(self, version: str = "") -> ServedModel:
        """Serve an earlier bundle again: `version`, or the newest one older than the current."""
        current = self.store.current_version()
        if not version:
            older = [v for v in self.store.versions() if current is None or v < current]
            if not older:
                raise BundleError("there is no earlier model to roll back to")
            version = older[-1]
        if version not in self.store.versions():
            raise BundleError(
                f"no model {version!r} in the store ({', '.join(self.store.versions())})"
            )
        previous = current
        self.store.set_current(version)
        try:
            return self.load_current()
        except BundleError:
            if previous:
                self.store.set_current(previous)
            raise


def chosen_file_cache(bundle: Bundle, config: FileCacheConfig) -> FileCacheConfig:
    """`config` with the weight chosen for this model when it was trained, if it asks for that
    and the model has one (models trained before the choice keep `config.kappa`)."""
    chosen = chosen_kappa(bundle.meta)
    if not config.from_model or chosen is None:
        return config
    return replace(config, kappa=chosen)


def calibrated(store: ModelStore, config: RetrievalConfig) -> RetrievalConfig:
    """`config` with the confidence weights the last training run fitted to the repository
    (the defaults when there are none)."""
    calibration = load_calibration(store.root / CALIBRATION_FILE)
    return replace(config, weights=calibration.weights) if calibration else config


def load_index(store: ModelStore) -> RepoIndex | None:
    """The store's repository index, or None (only the current file is searched)."""
    return load_usable(store.root / INDEX_FILE)
