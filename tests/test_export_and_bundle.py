"""PyTorch-vs-ONNX parity, the bundle contract and the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from completiond.core.bundle import MODEL_FILE, ModelStore, load_bundle
from completiond.core.errors import BundleError, ExportError
from completiond.daemon.engine import OnnxEngine
from completiond.training.export import (
    ServedGraph,
    check_parity,
    export_onnx,
    onnx_bits_per_char,
    quantize_if_lossless,
)
from completiond.training.model import CharLSTM, ModelConfig


@pytest.mark.parametrize("layers", [1, 2])
def test_onnx_matches_pytorch_at_several_batch_and_time_sizes(tmp_path: Path, layers: int) -> None:
    torch.manual_seed(0)
    model = CharLSTM(ModelConfig(vocab_size=40, hidden_size=24, num_layers=layers, embed_dim=8))
    export_onnx(model, tmp_path / "m.onnx")
    assert check_parity(model, tmp_path / "m.onnx") < 1e-4
    engine = OnnxEngine(tmp_path / "m.onnx", vocab_size=40)
    assert (engine.num_layers, engine.hidden_size) == (layers, 24)
    for batch, steps in [(1, 1), (2, 50), (5, 3)]:
        ids = np.random.default_rng(batch).integers(0, 40, (batch, steps))
        logits, (h, c) = engine.run(ids, engine.zero_state(batch))
        with torch.no_grad():
            want, wh, wc = ServedGraph(model)(torch.from_numpy(ids), *model.initial_state(batch))
        assert logits.shape == (batch, steps, 40)
        np.testing.assert_allclose(logits, want.numpy(), atol=1e-4)
        np.testing.assert_allclose(h, wh.numpy(), atol=1e-5)
        np.testing.assert_allclose(c, wc.numpy(), atol=1e-5)


def test_the_graph_outputs_normalised_log_probabilities(tmp_path: Path) -> None:
    model = CharLSTM(ModelConfig(vocab_size=30, hidden_size=16, embed_dim=8))
    export_onnx(model, tmp_path / "m.onnx")
    engine = OnnxEngine(tmp_path / "m.onnx", vocab_size=30)
    logp, _ = engine.run(np.array([[1, 2, 3]], np.int64), engine.zero_state(1))
    np.testing.assert_allclose(np.exp(logp).sum(axis=-1), 1.0, rtol=1e-5)


def test_int8_weights_are_kept_only_when_nearly_lossless(trained_store: ModelStore) -> None:
    bundle = trained_store.current()
    weights = bundle.meta["weights"]
    loss = weights["int8_val_bpc"] / weights["fp32_val_bpc"] - 1
    assert weights["int8"] == (loss <= 0.01)
    ids = bundle.tokenizer.encode("def handler_1(request):\n    return respond(value)\n" * 20)
    assert abs(onnx_bits_per_char(bundle.model_path, ids) - 0.0) < 5  # a real, finite score


def test_quantization_keeps_fp32_when_int8_costs_too_much(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CharLSTM(ModelConfig(vocab_size=30, hidden_size=16, embed_dim=8))
    export_onnx(model, tmp_path / "m.onnx")
    before = (tmp_path / "m.onnx").read_bytes()
    ids = np.random.default_rng(0).integers(1, 30, 4000)
    # A bar no int8 model clears (it would have to halve the loss): the fp32 file stays.
    result = quantize_if_lossless(tmp_path / "m.onnx", ids, max_loss=-0.5)
    assert result["int8"] is False and result["int8_val_bpc"] > 0
    assert (tmp_path / "m.onnx").read_bytes() == before
    assert not (tmp_path / "m.int8.onnx").exists()
    assert quantize_if_lossless(tmp_path / "m.onnx", ids)["int8"] is True  # random weights: ~0
    assert (tmp_path / "m.onnx").read_bytes() != before


def test_parity_check_refuses_an_export_that_differs(tmp_path: Path) -> None:
    model = CharLSTM(ModelConfig(vocab_size=30, hidden_size=16, embed_dim=8))
    export_onnx(model, tmp_path / "m.onnx")
    with torch.no_grad():
        model.head.weight[0] += 0.05  # the PyTorch model moved on; the file did not
    with pytest.raises(ExportError, match="differs from PyTorch"):
        check_parity(model, tmp_path / "m.onnx")


def test_published_bundle_is_self_describing(trained_store: ModelStore) -> None:
    bundle = trained_store.current()
    meta = bundle.meta
    assert trained_store.current_version() == bundle.version == meta["version"]
    assert meta["model"]["vocab_size"] == bundle.tokenizer.vocab_size
    assert meta["corpus"]["train_files"] >= 1 and meta["corpus"]["val_files"] >= 1
    assert meta["corpus"]["commit"]  # the fixture is a git repository with a commit
    assert 0 < meta["val_bpc"] < 2.0  # the tiny model learned the regular fixture code
    assert meta["parity_max_abs_diff"] < 1e-4
    assert set(meta["sha256"]) == {"model.onnx", "tokenizer.json", "weights.npz"}
    assert meta["promoted"] and meta["previous"] is None and meta["warm_start_from"] is None


def copy_store(store: ModelStore, dest: Path) -> ModelStore:
    shutil.copytree(store.root, dest)
    return ModelStore(dest)


def test_a_corrupt_model_file_is_refused(trained_store: ModelStore, tmp_path: Path) -> None:
    store = copy_store(trained_store, tmp_path / "s")
    model = store.current().model_path
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(BundleError, match="does not match its hash"):
        store.current()


def test_a_missing_file_or_meta_is_refused(trained_store: ModelStore, tmp_path: Path) -> None:
    store = copy_store(trained_store, tmp_path / "s")
    directory = store.current().directory
    (directory / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json is missing"):
        load_bundle(directory)
    (directory / "meta.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"unreadable meta\.json"):
        load_bundle(directory)


def test_an_onnx_file_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    model = CharLSTM(ModelConfig(vocab_size=30, hidden_size=16, embed_dim=8))
    export_onnx(model, tmp_path / MODEL_FILE)
    with pytest.raises(BundleError, match="unexpected shapes"):
        OnnxEngine(tmp_path / MODEL_FILE, vocab_size=31)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(BundleError, match="cannot load"):
        OnnxEngine(tmp_path / "junk.onnx", vocab_size=30)


def test_store_keeps_the_last_bundles_and_the_current_one(
    trained_store: ModelStore, tmp_path: Path
) -> None:
    store = copy_store(trained_store, tmp_path / "s")
    store.keep = 2
    source = store.current()
    meta = {k: v for k, v in source.meta.items() if k not in ("sha256", "format")}
    files = shutil.copytree(source.directory, tmp_path / "files")  # the source gets pruned
    versions = []
    for i in range(4):
        version = f"29990101-00000{i}-abcd"
        staging = store.staging_dir(version)
        for name in ("model.onnx", "tokenizer.json"):
            shutil.copy(files / name, staging / name)
        versions.append(store.publish(staging, {**meta, "version": version}).version)
    assert store.current_version() == versions[-1]
    assert store.versions() == versions[-2:]
    assert json.loads((store.bundles_dir / versions[-1] / "meta.json").read_text())["format"] == 1
