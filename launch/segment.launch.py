"""ros2 launch iterprime_ros segment.launch.py image:=/camera/color/image_raw command:=/speech/text

Starts iterprime_segmenter with config/segment.yaml (or config_file:=...) and remaps its
inputs to your camera and voice front end.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# (launch argument, default topic, remapped node input)
REMAPS = (
    ("image", "/camera/color/image_raw"),
    ("command", "/iterprime/command"),
    ("depth", "/camera/aligned_depth_to_color/image_raw"),
    ("camera_info", "/camera/color/camera_info"),
)


def generate_launch_description() -> LaunchDescription:
    default_config = os.path.join(get_package_share_directory("iterprime_ros"), "config", "segment.yaml")
    args = [DeclareLaunchArgument("config_file", default_value=default_config,
                                  description="parameters file for iterprime_segmenter"),
            DeclareLaunchArgument("device", default_value="auto", description="auto | cuda | cpu"),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace")]
    args += [DeclareLaunchArgument(name, default_value=topic, description=f"topic remapped to '{name}'")
             for name, topic in REMAPS]
    node = Node(
        package="iterprime_ros",
        executable="segmenter",
        name="iterprime_segmenter",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("config_file"), {"device": LaunchConfiguration("device")}],
        remappings=[(name, LaunchConfiguration(name)) for name, _ in REMAPS],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*args, node])
