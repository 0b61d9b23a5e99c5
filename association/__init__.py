"""CrowdPose joint-candidate association: person-joint graph solved per joint type.

Modules, in pipeline order: :mod:`posetracker.association.config` (settings), :mod:`posetracker.association.candidates`
(several peaks per heatmap, in image pixels), :mod:`posetracker.association.graph` (person-joint graph),
:mod:`posetracker.association.assign` (per-joint maximum-weight matching, fallback, redundancy removal, poses;
``associate_intermediates`` and ``AssociationGrouping`` plug it into the RMPE estimator in place of
pose NMS), :mod:`posetracker.association.loss` (the joint-candidate training loss) and
:mod:`posetracker.association.synthetic` (crowded scenes with known answers for tests and benchmarks).
"""
