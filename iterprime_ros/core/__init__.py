"""The IteRPrimE method as pure functions on tensors and arrays (no ROS, no model classes)."""
