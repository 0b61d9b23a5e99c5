"""Per-frame RMPE estimation: detectors, spatial transformer, single-person pose estimators,
de-transformer and parametric pose NMS; model importers (TF.js graphs, Darknet, AlphaPose)."""
