"""The own-runtime reference of ``posetracker bench pipeline --reference``.

The same detector and pose model files as ``track``, run by their own runtimes with the least
glue a competent user would write: the yardstick every speed figure of the product is a ratio
against (docs/pipeline.md, "The own-runtime reference"). It shares no code with the product's
estimator; it reads the product's settings (:class:`posetracker.app.settings.AppConfig`, as
``track`` would run) and resolves the model names through the product's model cache. Per frame:

1. Decode with OpenCV (``cv2.VideoCapture``, BGR).
2. Detect: letterbox the frame to the top-left of an ``estimator.detector.input_size`` square
   (keep-ratio bilinear resize, pad 114), BGR mean/std; RTMDet's ``.onnx`` in onnxruntime, its
   graph cut before its own ``NonMaxSuppression`` (as the product cuts it) so that the product's
   cut applies: score >= ``conf_threshold``, greedy NMS (IoU > ``nms_threshold`` suppressed) in
   network pixels, the best ``max_people``, boxes mapped back and clipped, boxes whose shorter
   side is under ``min_box_size`` dropped.
3. Crop: each box padded to the pose model's aspect ratio (3:4) and enlarged by
   ``estimator.sppe.scale_factor``, one ``cv2.warpAffine`` per person (bilinear, black outside
   the frame; pixel centres at integer coordinates, as OpenCV has them, so that the region's
   edges land on the crop's outer edges), RGB / 255, ImageNet mean/std.
4. Pose: the heatmap model's ``.xml`` in OpenVINO, every crop of the frame in one call; f32 or
   bf16, whichever was faster on the warm-up frame (bf16 only where the CPU has it).
5. Decode: arg-max of each heatmap plus a quarter cell towards the higher neighbour; cell ``i``
   is crop pixel ``i x stride`` (the training targets' convention), mapped back through the
   crop; the joint score is the heatmap's peak.
6. Keep the people whose score (``estimator.pose_score``: detector score x mean joint score)
   is >= ``pipeline.min_pose_score``. No pose NMS, no tracking, no files written.
"""

from __future__ import annotations

import os
import resource
import time

import numpy as np

DET_MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
DET_STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
POSE_MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
POSE_STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)
DET_PAD = 114


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS: indices of the kept ``(n, 4)`` xyxy boxes, best first; a box overlapping a
    kept one by IoU > ``iou`` is suppressed."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])
        h = np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-9) <= iou]
    return np.array(keep, dtype=np.int64)


