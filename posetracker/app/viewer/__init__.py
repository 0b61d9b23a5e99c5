"""``posetracker view``: one self-contained HTML page that plays a result over its video, with the
track timeline and, given the ground truth, the evaluation's own misses, false positives and id
switches (:mod:`posetracker.app.viewer.page`, :mod:`posetracker.app.viewer.data`)."""
