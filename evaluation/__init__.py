"""Evaluation that reproduces the official tools: poseval (PoseTrack), pycocotools (COCO) and
crowdposetools (CrowdPose). Metrics are pure functions returning pandas DataFrames."""
