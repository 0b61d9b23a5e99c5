"""Across-frame tracking: PoseFlow building and PoseFlow NMS, plus baseline trackers."""
