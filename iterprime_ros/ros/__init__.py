"""The ROS 2 face of iterprime_ros: message conversion, parameters, the node.

Importing this package does not import rclpy (conversions.py is used by offline bag
replay on machines without ROS); node.py, params.py and worker.py import it where needed.
"""
