"""File formats: PoseTrack 2017/2018, COCO keypoints, CrowdPose, Bonn ``annolist.mat``."""
