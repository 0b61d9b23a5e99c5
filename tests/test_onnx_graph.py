"""The ONNX interpreter (estimators.runtimes.onnx_graph) against onnxruntime: RTMDet-nano's
tensors right before its in-graph NMS on real COCO images and video frames (batch 1 and 3),
trainable parameters, refused files and ops, and small graphs of the ops RTMDet does not use."""

from __future__ import annotations

import glob

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import require_test_extra
from onnx import TensorProto, helper
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.rtmdet import letterbox_top_left
from posetracker.estimators.runtimes.onnx_graph import load_onnx_graph

RTMDET = "rtmdet-nano-person.onnx"
MEAN = np.array([103.53, 116.28, 123.675], np.float32)
STD = np.array([57.375, 57.12, 58.395], np.float32)
# The pinned file's decoded boxes (N, 2100, 4) and scores (N, 2100, 1) of every anchor point
# at 320x320, before the pre-NMS TopK.
ALL_ANCHORS = ["y.28", "y.24"]


def _nms_inputs(model) -> list[str]:
    nms = [n for n in model.graph.node if n.op_type == "NonMaxSuppression"]
    return list(nms[0].input[:2])


def _ort_session(model, outputs: list[str]):
    """onnxruntime on ``model`` with ``outputs`` as its graph outputs, unoptimised: its fused
    kernels round differently from the file's ops (0.03 px on a box), the reference is the file."""
    ort = require_test_extra("onnxruntime")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.output[:]
    model.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in outputs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _network_input(images: list[np.ndarray]) -> np.ndarray:
    """RTMDet's input: BGR, top-left letterbox to 320x320 (pad 114), mean/std."""
    canvases = [letterbox_top_left(im, (320, 320))[0] for im in images]
    x = (np.stack(canvases)[..., ::-1].astype(np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.fixture(scope="module")
def rtmdet(models_dir):
    model = onnx.load(str(models_dir / RTMDET))
    outputs = _nms_inputs(model) + ALL_ANCHORS
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield model, outputs, load_onnx_graph(models_dir / RTMDET, outputs)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real_images(data_dir) -> list[np.ndarray]:
    """Three COCO val images of different sizes and one frame of each video (RGB)."""
    files = sorted(glob.glob(str(data_dir / "coco_mini_val2017" / "val2017" / "*.jpg")))[:3]
    images = [cv2.imread(f)[:, :, ::-1] for f in files]
    for video in ("street_crowd.avi", "two_people.mp4", "basketball_crossing.mp4"):
        cap = cv2.VideoCapture(str(data_dir / "videos" / video))
        for _ in range(10):  # the 10th frame
            ok, frame = cap.read()
        cap.release()
        assert ok, video
        images.append(frame[:, :, ::-1])
    return [np.ascontiguousarray(im) for im in images]


def _check_pre_nms(ours: dict[str, torch.Tensor], ref: dict[str, np.ndarray],
                   boxes: str, scores: str) -> None:
    all_boxes, all_scores = (ours[n].numpy() for n in ALL_ANCHORS)
    ref_boxes, ref_scores = ref[ALL_ANCHORS[0]], ref[ALL_ANCHORS[1]]
    assert all_boxes.shape == ref_boxes.shape and all_scores.shape == ref_scores.shape
    np.testing.assert_allclose(all_scores, ref_scores, rtol=0, atol=2e-5)
    confident = ref_scores[..., 0] >= 0.3
    assert confident.any()
    # float32 sums in another order: 1e-3 px where the model is sure, 1e-2 px elsewhere.
    np.testing.assert_allclose(all_boxes[confident], ref_boxes[confident], rtol=0, atol=1e-3)
    np.testing.assert_allclose(all_boxes, ref_boxes, rtol=0, atol=1e-2)
    # The NMS inputs: sorted by score (N, 1, B) and the boxes in that order (N, B, 4).
    s, b = ours[scores].numpy(), ours[boxes].numpy()
    assert s.shape == ref[scores].shape and b.shape == ref[boxes].shape
    np.testing.assert_allclose(s, ref[scores], rtol=0, atol=2e-5)  # sorting keeps the error
    # Where scores nearly tie the two sorts may swap boxes: ours are a permutation of all
    # anchors' boxes, in the order of their scores; where scores are apart, onnxruntime's order.
    for n in range(b.shape[0]):
        dist = np.zeros((b.shape[1], ref_boxes.shape[1]), np.float32)
        for c in range(4):
            dist = np.maximum(dist, np.abs(b[n, :, None, c] - ref_boxes[n, None, :, c]))
        j = dist.argmin(1)
        assert dist[np.arange(len(j)), j].max() < 1e-2 and len(np.unique(j)) == len(j)
        np.testing.assert_allclose(ref_scores[n, j, 0], s[n, 0], rtol=0, atol=2e-5)
    r = ref[scores][:, 0]
    gap = np.minimum(np.abs(np.diff(r, prepend=np.inf)), np.abs(np.diff(r, append=-np.inf)))
    apart = (gap > 1e-5) & (r >= 0.05)  # the scores differ by < 5e-6
    assert apart.sum() >= 10
    np.testing.assert_allclose(b[apart], ref[boxes][apart], rtol=0, atol=1e-2)


@pytest.mark.parametrize("batch", [1, 3])
def test_rtmdet_pre_nms_tensors_equal_onnxruntime(rtmdet, real_images, batch):
    model, outputs, graph = rtmdet
    session = _ort_session(model, outputs)
    boxes, scores = outputs[:2]
    picks = [[0], [3], [5]] if batch == 1 else [[0, 1, 2], [3, 4, 5]]
    for pick in picks:
        x = _network_input([real_images[i] for i in pick])
        ref = dict(zip(outputs, session.run(outputs, {"input": x})))
        with torch.inference_mode():
            ours = graph(torch.from_numpy(x))
        assert list(ours) == outputs
        _check_pre_nms(ours, ref, boxes, scores)


def test_rtmdet_graph_attributes(rtmdet):
    model, outputs, graph = rtmdet
    assert graph.input_names == ["input"]
    assert graph.input_shapes == {"input": (None, 3, None, None)}  # batch, height, width symbolic
    assert graph.output_names == outputs


def test_float_initializers_are_parameters_with_finite_grads(rtmdet, models_dir):
    model, outputs, graph = rtmdet
    conv_inputs = {i for n in model.graph.node if n.op_type == "Conv" for i in n.input[1:]}
    inits = {i.name: i for i in model.graph.initializer}
    assert conv_inputs <= set(inits)
    for name in conv_inputs:
        p = graph.parameter(name)
        assert isinstance(p, nn.Parameter) and p.dtype == torch.float32 and p.requires_grad
        assert tuple(p.shape) == tuple(inits[name].dims)
    ints = [n for n, i in inits.items() if i.data_type == TensorProto.INT64]
    assert ints and not any(n in graph._param_keys for n in ints)  # integer ones stay constants
    assert all(isinstance(p, nn.Parameter) for p in graph.parameters())
    assert len(list(graph.parameters())) >= len(conv_inputs)

    trainable = load_onnx_graph(models_dir / RTMDET, outputs[:2])
    x = torch.randn(2, 3, 96, 128)  # any size: the anchor grid follows the input's shape
    out = trainable(x)
    assert out[outputs[0]].shape == (2, 12 * 16 + 6 * 8 + 3 * 4, 4)
    (out[outputs[1]].sum() + out[outputs[0]].mean()).backward()
    grads = [p.grad for p in trainable.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_float16_runs_in_half_end_to_end(models_dir, real_images, rtmdet):
    _, outputs, graph32 = rtmdet
    graph = load_onnx_graph(models_dir / RTMDET, outputs).half()
    x = torch.from_numpy(_network_input(real_images[:1]))
    with torch.inference_mode():
        ref, half = graph32(x), graph(x.half())
    assert all(t.dtype == torch.float16 for n, t in half.items() if t.is_floating_point())
    conf = ref[ALL_ANCHORS[1]][..., 0] >= 0.3
    assert conf.any()
    assert (half[ALL_ANCHORS[1]].float() - ref[ALL_ANCHORS[1]]).abs().max() < 0.02
    assert (half[ALL_ANCHORS[0]].float() - ref[ALL_ANCHORS[0]])[conf].abs().max() < 1.0


def test_truncated_corrupt_or_missing_file_is_one_model_error(models_dir, tmp_path):
    data = (models_dir / RTMDET).read_bytes()
    for name, content in (("truncated.onnx", data[: len(data) // 2]),
                          ("garbage.onnx", b"\x08\x07not a model" * 100)):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelError, match=name) as err:
            load_onnx_graph(path)
        assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="missing.onnx: ONNX model not found"):
        load_onnx_graph(tmp_path / "missing.onnx")


def _save(tmp_path, nodes, inputs, outputs, inits=(), name="tiny.onnx", opset=13):
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _value(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_unsupported_op_refused_only_where_needed(tmp_path):
    path = _save(tmp_path,
                 [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                  helper.make_node("Det", ["r"], ["d"], name="my_det")],
                 [_value("x", [3, 3])], [_value("d", [])])
    with pytest.raises(ModelError, match=r"unsupported ONNX op Det \(node 'my_det'\)") as err:
        load_onnx_graph(path)
    assert "\n" not in str(err.value) and "tiny.onnx" in str(err.value)
    graph = load_onnx_graph(path, outputs=["r"])  # cut before it: fine
    x = torch.tensor([[-1.0, 2.0, 0.5]] * 3)
    assert torch.equal(graph(x)["r"], torch.relu(x))
    with pytest.raises(ModelError, match="'nope'"):
        load_onnx_graph(path, outputs=["nope"])


def test_constant_reshape_with_batch_one_takes_the_call_batch(tmp_path):
    """An export fixed at batch 1 (``Reshape`` to a constant [1, -1, 4]) runs a batch of 3 as
    three images, not as one image of three times the boxes."""
    shape = helper.make_tensor("target", TensorProto.INT64, [3], [1, -1, 4])
    grid = helper.make_tensor("grid", TensorProto.INT64, [2], [1, -1])
    path = _save(tmp_path,
                 [helper.make_node("Mul", ["x", "two"], ["m"], name="mul"),
                  helper.make_node("Reshape", ["m", "target"], ["y"], name="flat"),
                  helper.make_node("Shape", ["x"], ["s"]),
                  helper.make_node("Gather", ["s", "three"], ["w"], axis=0),
                  helper.make_node("Range", ["zero", "w", "one"], ["r"]),
                  helper.make_node("Reshape", ["r", "grid"], ["row"], name="row")],  # not batch
                 [_value("x", [1, 8, 2, 2])], [_value("y", [1, 8, 4]), _value("row", [1, 2])],
                 [shape, grid, helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
                  helper.make_tensor("three", TensorProto.INT64, [], [3]),
                  helper.make_tensor("zero", TensorProto.INT64, [], [0]),
                  helper.make_tensor("one", TensorProto.INT64, [], [1])])
    graph = load_onnx_graph(path)
    assert graph.input_shapes == {"x": (1, 8, 2, 2)}
    x = torch.randn(3, 8, 2, 2)
    out = graph(x)
    assert out["y"].shape == (3, 8, 4) and out["row"].shape == (1, 2)
    for i in range(3):
        assert torch.equal(out["y"][i:i + 1], graph(x[i:i + 1])["y"])
    with pytest.raises(ModelError, match="constant target shape"):
        graph(torch.randn(3, 1, 3, 1))  # 3 values per image: no 4-wide rows of one image


def test_small_graph_of_other_ops_equals_onnxruntime(tmp_path):
    """Ops RTMDet does not use but the table has (each with a quirk torch does differently):
    integer Div truncates, Slice with negative steps and clamped ends, two-way Expand, Clip,
    bilinear half-pixel Resize, padded MaxPool with ceil_mode, SAME_UPPER Conv, TopK ties."""
    ort = require_test_extra("onnxruntime")
    rng = np.random.default_rng(0)
    t = helper.make_tensor
    inits = [t("w", TensorProto.FLOAT, [4, 2, 3, 3], rng.normal(size=72).astype(np.float32)),
             t("b", TensorProto.FLOAT, [4], rng.normal(size=4).astype(np.float32)),
             t("starts", TensorProto.INT64, [2], [-1, 1]), t("ends", TensorProto.INT64, [2],
                                                           [-1000, 100]),
             t("axes", TensorProto.INT64, [2], [2, 3]), t("steps", TensorProto.INT64, [2], [-2, 2]),
             t("roi", TensorProto.FLOAT, [0], []), t("scales", TensorProto.FLOAT, [4],
                                                     [1, 1, 1.5, 0.5]),
             t("lo", TensorProto.FLOAT, [], [-0.5]), t("hi", TensorProto.FLOAT, [], [0.75]),
             t("exp_shape", TensorProto.INT64, [3], [1, 3, 1]),
             t("two", TensorProto.INT64, [], [2]),
             t("seven", TensorProto.INT64, [], [7]), t("k", TensorProto.INT64, [1], [4])]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Slice", ["c", "starts", "ends", "axes", "steps"], ["sl"]),
        helper.make_node("Resize", ["c", "roi", "scales"], ["rs"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("MaxPool", ["c"], ["mp"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[0, 1, 1, 0], ceil_mode=1),
        helper.make_node("Clip", ["c", "lo", "hi"], ["cl"]),
        helper.make_node("Shape", ["c"], ["sh"]),
        helper.make_node("Sub", ["sh", "seven"], ["neg"]),
        helper.make_node("Div", ["neg", "two"], ["dv"]),                   # int: truncates
        helper.make_node("ReduceMean", ["c"], ["col"], axes=[1, 2], keepdims=0),  # (N, W)
        helper.make_node("Unsqueeze", ["col", "one_axis"], ["col3"]),           # (N, 1, W)
        helper.make_node("Expand", ["col3", "exp_shape"], ["ex"]),             # two-way: (N, 3, W)
        helper.make_node("Flatten", ["q"], ["qf"], axis=0),
        helper.make_node("TopK", ["qf", "k"], ["tv", "ti"], axis=1),
    ]
    inits.append(t("one_axis", TensorProto.INT64, [1], [1]))
    outs = ["sl", "rs", "mp", "cl", "dv", "ex", "tv", "ti"]
    path = _save(tmp_path, nodes, [_value("x", ["n", 2, 9, 10]), _value("q", [6])],
                 [_value(o, [f"{o}{i}" for i in range(rank)],
                         TensorProto.INT64 if o in ("dv", "ti") else TensorProto.FLOAT)
                  for o, rank in zip(outs, (4, 4, 4, 4, 1, 3, 2, 2))], inits)
    x = rng.normal(size=(2, 2, 9, 10)).astype(np.float32)
    q = np.array([3, 1, 3, 2, 3, 1], np.float32)  # ties: lower index first
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = dict(zip(outs, session.run(outs, {"x": x, "q": q})))
    ours = load_onnx_graph(path)(torch.from_numpy(x), torch.from_numpy(q))
    for name in outs:
        assert ours[name].shape == ref[name].shape, name
        np.testing.assert_allclose(ours[name].detach().numpy(), ref[name], rtol=1e-5, atol=1e-5,
                                   err_msg=name)
