"""CrowdPose joint-candidate association: person-joint graph solved per joint type.

Modules, in pipeline order: :mod:`association.config` (settings), :mod:`association.candidates`
(several peaks per heatmap, in image pixels), :mod:`association.graph` (person-joint graph),
:mod:`association.assign` (per-joint maximum-weight matching, fallback, redundancy removal, poses;
``associate_intermediates`` and ``AssociatingEstimator`` plug it into the RMPE estimator in place of
pose NMS), :mod:`association.loss` (the joint-candidate training loss) and
:mod:`association.synthetic` (crowded scenes with known answers for tests and benchmarks).
"""
