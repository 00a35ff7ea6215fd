"""Does moving the decode loop into the ONNX graph pay? Greedy rest-of-line decoding, two ways.

Same served model, same prefixes (held-out lines of Python standard-library packages, each
prefix's state read once beforehand and not timed), same first character:

- `python loop`: one onnxruntime call per character and the argmax in numpy, as the daemon's
  decoder runs its beams;
- `graph loop`: one call per request, to a model built here around the bundle's own: an ONNX
  `Loop` whose body is the model's step, the argmax and the stop-at-newline test.

Both must produce the same characters (checked); prints p50/p99 per request, the time per
character and the ratio, with 1 and 4 rows decoded together.

    .venv/bin/python bench/graph_loop.py --store DIR   # a store trained before (bench/latency.py)
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from bpc import PACKAGES, stdlib_corpus  # bench/ is on the path when this runs
from onnx import TensorProto, helper

from completiond.core.bundle import ModelStore
from completiond.core.corpus import build_corpus, read_texts
from completiond.daemon.engine import OnnxEngine

MAX_CHARS = 80


def loop_model(model_path: Path, newline: int, out: Path) -> None:
    """The bundle's model wrapped in a greedy decoding Loop: inputs first [B,1], h, c, steps;
    outputs tokens [steps, B, 1] (the emitted characters, the newline included) and h, c."""
    step = onnx.load(str(model_path))
    g = step.graph
    hidden = g.input[1].type.tensor_type.shape.dim[2].dim_value
    layers = g.input[1].type.tensor_type.shape.dim[0].dim_value
    body_nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in g.node]
    rename = {"ids": "token_in", "h": "h_in", "c": "c_in"}
    for node in body_nodes:
        node.input[:] = [rename.get(i, i) for i in node.input]
    body_nodes += [
        helper.make_node("ArgMax", ["logits"], ["next3"], axis=2, keepdims=1),  # [B,1,1]
        helper.make_node("Squeeze", ["next3", "axis2"], ["next"]),  # [B,1]
        helper.make_node("Equal", ["next", "newline"], ["ended"]),
        helper.make_node("Cast", ["ended"], ["ended_i"], to=TensorProto.INT64),
        helper.make_node("ReduceMin", ["ended_i"], ["all_ended"], keepdims=0),  # every row ended
        helper.make_node("Equal", ["all_ended", "zero"], ["go_on"]),
        helper.make_node("Identity", ["next"], ["emitted"]),
    ]
    state = ["batch"]
    body = helper.make_graph(
        body_nodes,
        "greedy_step",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("token_in", TensorProto.INT64, [*state, 1]),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [layers, *state, hidden]),
            helper.make_tensor_value_info("c_in", TensorProto.FLOAT, [layers, *state, hidden]),
        ],
        [
            helper.make_tensor_value_info("go_on", TensorProto.BOOL, []),
            helper.make_tensor_value_info("next", TensorProto.INT64, [*state, 1]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [layers, *state, hidden]),
            helper.make_tensor_value_info("c_out", TensorProto.FLOAT, [layers, *state, hidden]),
            helper.make_tensor_value_info("emitted", TensorProto.INT64, [*state, 1]),
        ],
    )
    outer = helper.make_graph(
        [
            helper.make_node(
                "Loop",
                ["steps", "go", "first", "h", "c"],
                ["last", "h_end", "c_end", "tokens"],
                body=body,
            ),
        ],
        "greedy_decode",
        [
            helper.make_tensor_value_info("first", TensorProto.INT64, [*state, 1]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [layers, *state, hidden]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [layers, *state, hidden]),
            helper.make_tensor_value_info("steps", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["steps", *state, 1]),
            helper.make_tensor_value_info("h_end", TensorProto.FLOAT, [layers, *state, hidden]),
            helper.make_tensor_value_info("c_end", TensorProto.FLOAT, [layers, *state, hidden]),
        ],
        initializer=[
            *g.initializer,
            helper.make_tensor("go", TensorProto.BOOL, [], [True]),
            helper.make_tensor("newline", TensorProto.INT64, [], [newline]),
            helper.make_tensor("zero", TensorProto.INT64, [], [0]),
            helper.make_tensor("axis2", TensorProto.INT64, [1], [2]),
        ],
    )
    model = helper.make_model(outer, opset_imports=step.opset_import)
    model.ir_version = step.ir_version
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def session(path: Path) -> ort.InferenceSession:
    """As the daemon's engine: one thread, no spinning."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def python_loop(engine: OnnxEngine, first: np.ndarray, state, newline: int) -> np.ndarray:
    """[B, chars] greedy characters, one engine call per character, stopping when all rows
    emitted a newline (as the graph does)."""
    out = [first[:, 0]]
    token = first
    ended = first[:, 0] == newline
    for _ in range(MAX_CHARS - 1):
        if ended.all():
            break
        logits, state = engine.run(token, state)
        token = np.argmax(logits[:, -1, :], axis=1)[:, None]
        out.append(token[:, 0])
        ended |= token[:, 0] == newline
    return np.stack(out, axis=1)


