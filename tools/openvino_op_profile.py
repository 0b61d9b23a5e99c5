"""Where an OpenVINO model's CPU time goes: milliseconds per operation type, as OpenVINO's own
per-layer counters (``PERF_COUNT``) report them, for the model compiled as the product's pose
workers compile it (a fixed batch, float32, one stream of ``--threads`` threads).

    python tools/openvino_op_profile.py ../shared/models/tinypose-256x192.xml [--batch 4] \\
        [--threads 1] [--repeat 10] [--without-shuffles]

Prints, per (operation type, kernel), its share of the call, its milliseconds per call and per
item of the batch, and how many layers of that kind ran; then the runtime layout of the layers
(``acdb`` is NHWC). ``--without-shuffles`` also times the model with every channel shuffle
(the Reshape -> Transpose -> Reshape that OpenVINO fuses into ``ShuffleChannels``) cut out of
the graph, alternating with the intact model: **its outputs are wrong** (the largest difference
is printed), so it only bounds what an exact rewrite of the shuffles could save. Inputs are
seeded random normals; these models' time does not depend on the values.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np


def compile_model(core, path: Path, batch: int, threads: int, cut_shuffles: bool,
                  profile: bool):
    """``path`` read, optionally without its channel shuffles, reshaped to ``batch`` and
    compiled (float32, latency hint, one stream of ``threads`` threads); returns the compiled
    model and the number of shuffles cut."""
    import openvino as ov

    model = core.read_model(str(path))
    cut = 0
    if cut_shuffles:
        for op in model.get_ordered_ops():
            if op.get_type_name() != "Transpose":
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
            cut += 1
    shape = [d.get_length() for d in model.inputs[0].get_partial_shape()]
    model.reshape({model.inputs[0]: ov.PartialShape([batch, *shape[1:]])})
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False,
              "PERF_COUNT": profile}
    return core.compile_model(model, "CPU", config), cut


def main() -> int:
    import openvino as ov

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="an OpenVINO IR .xml")
    p.add_argument("--batch", type=int, default=4, help="items per call (default 4: the "
                   "product's largest fixed batch)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=10, help="profiled calls, after 3 warm-up calls")
    p.add_argument("--without-shuffles", action="store_true",
                   help="also time the model with its channel shuffles cut (wrong outputs)")
    args = p.parse_args()
    if not args.model.is_file() or args.batch < 1 or args.threads < 1 or args.repeat < 1:
        p.error("expected an existing .xml and positive --batch, --threads, --repeat")
    core = ov.Core()
    compiled, _ = compile_model(core, args.model, args.batch, args.threads, False, True)
    request = compiled.create_infer_request()
    shape = [d.get_length() for d in compiled.inputs[0].get_partial_shape()]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(3):
        request.infer({0: x})
    ms: collections.Counter = collections.Counter()
    layers: collections.Counter = collections.Counter()
    for _ in range(args.repeat):
        request.infer({0: x})
        for info in request.profiling_info:
            key = (info.node_type, info.exec_type)
            ms[key] += info.real_time.total_seconds() * 1e3 / args.repeat
            layers[key] += 1
    total = sum(ms.values())
    print(f"{args.model.name}: batch {args.batch}, {args.threads} thread(s), float32; "
          f"{total:.2f} ms per call by the layer counters ({total / args.batch:.2f} per item)")
    print(f"{'share':>6}  {'ms/call':>8}  {'ms/item':>8}  {'layers':>6}  operation (kernel)")
    for key, value in ms.most_common():
        if value >= 0.005:
            print(f"{100 * value / total:5.1f}%  {value:8.2f}  {value / args.batch:8.2f}  "
                  f"{layers[key] // args.repeat:6d}  {key[0]} ({key[1]})")
    layouts: collections.Counter = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and "outputLayouts" in info:
            kind = info["layerType"].astype(str)
            if kind not in ("Const", "Input", "Output", "Reshape"):
                layouts[info["outputLayouts"].astype(str)] += 1
    print("runtime layouts of the layers:", dict(layouts))
    if args.without_shuffles:
        plain, _ = compile_model(core, args.model, args.batch, args.threads, False, False)
        cut, n = compile_model(core, args.model, args.batch, args.threads, True, False)
        runs = {"intact": plain.create_infer_request(), "shuffles cut": cut.create_infer_request()}
        outs = {k: [o.copy() for o in r.infer({0: x}).values()] for k, r in runs.items()}
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeat):
            for name, r in runs.items():
                t = time.process_time()
                r.infer({0: x})
                best[name] = min(best[name], time.process_time() - t)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(outs["intact"], outs["shuffles cut"]))
        print(f"{n} shuffles cut: CPU ms per item, best of {args.repeat}, alternating: intact "
              f"{1e3 * best['intact'] / args.batch:.2f}, shuffles cut "
              f"{1e3 * best['shuffles cut'] / args.batch:.2f} "
              f"({best['intact'] / best['shuffles cut']:.2f}x); outputs WRONG when cut "
              f"(largest difference {diff:.3g}): a bound, not a result")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
