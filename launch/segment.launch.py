r"""Start the segmenter node with its parameters and topic remaps.

  ros2 launch iterprime_ros segment.launch.py image:=/camera/color/image_raw command:=/speech/text

Starts iterprime_segmenter with config/segment.yaml (or config_file:=...) and remaps its
inputs to your camera and voice front end. Arguments:

  config_file   parameters file (default: the package's config/segment.yaml)
  device        auto | cpu | cuda | cuda:N; empty (default) keeps the config file's value
  image, command, depth, camera_info   topics remapped to the node's inputs
  image_compressed   topic remapped to image/compressed (used with image_transport:=compressed)
  image_transport    raw | compressed; empty (default) keeps the config file's value
  target_frame       frame of the 3-D outputs, e.g. base_link (needs tf2_ros); empty (default)
                     keeps the config file's value
  namespace     node namespace (outputs become /<ns>/iterprime_segmenter/result ...)
  use_sim_time  true when replaying a bag with `ros2 bag play --clock`
  log_level     debug | info | warn | error
  autostart     true (default): the node configures and activates itself; false: leave the
                lifecycle transitions to a lifecycle manager

Equivalent without launch (what this file makes launch_ros run):
  ros2 run iterprime_ros segmenter --ros-args --params-file config/segment.yaml \
      -p device:=cpu -r image:=/camera/color/image_raw -r command:=/speech/text ...
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from iterprime_ros.ros.names import DEFAULT_INPUT_TOPICS, NODE_NAME
from launch import LaunchDescription

# (launch argument = the node's input topic, default topic it is remapped to): the same defaults
# as the offline replay (iterprime_ros/ros/names.py)
REMAPS = tuple(DEFAULT_INPUT_TOPICS.items())
# launch arguments whose remap target has a slash in it (image_transport's naming)
COMPRESSED = ("image_compressed", "image/compressed", "/camera/color/image_raw/compressed")


def _default_config() -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("iterprime_ros"), "config", "segment.yaml")


def _segmenter(context, *args, **kwargs):
    """Build the node once the arguments are known (an empty device must not override the file)."""
    from launch_ros.actions import Node

    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    overrides = {
        "use_sim_time": value("use_sim_time").lower() in ("true", "1", "yes"),
        "autostart": value("autostart").lower() in ("true", "1", "yes"),
    }
    for name in ("device", "image_transport", "target_frame"):
        if value(name):
            overrides[name] = value(name)
    remappings = [(name, value(name)) for name, _ in REMAPS if value(name)]
    if value(COMPRESSED[0]):
        remappings.append((COMPRESSED[1], value(COMPRESSED[0])))
    return [
        Node(
            package="iterprime_ros",
            executable="segmenter",
            name=NODE_NAME,
            namespace=value("namespace"),
            parameters=[value("config_file"), overrides],
            remappings=remappings,
            ros_arguments=["--log-level", value("log_level")],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument(
            "config_file",
            default_value=_default_config(),
            description="parameters file for iterprime_segmenter",
        ),
        DeclareLaunchArgument(
            "device",
            default_value="",
            description="auto | cpu | cuda | cuda:N (empty: the config file's value)",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument(
            "use_sim_time",
            default_value="false",
            description="use /clock (bag replay with --clock)",
        ),
        DeclareLaunchArgument(
            "log_level", default_value="info", description="debug | info | warn | error"
        ),
        DeclareLaunchArgument(
            "autostart",
            default_value="true",
            description="configure and activate at start (false: a lifecycle manager does)",
        ),
    ]
    args += [
        DeclareLaunchArgument(
            name, default_value=topic, description=f"topic remapped to the node's '{name}'"
        )
        for name, topic in REMAPS
    ]
    args += [
        DeclareLaunchArgument(
            COMPRESSED[0],
            default_value=COMPRESSED[2],
            description="topic remapped to the node's 'image/compressed'",
        ),
        DeclareLaunchArgument(
            "image_transport",
            default_value="",
            description="raw | compressed (empty: the config file's value)",
        ),
        DeclareLaunchArgument(
            "target_frame",
            default_value="",
            description="frame of the 3-D outputs, e.g. base_link (empty: the config file's)",
        ),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_segmenter)])
