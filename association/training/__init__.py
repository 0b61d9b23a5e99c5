"""Training the SPPE for crowds, the way RMPE and CrowdPose describe it.

Modules: :mod:`~posetracker.association.training.config` (settings),
:mod:`~posetracker.association.training.data` (annotated people, person crops through the
estimator's own crop transform, joint-candidate target heatmaps),
:mod:`~posetracker.association.training.loop` (optimizer, validation AP, atomic checkpoints,
resume), :mod:`~posetracker.association.training.crowds` (crowd compositor),
:mod:`~posetracker.association.training.pgpg` (pose-guided proposal generator) and
:mod:`~posetracker.association.training.stn` (STN with the frozen parallel SPPE).

It lives under ``association`` because its target is the association's joint-candidate loss
(:mod:`posetracker.association.loss`), and ``estimators`` never imports ``association``.
"""
