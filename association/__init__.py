"""CrowdPose joint-candidate association: person-joint graph solved per joint type."""
