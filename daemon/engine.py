"""The inference engine: one onnxruntime session over a bundle's model.

`Engine` is the small protocol the decoder needs, so decoder and servicers can be tested with a
fake engine. Session settings are chosen for an interactive daemon: one intra-op thread (a step
is tens of microseconds; more threads cost CPU and latency jitter) and no spinning threads, so an
idle daemon uses no CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from completiond.core.errors import BundleError

log = logging.getLogger(__name__)

State = tuple[np.ndarray, np.ndarray]  # h, c: float32 [layers, batch, hidden]


class Engine(Protocol):
    vocab_size: int

    def zero_state(self, batch: int) -> State: ...

    def run(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """ids int64 [batch, time] -> logits float32 [batch, time, vocab], new state."""
        ...


@dataclass
class EngineConfig:
    provider: str = (
        "auto"  # "auto" (CUDA when onnxruntime-gpu and a GPU are present), "cpu", "cuda"
    )
    intra_op_threads: int = 1  # see the module docstring


def _providers(choice: str) -> list[str]:
    available = ort.get_available_providers()
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        _preload_cuda_libraries()
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if choice == "cuda":
        raise BundleError("the CUDA provider was requested but onnxruntime-gpu is not installed")
    return ["CPUExecutionProvider"]


def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the `nvidia-*` wheels (or PyTorch) before the CUDA provider
    needs them, so `pip install '.[cuda]'` serves on the GPU without LD_LIBRARY_PATH.
    onnxruntime-gpu >= 1.21 has `preload_dlls`; a failure leaves the system's libraries."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # a missing library shows up as the CPU fallback below
        log.info("onnxruntime: could not preload the CUDA libraries: %s", exc)


class OnnxEngine:
    """Runs a bundle's `model.onnx`; verifies its inputs and outputs on load."""

    def __init__(self, model_path: Path, vocab_size: int, config: EngineConfig | None = None):
        config = config or EngineConfig()
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3  # warnings from onnxruntime are not the user's concern
        try:
            self.session = ort.InferenceSession(
                str(model_path), options, providers=_providers(config.provider)
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise BundleError(f"cannot load {model_path}: {exc}") from exc
        self.provider = self.session.get_providers()[0]
        if config.provider != "cpu" and self.provider == "CPUExecutionProvider":
            log.info("onnxruntime: serving on the CPU (no CUDA provider available)")
        self.vocab_size = vocab_size
        self.num_layers, self.hidden_size = self._check_signature(model_path)

    def _check_signature(self, model_path: Path) -> tuple[int, int]:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if set(inputs) != {"ids", "h", "c"} or set(outputs) != {"logits", "h_out", "c_out"}:
            raise BundleError(f"{model_path}: not a completiond model (inputs {sorted(inputs)})")
        h_shape = inputs["h"].shape
        logits_shape = outputs["logits"].shape
        if (
            len(inputs["ids"].shape) != 2
            or len(h_shape) != 3
            or not isinstance(h_shape[0], int)
            or not isinstance(h_shape[2], int)
            or logits_shape[-1] != self.vocab_size
        ):
            raise BundleError(f"{model_path}: unexpected shapes ids/h/logits")
        return h_shape[0], h_shape[2]

    def zero_state(self, batch: int) -> State:
        shape = (self.num_layers, batch, self.hidden_size)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def run(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        logits, h, c = self.session.run(None, {"ids": ids, "h": state[0], "c": state[1]})
        return logits, (h, c)