def graph_loop(loop: ort.InferenceSession, first: np.ndarray, state) -> np.ndarray:
    steps = np.array(MAX_CHARS - 1, dtype=np.int64)
    tokens, _, _ = loop.run(None, {"first": first, "h": state[0], "c": state[1], "steps": steps})
    return np.concatenate([first, tokens[:, :, 0].T], axis=1)


def trimmed(rows: np.ndarray, newline: int) -> list[list[int]]:
    """Each row up to and including its first newline."""
    result = []
    for row in rows.tolist():
        result.append(row[: row.index(newline) + 1] if newline in row else row)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="a store with a trained model")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the requests")
    args = parser.parse_args()

    bundle = ModelStore(args.store).current()
    tokenizer = bundle.tokenizer
    newline = tokenizer.newline_id
    engine = OnnxEngine(bundle.model_path, tokenizer.vocab_size)
    scratch = Path(tempfile.mkdtemp(prefix="completiond-graph-loop-"))
    loop_path = scratch / "greedy_loop.onnx"
    loop_model(bundle.model_path, newline, loop_path)
    loop = session(loop_path)

    repo = stdlib_corpus(scratch / "corpus", PACKAGES)
    corpus = build_corpus(repo)
    texts = [t for t in read_texts(repo, corpus.val_files).values() if len(t) > 1000]
    rng = random.Random(0)
    prefixes = []
    for _ in range(args.requests):
        text = rng.choice(texts)
        at = rng.randrange(600, len(text))
        start = text.rfind("\n", 0, at) + 1
        prefixes.append(text[max(0, start - 512) : start + min(10, at - start)])

    print(f"model {bundle.version}: {bundle.meta['model']}; {args.requests} prefixes, greedy, "
          f"at most {MAX_CHARS} characters\n")  # fmt: skip
    print("| rows | python loop p50 ms | p99 ms | graph loop p50 ms | p99 ms | chars/request "
          "| python µs/char | graph µs/char | python / graph |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in (1, 4):
        prepared = []
        for i in range(0, len(prefixes) - rows + 1, rows):
            batch = prefixes[i : i + rows]
            ids = [tokenizer.encode(p) for p in batch]
            width = min(len(x) for x in ids)
            ids_arr = np.stack([x[-width:] for x in ids])
            logits, state = engine.run(ids_arr, engine.zero_state(rows))
            first = np.argmax(logits[:, -1, :], axis=1)[:, None].astype(np.int64)
            prepared.append((first, state))
        times: dict[str, list[float]] = {"python": [], "graph": []}
        chars = 0
        for _ in range(args.repeats):
            for first, state in prepared:
                t0 = time.perf_counter()
                a = python_loop(engine, first, state, newline)
                t1 = time.perf_counter()
                b = graph_loop(loop, first, state)
                t2 = time.perf_counter()
                if trimmed(a, newline) != trimmed(b, newline):
                    sys.exit("the graph loop decoded different characters: not comparable")
                times["python"].append(t1 - t0)
                times["graph"].append(t2 - t1)
                chars += sum(len(r) for r in trimmed(a, newline))
        n = len(times["python"])
        py = np.array(times["python"]) * 1000
        gr = np.array(times["graph"]) * 1000
        per_char = chars / n / rows
        print(
            f"| {rows} | {np.percentile(py, 50):.2f} | {np.percentile(py, 99):.2f} | "
            f"{np.percentile(gr, 50):.2f} | {np.percentile(gr, 99):.2f} | {per_char:.1f} | "
            f"{1000 * py.sum() / chars:.1f} | {1000 * gr.sum() / chars:.1f} | "
            f"{py.sum() / gr.sum():.2f}x |"
        )


if __name__ == "__main__":
    main()
