"""Beyond one CPU: device selection, DDP on several processes, the streaming data path."""

from __future__ import annotations

import socket
import tracemalloc
from datetime import timedelta
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.distributed as dist

from completiond.core.bundle import ModelStore
from completiond.core.errors import BundleError, CompletiondError, DeviceUnavailable, TrainingFailed
from completiond.core.tokenizer import CharTokenizer
from completiond.daemon.engine import EngineConfig, OnnxEngine
from completiond.training.distributed import (
    DistEnv,
    _first_failed,
    loopback_store,
    shard_files,
    train_distributed,
)
from completiond.training.model import ModelConfig
from completiond.training.run import train_repository
from completiond.training.train import (
    StreamedText,
    TrainConfig,
    resolve_device,
    stream_windows,
)

from .conftest import TINY_MODEL, TINY_TRAIN

NO_GPU = not torch.cuda.is_available()
STEPS = 300
# Two processes against one, after the same STEPS steps, seed 0: validation bits/char may differ
# by at most this much. The runs cannot be equal bit for bit: each rank reads its own shard of
# the files with its own stream offsets and DDP averages two ranks' gradients, so every step
# sees twice the characters. Measured here: |difference| <= 0.017 over seeds 0-2, while the seed
# alone moves a single-process run by up to 0.095; 0.05 leaves margin for bf16 and thread-count
# noise yet stays well inside that spread. A DDP that fails to average gradients or to share
# the learning rate shows in replica_max_abs_diff (asserted 0) rather than here.
BPC_TOLERANCE = 0.05


def tiny_train(**overrides: object) -> TrainConfig:
    return TrainConfig(minutes=5, **{**TINY_TRAIN, **overrides})  # type: ignore[arg-type]


# --- devices ---------------------------------------------------------------------------------