class ReferencePipeline:
    """RTMDet (onnxruntime) -> crops (OpenCV) -> heatmap pose model (OpenVINO) on BGR frames.

    Args:
        config: The product's settings (``AppConfig``); the models, the detector's input size and
            cut, the crop's scale factor, the person score and ``min_pose_score`` come from it.
        threads: Threads of each runtime (onnxruntime intra-op, OpenVINO inference); 0: the CPU
            count, the product's total.
        precision: OpenVINO's inference precision, ``f32`` or ``bf16``.
    """

    def __init__(self, config, threads: int = 0, precision: str = "f32"):
        import onnx
        import onnx.utils
        import onnxruntime as ort
        import openvino as ov

        from posetracker.app.models.resolve import resolve_model
        from posetracker.core.errors import ModelError

        self.config, self.threads = config, threads or os.cpu_count() or 1
        det = resolve_model(config.estimator.detector.model)
        pose = resolve_model(config.estimator.sppe.model)
        if det.format != "onnx" or pose.format != "openvino":
            raise ModelError(f"the reference runs an RTMDet .onnx detector and a heatmap IR .xml "
                             f"pose model, not {det.format} and {pose.format}")
        model = onnx.load(str(det.topology))
        cut = [n.input[:2] for n in model.graph.node if n.op_type == "NonMaxSuppression"]
        if len(cut) != 1:
            raise ModelError(f"{det.topology}: not an RTMDet end2end export (one "
                             f"NonMaxSuppression node expected, found {len(cut)})")
        model = onnx.utils.Extractor(model).extract_model(  # boxes and scores, before NMS
            [i.name for i in model.graph.input], list(cut[0]))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = self.threads, 1
        # OpenVINO runs next on the same cores: onnxruntime's threads must not spin-wait there
        # (measured faster and fewer CPU-s/frame; docs/pipeline.md)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.detector = ort.InferenceSession(model.SerializeToString(), opts,
                                             providers=["CPUExecutionProvider"])
        self.net = ov.Core().read_model(str(pose.topology))
        _, _, self.crop_h, self.crop_w = self.net.inputs[0].shape
        self.net.reshape([-1, 3, self.crop_h, self.crop_w])  # every crop of a frame in one call
        self.compile(precision)

    def compile(self, precision: str) -> None:
        """(Re)compile the pose model for OpenVINO's CPU plugin in ``precision``."""
        import openvino as ov

        self.pose = ov.Core().compile_model(self.net, "CPU", {
            "INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY"})
        # the heatmaps (the other output is their arg-max)
        self.heatmaps = next(o for o in self.pose.outputs if len(o.partial_shape) == 4)
        self.precision = precision

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        """Person boxes of an ``(H, W, 3)`` uint8 BGR frame: ``(m, 5)`` xyxy image pixels +
        score, best first (step 2)."""
        import cv2

        c = self.config.estimator.detector
        h, w = bgr.shape[:2]
        s = min(c.input_size / h, c.input_size / w)
        nw, nh = int(w * s + 0.5), int(h * s + 0.5)
        canvas = np.full((c.input_size, c.input_size, 3), DET_PAD, np.uint8)
        canvas[:nh, :nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        x = ((canvas - DET_MEAN_BGR) / DET_STD_BGR).transpose(2, 0, 1)[None]
        boxes, scores = self.detector.run(None, {self.detector.get_inputs()[0].name:
                                                 x.astype(np.float32)})
        boxes, scores = boxes[0], scores[0, 0]  # (B, 4) network pixels, (B,)
        ok = scores >= c.conf_threshold
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, c.nms_threshold)[:c.max_people]
        b = boxes[keep].astype(np.float64) / [nw / w, nh / h, nw / w, nh / h]
        b = np.clip(b, 0, [w, h, w, h])
        big = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= c.min_box_size
        return np.column_stack([b, scores[keep]])[big]

    def regions(self, boxes: np.ndarray) -> np.ndarray:
        """Crop regions ``(m, 4)`` cx, cy, W, H (image pixels) of ``(m, 4+)`` boxes (step 3)."""
        aspect = self.crop_w / self.crop_h
        w = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
        h = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
        w, h = np.maximum(w, h * aspect), np.maximum(h, w / aspect)
        k = self.config.estimator.sppe.scale_factor
        return np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                                w * k, h * k])

    def estimate(self, bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joints of the people in ``boxes``: ``(m, k, 2)`` xy image pixels and ``(m, k)`` scores
        (steps 3-5)."""
        import cv2

        r = self.regions(boxes)
        s = self.crop_w / r[:, 2]  # crop pixels per image pixel (the same along y)
        # image -> crop, pixel centres to pixel centres: the region's edges land on the crop's
        # outer edges (-0.5 and crop_w - 0.5), so u = (x - x0) * s - 0.5 with x0 its left edge
        corner = r[:, :2] - r[:, 2:] / 2
        crops = [cv2.warpAffine(bgr, np.array([[si, 0, -x0 * si - 0.5], [0, si, -y0 * si - 0.5]]),
                                (self.crop_w, self.crop_h), flags=cv2.INTER_LINEAR,
                                borderValue=(0, 0, 0)) for (x0, y0), si in zip(corner, s)]
        x = (np.stack(crops)[..., ::-1] / np.float32(255) - POSE_MEAN_RGB) / POSE_STD_RGB
        hm = self.pose(x.transpose(0, 3, 1, 2).astype(np.float32))[self.heatmaps]
        m, k, hh, hw = hm.shape
        flat = hm.reshape(m, k, -1)
        idx = flat.argmax(-1)
        score = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
        cx, cy = idx % hw, idx // hw
        i, j = np.indices((m, k))
        xy = np.stack([cx, cy], -1).astype(np.float64)
        inner_x, inner_y = (cx > 0) & (cx < hw - 1), (cy > 0) & (cy < hh - 1)
        xy[..., 0] += np.where(inner_x, 0.25 * np.sign(
            hm[i, j, cy, np.minimum(cx + 1, hw - 1)] - hm[i, j, cy, np.maximum(cx - 1, 0)]), 0)
        xy[..., 1] += np.where(inner_y, 0.25 * np.sign(
            hm[i, j, np.minimum(cy + 1, hh - 1), cx] - hm[i, j, np.maximum(cy - 1, 0), cx]), 0)
        # cell i is crop pixel i * stride (the model's training targets), back through the crop
        u = xy * (self.crop_w / hw)
        return (u + 0.5) / s[:, None, None] + corner[:, None, :], score

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kept people of a BGR frame: boxes ``(m, 5)``, joints ``(m, k, 2)`` and their
        scores ``(m, k)`` (step 6)."""
        boxes = self.detect(bgr)
        if not len(boxes):
            return boxes, np.zeros((0, 0, 2)), np.zeros((0, 0))
        xy, sc = self.estimate(bgr, boxes)
        e = self.config.estimator
        above = sc > e.kpt_threshold
        kmean = np.where(above.any(1), (sc * above).sum(1) / np.maximum(above.sum(1), 1),
                         sc.mean(1))
        person = {"box_x_kpt": boxes[:, 4] * kmean, "kpt": kmean, "box": boxes[:, 4]}[e.pose_score]
        keep = person >= self.config.pipeline.min_pose_score
        return boxes[keep], xy[keep], sc[keep]


def frames(video: str, max_frames: int):
    """Up to ``max_frames`` BGR frames of ``video`` (OpenCV)."""
    import cv2

    cap = cv2.VideoCapture(video)
    try:
        for _ in range(max_frames):
            ok, bgr = cap.read()
            if not ok:
                return
            yield bgr
    finally:
        cap.release()


def fastest(config, threads: int, bgr: np.ndarray, calls: int = 5
            ) -> tuple[ReferencePipeline, dict[str, float]]:
    """The reference at its fastest OpenVINO precision on this CPU, and the milliseconds of the
    pose call on the people of ``bgr`` (best of ``calls``) per precision tried: f32, and bf16 where
    the CPU has it (the faster one is kept)."""
    import openvino as ov

    ref = ReferencePipeline(config, threads, "f32")
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return ref, {}
    boxes = ref.detect(bgr)
    ms = {}
    for precision in ("f32", "bf16") if len(boxes) else ():
        ref.compile(precision)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            ref.estimate(bgr, boxes)
            times.append(1000 * (time.perf_counter() - t0))
        ms[precision] = min(times)
    if ms:
        ref.compile(min(ms, key=ms.get))
    return ref, ms


def worker(spec: dict) -> dict:
    """One measured reference run in this process (the reference row of ``bench pipeline``):
    the settings ``spec["sets"]``, ``spec["threads"]`` (0: the CPU count), the first
    ``spec["max_frames"]`` frames of ``spec["video"]``. As the product's runs: models loaded and
    one warm-up frame run before the clock starts."""
    from posetracker.app.settings import load_app_config

    config = load_app_config(None, spec["sets"])
    first = next(frames(spec["video"], 1), None)
    if first is None:
        raise RuntimeError(f"cannot read a frame of {spec['video']}")
    ref, pose_ms = fastest(config, spec["threads"], first)
    ref(first)  # warm-up
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    n = people = 0
    for bgr in frames(spec["video"], spec["max_frames"]):
        people += len(ref(bgr)[0])
        n += 1
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    return {"frames": n, "people_per_frame": round(people / max(n, 1), 2),
            "fps": n / wall, "wall_s": wall, "cpu_s_per_frame": cpu / max(n, 1),
            "peak_rss_mb": usage.ru_maxrss / 1024, "threads": ref.threads,
            "precision": ref.precision,
            "pose_ms_by_precision": {k: round(v, 1) for k, v in pose_ms.items()}}
