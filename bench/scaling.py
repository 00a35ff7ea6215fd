"""Beyond one CPU: training throughput on 1..N CPU processes (DDP, gloo) and on the GPU, the
PyTorch/ONNX parity of a GPU-trained model, and serving latency and batch throughput through the
daemon's engine (onnxruntime) on the CPU and with the CUDA provider. Prints one table.

Corpus: packages of this machine's Python standard library (nothing is downloaded). Each
training row is a real `completiond train` run from scratch (`train_distributed`) with a budget
of about `--seconds` of training; chars/s is the training loop's, all processes together.

    .venv/bin/python bench/scaling.py                       # CPU: 1 and 2 processes, 20 s each
    .venv/bin/python bench/scaling.py --seconds 10 --nproc 1 2 4
    bench/gpu_check.sh                                      # adds the GPU rows (NVIDIA GPU)

Without a GPU (PyTorch's or onnxruntime's CUDA provider), the GPU rows say so.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from bpc import PACKAGES, stdlib_corpus  # bench/ is on the path when this script runs

from completiond.core.bundle import WEIGHTS_FILE
from completiond.core.errors import BundleError
from completiond.daemon.engine import EngineConfig, OnnxEngine
from completiond.training.distributed import cpu_cores, train_distributed
from completiond.training.export import (
    OUTPUTS,
    PARITY_SHAPES,
    PARITY_TOLERANCE,
    ServedGraph,
    export_onnx,
)
from completiond.training.model import CharLSTM, ModelConfig
from completiond.training.train import TrainConfig

Row = tuple[str, str, str]  # what, CPU, GPU


def train_row(
    repo: Path, scratch: Path, args: argparse.Namespace, device: str, nproc: int
) -> dict[str, Any]:
    """One training run; its bundle's meta."""
    budget_s = args.seconds / 0.9  # run.py keeps 10% of a short budget for the export
    config = TrainConfig(
        minutes=budget_s / 60,
        device=device,
        threads=0,  # 1 process: all cores; N processes: cores // N each
        warm_start=False,
        int8=False,  # the fp32 model: parity and the serving rows compare it
        eval_interval_s=1e9,  # one validation, at the end
    )
    store = scratch / f"store-{device}-{nproc}"
    result = train_distributed(
        repo, store, ModelConfig(hidden_size=args.hidden_size), config, nproc
    )
    return result.bundle.meta | {"directory": result.bundle.directory}