@pytest.mark.skipif(not NO_GPU, reason="checks the error raised where no GPU exists")
def test_cuda_without_a_gpu_is_a_clear_error(fixture_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(DeviceUnavailable, match="no CUDA GPU") as caught:
        resolve_device("cuda")
    assert isinstance(caught.value, CompletiondError) and isinstance(caught.value, ValueError)
    assert "--device cpu" in str(caught.value)
    with pytest.raises(DeviceUnavailable):  # before any process starts
        train_distributed(
            fixture_repo, tmp_path, ModelConfig(**TINY_MODEL), tiny_train(device="cuda"), 2
        )
    with pytest.raises(DeviceUnavailable):
        train_repository(fixture_repo, ModelStore(tmp_path), ModelConfig(**TINY_MODEL),
                         tiny_train(device="cuda", max_steps=2))  # fmt: skip
    assert ModelStore(tmp_path).versions() == []
    assert resolve_device("auto").type == "cpu"


def test_an_unknown_device_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown training device 'tpu'"):
        resolve_device("tpu")


def test_the_bundle_records_the_device(trained_store: ModelStore) -> None:
    meta = trained_store.current().meta
    assert meta["device"] == ("cpu" if NO_GPU else "cuda")
    assert meta["world_size"] == 1 and meta["precision"] in ("bf16", "fp16", "fp32")
    assert meta["streamed"] is False


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU (PyTorch sees none)")
def test_a_cuda_run_trains_on_the_gpu_and_exports_a_matching_model(
    fixture_repo: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path)
    result = train_repository(
        fixture_repo, store, ModelConfig(**TINY_MODEL), tiny_train(device="cuda", max_steps=60)
    )
    meta = result.bundle.meta
    assert meta["device"] == "cuda" and meta["device_name"]
    assert meta["precision"] in ("bf16", "fp16", "fp32")
    assert meta["parity_max_abs_diff"] < 1e-4  # exported from CPU weights, checked on the CPU
    assert 0 < meta["val_bpc"] < 4.0


ORT_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_serving_picks_the_cuda_provider_only_where_it_exists(trained_store: ModelStore) -> None:
    bundle = trained_store.current()
    model, vocab = bundle.model_path, bundle.tokenizer.vocab_size
    assert OnnxEngine(model, vocab, EngineConfig(provider="cpu")).provider == "CPUExecutionProvider"
    auto = OnnxEngine(model, vocab, EngineConfig(provider="auto")).provider
    if not ORT_CUDA:
        assert auto == "CPUExecutionProvider"
        with pytest.raises(BundleError, match="onnxruntime-gpu is not installed"):
            OnnxEngine(model, vocab, EngineConfig(provider="cuda"))
    elif not NO_GPU:  # onnxruntime-gpu and a GPU (bench/gpu_check.sh runs this)
        assert auto == "CUDAExecutionProvider"


@pytest.mark.skipif(
    NO_GPU or torch.cuda.device_count() < 2, reason="needs two CUDA GPUs for NCCL DDP"
)
def test_two_gpu_processes_train_with_nccl(fixture_repo: Path, tmp_path: Path) -> None:
    config = tiny_train(device="cuda", max_steps=40, threads=0)
    result = train_distributed(fixture_repo, tmp_path, ModelConfig(**TINY_MODEL), config, 2)
    meta = result.bundle.meta
    assert meta["distributed"]["backend"] == "nccl" and meta["world_size"] == 2
    assert meta["replica_max_abs_diff"] == 0.0


# --- several processes -----------------------------------------------------------------------


def test_sharding_is_by_file_deterministic_and_balanced() -> None:
    files = [f"pkg/m{i:02d}.py" for i in range(23)]
    sizes = [(i * 7919) % 5000 + 100 for i in range(23)]
    shards = shard_files(files, sizes, 3)
    assert shards == shard_files(files, sizes, 3)
    assert shards == shard_files(files[::-1], sizes[::-1], 3)  # input order does not matter
    assert sorted(f for shard in shards for f in shard) == files  # every file exactly once
    loads = [sum(sizes[files.index(f)] for f in shard) for shard in shards]
    assert max(loads) - min(loads) <= max(sizes)
    assert shard_files(["a", "b"], [10, 10], 2) == [["a"], ["b"]]


def test_the_torchrun_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert DistEnv.from_environ() is None
    for name, value in {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert DistEnv.from_environ() == DistEnv(5, 8, 1, 4)


def test_two_processes_match_one_and_only_rank_0_publishes(
    fixture_repo: Path, tmp_path: Path
) -> None:
    model = ModelConfig(**TINY_MODEL)
    single = train_repository(
        fixture_repo, ModelStore(tmp_path / "one"), model, tiny_train(max_steps=STEPS)
    ).bundle.meta
    # threads=0: each process takes cores // 2 threads, as `completiond train --nproc 2` does.
    result = train_distributed(
        fixture_repo, tmp_path / "two", model, tiny_train(max_steps=STEPS, threads=0), 2
    )
    meta = result.bundle.meta
    store = ModelStore(tmp_path / "two")
    assert store.versions() == [result.bundle.version] == [store.current_version()]
    assert result.promoted and result.reason == "first model"
    assert meta["world_size"] == 2 and meta["steps"] == single["steps"] == STEPS
    assert meta["distributed"]["backend"] == "gloo"
    assert sum(meta["distributed"]["shard_files"]) == meta["corpus"]["train_files"]
    assert min(meta["distributed"]["shard_files"]) >= 1
    assert meta["replica_max_abs_diff"] == 0.0  # the ranks ended with the very same weights
    assert meta["parity_max_abs_diff"] < 1e-4
    assert abs(meta["train_val_bpc"] - single["train_val_bpc"]) <= BPC_TOLERANCE, (
        meta["train_val_bpc"],
        single["train_val_bpc"],
    )


# --- streaming data path ---------------------------------------------------------------------


def write_corpus(root: Path, target_chars: int) -> tuple[list[str], int]:
    body = "".join(
        f"def step_{i}(alpha, beta):\n    return alpha * {i} + beta\n\n"
        for i in range(3000)  # under the file size limit
    )
    files: list[str] = []
    while len(files) * len(body) < target_chars:
        files.append(f"mod_{len(files):03d}.py")
        (root / files[-1]).write_text(body)
    return files, len(files) * len(body)


def test_streaming_reads_a_30_mb_corpus_in_a_few_mb(tmp_path: Path) -> None:
    files, total = write_corpus(tmp_path, 30_000_000)
    tokenizer = CharTokenizer.fit([(tmp_path / files[0]).read_text()])
    data = StreamedText(tmp_path, files, tokenizer, total, piece_chars=65_536)
    tracemalloc.start()
    try:
        windows = stream_windows(data, batch=32, seq_len=128)
        read = sum(next(windows).size for _ in range(total // (32 * 128) - 64))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read > 0.99 * total  # the whole corpus went through
    # Encoded whole it would take 8 bytes a character (240 MB); streamed: 32 streams of one
    # 64K piece each (uint8) plus one file's text and one piece being encoded.
    assert peak < 8_000_000, f"peak {peak / 1e6:.1f} MB"


def test_streams_read_the_files_as_one_contiguous_text(tmp_path: Path) -> None:
    texts = {"a.py": "x = 1\n" * 50, "b.py": "y = 22\n" * 40, "c.py": "z\n"}
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    whole = "".join(texts.values())
    tokenizer = CharTokenizer.fit([whole])
    data = StreamedText(tmp_path, list(texts), tokenizer, len(whole), piece_chars=7)
    windows = stream_windows(data, batch=1, seq_len=10)
    ids = np.concatenate([next(windows)[0, :10] for _ in range(len(whole) // 10)])
    assert tokenizer.decode(ids) == whole[: len(ids)]


def test_a_large_corpus_trains_from_streamed_files(fixture_repo: Path, tmp_path: Path) -> None:
    result = train_repository(
        fixture_repo,
        ModelStore(tmp_path),
        ModelConfig(**TINY_MODEL),
        tiny_train(max_steps=60, stream_above_chars=0, warm_start=False),
    )
    meta = result.bundle.meta
    assert meta["streamed"] is True and meta["steps"] == 60
    assert meta["corpus"]["train_chars"] > 0 and meta["val_bpc"] < 4.0


def test_a_failure_on_rank_0_stops_every_process(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainingFailed, match="no trainable source files"):
        train_distributed(empty, tmp_path / "store", ModelConfig(**TINY_MODEL), tiny_train(), 2)
    assert ModelStore(tmp_path / "store").versions() == []


def test_the_rank_that_failed_by_itself_is_blamed_not_one_that_was_stopped() -> None:
    assert _first_failed([-15, -6]) == 1  # rank 1 aborted, rank 0 was terminated because of it
    assert _first_failed([-15, 0]) == 0
    assert _first_failed([0, 1, -15]) == 1
    assert _first_failed([0, 0]) == 0


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_the_rendezvous_store_serves_ranks_on_loopback_only() -> None:
    store, listener = loopback_store(2)
    try:
        port = listener.getsockname()[1]
        client = dist.TCPStore("127.0.0.1", port, 2, False, timedelta(seconds=10))
        client.set("key", "value")
        assert store.get("key") == b"value"
        outward = _outward_address()
        if outward is not None:
            with pytest.raises(OSError):
                socket.create_connection((outward, port), timeout=2).close()
    finally:
        listener.close()


def test_two_processes_stream_their_shards_of_a_large_corpus(
    fixture_repo: Path, tmp_path: Path
) -> None:
    config = tiny_train(max_steps=30, threads=0, stream_above_chars=0)
    result = train_distributed(fixture_repo, tmp_path, ModelConfig(**TINY_MODEL), config, 2)
    meta = result.bundle.meta
    assert meta["streamed"] is True and meta["world_size"] == 2 and meta["steps"] == 30
    assert meta["replica_max_abs_diff"] == 0.0
