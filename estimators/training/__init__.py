"""Training the SPPE for crowds, the way RMPE and CrowdPose describe it.

Modules: :mod:`~posetracker.estimators.training.config` (settings),
:mod:`~posetracker.estimators.training.data` (annotated people, person crops through the
estimator's own crop transform, joint-candidate target heatmaps),
:mod:`~posetracker.estimators.training.loop` (optimizer, validation AP, atomic checkpoints,
resume), :mod:`~posetracker.estimators.training.crowds` (crowd compositor),
:mod:`~posetracker.estimators.training.pgpg` (pose-guided proposal generator) and
:mod:`~posetracker.estimators.training.stn` (STN with the frozen parallel SPPE).

What it minimises is a parameter (:mod:`~posetracker.estimators.training.objective`): the
application passes in the association's joint-candidate targets and loss
(:mod:`posetracker.association.loss`), since ``estimators`` never imports ``association``; the
application also reads the annotation files, scores validation and sets the torch thread count.
"""