def cuda_parity(model_dir: Path, vocab_size: int) -> tuple[float, float, str]:
    """Max |difference| between the GPU-trained weights run by PyTorch on CUDA (fp32, TF32 off)
    and the exported graph run by onnxruntime on the CPU and with the CUDA provider."""
    config = ModelConfig(**{**_meta_model(model_dir), "vocab_size": vocab_size})
    model = CharLSTM(config)
    with np.load(model_dir / WEIGHTS_FILE) as arrays:
        model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in arrays.files})
    model.eval()
    path = model_dir.parent.parent / "parity.onnx"
    export_onnx(model, path)  # the bundle's model.onnx may be int8; parity is about fp32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    graph = ServedGraph(model).cuda().eval()
    cpu = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        gpu = ort.InferenceSession(
            str(path),
            providers=[("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"],
        )
    except Exception:  # an onnxruntime without that option
        gpu = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst_cpu = worst_gpu = 0.0
    for batch, steps in PARITY_SHAPES:
        ids = torch.randint(0, vocab_size, (batch, steps), generator=gen)
        h = torch.randn(config.num_layers, batch, config.hidden_size, generator=gen) * 0.5
        c = torch.randn(config.num_layers, batch, config.hidden_size, generator=gen) * 0.5
        with torch.no_grad():
            want = [t.cpu().numpy() for t in graph(ids.cuda(), h.cuda(), c.cuda())]
        feed = {"ids": ids.numpy(), "h": h.numpy(), "c": c.numpy()}
        for session, is_gpu in ((cpu, False), (gpu, True)):
            got = session.run(list(OUTPUTS), feed)
            diff = max(float(np.max(np.abs(w - g))) for w, g in zip(want, got, strict=True))
            if is_gpu:
                worst_gpu = max(worst_gpu, diff)
            else:
                worst_cpu = max(worst_cpu, diff)
    return worst_cpu, worst_gpu, gpu.get_providers()[0]


def _meta_model(model_dir: Path) -> dict[str, Any]:
    model = json.loads((model_dir / "meta.json").read_text())["model"]
    return {k: v for k, v in model.items() if k != "vocab_size"}


def timed(call: Callable[[], object], seconds: float, min_calls: int = 20) -> list[float]:
    for _ in range(5):  # warm-up (CUDA kernels, allocator)
        call()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < min_calls:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def serving(model_path: Path, vocab_size: int, provider: str, seconds: float) -> dict[str, str]:
    """The daemon's engine on one provider: latency of the calls a completion makes, and the
    throughput of large batches."""
    try:
        engine = OnnxEngine(model_path, vocab_size, EngineConfig(provider=provider))
    except BundleError as exc:
        return {"provider": f"n/a ({exc})"}
    rng = np.random.default_rng(0)
    out = {"provider": engine.provider.replace("ExecutionProvider", "")}

    def call(batch: int, steps: int) -> Callable[[], object]:
        ids = rng.integers(1, vocab_size, (batch, steps))
        state = engine.zero_state(batch)
        return lambda: engine.run(ids, state)

    cases = [("", call)]
    if engine.provider == "CUDAExecutionProvider":
        cases.append(("bound ", lambda batch, steps: bound_call(engine, batch, steps, rng)))
    for tag, make in cases:
        for name, batch, steps in (("keystroke", 1, 1), ("beam", 4, 1), ("prefix", 1, 512)):
            ms = np.array(timed(make(batch, steps), seconds)) * 1000
            out[tag + name] = f"{np.percentile(ms, 50):.3f} / {np.percentile(ms, 99):.3f}"
        for batch, steps in ((64, 1), (256, 64)):
            runs = timed(make(batch, steps), seconds)
            out[f"{tag}batch{batch}x{steps}"] = f"{batch * steps * len(runs) / sum(runs):,.0f}"
    return out


def bound_call(engine: OnnxEngine, batch: int, steps: int, rng: np.random.Generator):
    """One engine step with IO binding: the LSTM state stays on the GPU from one call to the
    next (two buffers in turn), only the ids go up and the logits come back, to see whether
    keeping the state on the device pays for the daemon's calls."""
    session = engine.session
    shape = (engine.num_layers, batch, engine.hidden_size)

    def on_gpu() -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32), "cuda", 0)

    first, second = (on_gpu(), on_gpu()), (on_gpu(), on_gpu())
    turns = itertools.cycle([(first, second), (second, first)])  # (source, target) in turn
    ids = rng.integers(1, engine.vocab_size, (batch, steps))
    binding = session.io_binding()

    def step() -> np.ndarray:
        source, target = next(turns)
        binding.bind_cpu_input("ids", ids)
        binding.bind_ortvalue_input("h", source[0])
        binding.bind_ortvalue_input("c", source[1])
        binding.bind_output("logits", "cpu")
        binding.bind_ortvalue_output("h_out", target[0])
        binding.bind_ortvalue_output("c_out", target[1])
        session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="training per run")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="CPU processes")
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES))
    parser.add_argument("--hidden-size", type=int, default=ModelConfig.hidden_size)
    parser.add_argument("--serve-seconds", type=float, default=1.0, help="per serving case")
    args = parser.parse_args()

    gpu = torch.cuda.is_available()
    scratch = Path(tempfile.mkdtemp(prefix="completiond-scaling-"))
    try:
        repo = stdlib_corpus(scratch / "corpus", tuple(args.packages))
        providers = ", ".join(
            p.replace("ExecutionProvider", "") for p in ort.get_available_providers()
        )
        print(
            f"corpus: stdlib {', '.join(args.packages)}; model 1x{args.hidden_size} LSTM; "
            f"{cpu_cores()} CPU cores; torch {torch.__version__}; onnxruntime {ort.__version__} "
            f"({providers}); "
            + (f"GPU: {torch.cuda.get_device_name(0)}" if gpu else "no GPU visible to PyTorch"),
            flush=True,
        )
        rows: list[Row] = []
        metas: dict[str, dict[str, Any]] = {}
        for nproc in args.nproc:
            meta = train_row(repo, scratch, args, "cpu", nproc)
            metas[f"cpu{nproc}"] = meta
            threads = meta.get("distributed", {}).get(
                "threads_per_process", meta["train"]["threads"]
            )
            rows.append(
                (
                    f"training chars/s, {nproc} process{'es' if nproc > 1 else ''} "
                    f"({threads or cpu_cores()} threads{' each' if nproc > 1 else ''})",
                    f"{meta['chars_per_second']:,.0f}  ({meta['train_val_bpc']:.3f} bits/char, "
                    f"{meta['steps']} steps, {meta['precision']})",
                    "",
                )
            )
            print(f"  {rows[-1][0]}: {rows[-1][1]}", flush=True)
        base = metas[f"cpu{args.nproc[0]}"]
        if gpu:
            meta = train_row(repo, scratch, args, "cuda", 1)
            metas["gpu"] = meta
            rows.append(
                (
                    "training chars/s, 1 process",
                    f"{base['chars_per_second']:,.0f}",
                    f"{meta['chars_per_second']:,.0f}  ({meta['train_val_bpc']:.3f} bits/char, "
                    f"{meta['steps']} steps, {meta['precision']}, {meta['train']['gpu_batch_size']}"
                    " streams)",
                )
            )
            vocab = meta["model"]["vocab_size"]
            on_cpu, on_gpu, provider = cuda_parity(meta["directory"], vocab)
            verdict = "ok" if max(on_cpu, on_gpu) <= PARITY_TOLERANCE else "ABOVE tolerance"
            rows.append(
                (
                    f"parity: torch CUDA vs onnxruntime (max abs, tolerance {PARITY_TOLERANCE:g})",
                    f"{on_cpu:.2e}",
                    f"{on_gpu:.2e} ({provider.replace('ExecutionProvider', '')}) {verdict}",
                )
            )
            published = f"{meta['parity_max_abs_diff']:.2e}"
            rows.append(("parity at publish (bundle check, on the CPU)", "", published))
        served = metas.get("gpu", base)
        model_path = served["directory"] / "model.onnx"
        vocab = served["model"]["vocab_size"]
        cpu_serve = serving(model_path, vocab, "cpu", args.serve_seconds)
        gpu_serve = (
            serving(model_path, vocab, "cuda", args.serve_seconds)
            if "CUDAExecutionProvider" in ort.get_available_providers()
            else {"provider": "n/a (onnxruntime-gpu not installed)"}
        )
        labels = {
            "provider": "serving: onnxruntime provider (fp32 model, 1 intra-op thread)",
            "keystroke": "serving: keystroke step 1x1, p50 / p99 ms",
            "beam": "serving: beam step 4x1, p50 / p99 ms",
            "prefix": "serving: cold prefix read 1x512, p50 / p99 ms",
            "batch64x1": "serving: batch 64 streams x 1 char, chars/s",
            "batch256x64": "serving: batch 256 streams x 64 chars, chars/s",
        }
        bound = "with IO binding (state kept on the GPU)"
        labels |= {
            f"bound {key}": label.replace("serving:", f"serving {bound}:")
            for key, label in labels.items()
            if key != "provider"
        }
        for key, label in labels.items():
            rows.append((label, cpu_serve.get(key, ""), gpu_serve.get(key, "")))

        print("\n| measure | CPU | GPU |\n|---|---|---|")
        for what, on_cpu_text, on_gpu_text in rows:
            print(f"| {what} | {on_cpu_text} | {on_gpu_text or ('-' if gpu else 'no GPU')} |")
        if not gpu:
            print("\nno GPU: PyTorch sees no CUDA device; the GPU column is empty.")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
