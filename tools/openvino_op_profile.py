"""Where an OpenVINO model's CPU time goes: milliseconds per operation type, as OpenVINO's own
per-layer counters (``PERF_COUNT``) report them, for the model compiled as the product's pose
workers compile it (a fixed batch, float32, one stream of ``--threads`` threads), as the file
has it and as the product runs it (its channel shuffles folded into the weights:
:mod:`posetracker.estimators.runtimes.channel_order`).

    python tools/openvino_op_profile.py ../shared/models/tinypose-256x192.xml [--batch 4] \\
        [--threads 1] [--repeat 10] [--without-shuffles]

Prints for each graph, per (operation type, kernel), its share of the call, its milliseconds per
call and per item of the batch, and how many layers of that kind ran, and the runtime layout of
the layers (``acdb`` is NHWC); then both graphs timed alternating (process CPU time, best of
``--repeat``) and the largest difference of their outputs. ``--without-shuffles`` adds the graph
with every channel shuffle (the Reshape -> Transpose -> Reshape that OpenVINO fuses into
``ShuffleChannels``) cut out: **its outputs are wrong**, so it only bounds what removing the
shuffles can save. Inputs are seeded random normals; these models' time does not depend on the
values.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np


def read_graph(core, path: Path, kind: str):
    """The graph of ``path`` as ``kind`` says: ``file`` (as stored), ``folded`` (as the product
    runs it) or ``cut`` (every channel shuffle removed: wrong outputs)."""
    from posetracker.estimators.runtimes.channel_order import fold_channel_shuffles, is_shuffle

    model = core.read_model(str(path))
    if kind == "folded":
        folded = fold_channel_shuffles(model)
        return model if folded is None else folded[0]
    if kind == "cut":
        for op in model.get_ordered_ops():
            if not is_shuffle(op):
                continue
            before = op.input(0).get_source_output().get_node()
            after = [t.get_node() for t in op.output(0).get_target_inputs()]
            if before.get_type_name() != "Reshape" or len(after) != 1 \
                    or after[0].get_type_name() != "Reshape" \
                    or len(before.get_output_partial_shape(0)) != 5:
                continue
            source = before.input(0).get_source_output()
            for target in list(after[0].output(0).get_target_inputs()):
                target.replace_source_output(source)
    return model


def compile_graph(core, model, batch: int, threads: int, profile: bool):
    """``model`` reshaped to ``batch`` and compiled as a pose-worker lane (float32, latency
    hint, one stream of ``threads`` threads)."""
    import openvino as ov

    model = model.clone()
    shape = [d.get_length() for d in model.inputs[0].get_partial_shape()[1:]]
    model.reshape({model.inputs[0]: ov.PartialShape([batch, *shape])})
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False,
              "PERF_COUNT": profile}
    return core.compile_model(model, "CPU", config)


def profile(core, name: str, model, x: np.ndarray, threads: int, repeat: int) -> None:
    """Print ``model``'s per-operation table and runtime layouts."""
    compiled = compile_graph(core, model, len(x), threads, True)
    request = compiled.create_infer_request()
    for _ in range(3):
        request.infer({0: x})
    ms: collections.Counter = collections.Counter()
    layers: collections.Counter = collections.Counter()
    for _ in range(repeat):
        request.infer({0: x})
        for info in request.profiling_info:
            key = (info.node_type, info.exec_type)
            ms[key] += info.real_time.total_seconds() * 1e3 / repeat
            layers[key] += 1
    total, batch = sum(ms.values()), len(x)
    print(f"{name}: batch {batch}, {threads} thread(s), float32; {total:.2f} ms per call by the "
          f"layer counters ({total / batch:.2f} per item)")
    print(f"{'share':>6}  {'ms/call':>8}  {'ms/item':>8}  {'layers':>6}  operation (kernel)")
    for key, value in ms.most_common():
        if value >= 0.005:
            print(f"{100 * value / total:5.1f}%  {value:8.2f}  {value / batch:8.2f}  "
                  f"{layers[key] // repeat:6d}  {key[0]} ({key[1]})")
    layouts: collections.Counter = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and "outputLayouts" in info:
            if info["layerType"].astype(str) not in ("Const", "Input", "Output", "Reshape"):
                layouts[info["outputLayouts"].astype(str)] += 1
    print("runtime layouts of the layers:", dict(layouts))


def main() -> int:
    import openvino as ov

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="an OpenVINO IR .xml")
    p.add_argument("--batch", type=int, default=4, help="items per call (default 4: the "
                   "product's largest fixed batch)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=10, help="profiled and timed calls per graph")
    p.add_argument("--without-shuffles", action="store_true",
                   help="also time the graph with its channel shuffles cut (wrong outputs)")
    args = p.parse_args()
    if not args.model.is_file() or args.batch < 1 or args.threads < 1 or args.repeat < 1:
        p.error("expected an existing .xml and positive --batch, --threads, --repeat")
    core = ov.Core()
    kinds = ["file", "folded", *(["cut"] if args.without_shuffles else [])]
    graphs = {k: read_graph(core, args.model, k) for k in kinds}
    shape = [d.get_length() for d in graphs["file"].inputs[0].get_partial_shape()[1:]]
    x = np.random.default_rng(0).standard_normal((args.batch, *shape)).astype(np.float32)
    for kind in ("file", "folded"):
        profile(core, f"{args.model.name} ({kind})", graphs[kind], x, args.threads, args.repeat)
        print()
    requests = {k: compile_graph(core, g, args.batch, args.threads, False).create_infer_request()
                for k, g in graphs.items()}
    outs = {k: [o.copy() for o in r.infer({0: x}).values()] for k, r in requests.items()}
    best = dict.fromkeys(requests, float("inf"))
    for _ in range(args.repeat):
        for kind, request in requests.items():
            t = time.process_time()
            request.infer({0: x})
            best[kind] = min(best[kind], time.process_time() - t)
    print(f"CPU ms per item, best of {args.repeat}, alternating:")
    for kind in kinds:
        diff = max(float(np.abs(a.astype(np.float64) - b).max())
                   for a, b in zip(outs["file"], outs[kind]))
        note = " (outputs WRONG: a bound, not a result)" if kind == "cut" else ""
        print(f"  {kind:7s} {1e3 * best[kind] / args.batch:7.2f}  {best['file'] / best[kind]:.2f}x"
              f"  largest output difference from the file's graph {diff:.3g}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
