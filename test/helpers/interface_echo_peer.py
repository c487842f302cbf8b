"""Second process for the interface round-trip test: echoes Segmentation messages from
`seg_in` to `seg_out` and serves `segment_echo` (iterprime_ros/srv/Segment), answering
with a result that carries the request's text and image size.
"""

import rclpy
from rclpy.node import Node

from iterprime_ros.msg import Segmentation
from iterprime_ros.srv import Segment


class Echo(Node):
    def __init__(self) -> None:
        super().__init__("interface_echo_peer")
        self.pub = self.create_publisher(Segmentation, "seg_out", 10)
        self.create_subscription(Segmentation, "seg_in", self.pub.publish, 10)
        self.create_service(Segment, "segment_echo", self.answer)
        self.get_logger().info("ready")

    def answer(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        response.result.command = request.text
        response.result.success = request.image.width > 0
        response.result.error = "" if response.result.success else "no image"
        response.result.mask.width = request.image.width
        response.result.mask.height = request.image.height
        return response


def main() -> None:
    rclpy.init()
    node = Echo()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
