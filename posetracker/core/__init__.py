"""The vocabulary every layer shares: joint schemas, pose value types, COCO keypoint data, pose NMS,
errors, file helpers, config loading."""
