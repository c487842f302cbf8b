"""A whole conversation with the node as a separate process over real DDS (docs/voice.md).

The node answers on the synthetic world (test/helpers/world_node.py: the world's trained model and
ORACLE proposals without distractors), so every candidate is one whole object of a known scene
and the same pixels always give the same candidates. What is checked is the exchange, not the
model's accuracy (docs/world_results.md measures that): each answer is checked against the
candidates the node itself offered and the scene's true masks. The exchange played:

- "the cup" fits several objects: the node gives no target (hold_ambiguous), says so, and
  publishes a ready-to-speak question on ~/question;
- the person replies "the left one": the answer is the leftmost candidate offered, in reply to
  the question, found without a model pass;
- "no, the other one", then "not that one": each time another candidate, never a refused one;
- a plural command: several whole objects, left to right, each with its mask;
- a weak answer: with min_confidence raised on the running node (a live parameter), an answer
  the method finds is reported not sure, with no target and its candidates;
- a lifecycle transition ends the conversation: a reply afterwards is an ordinary command;
- the camera moves between a question and its reply: the reply is answered by the models on
  the new view, never by the old view's candidates, and a correction of an answer from another
  view fails saying the scene changed.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest
from node_harness import Harness, NodeProcess, tiny_params
from ros_helpers import EVENT_TIMEOUT_S

rclpy = pytest.importorskip("rclpy")
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from iterprime_ros.msg import Segmentation  # noqa: E402
from iterprime_ros.ros.conversions import image_to_rgb, rgb_to_fields  # noqa: E402
from iterprime_ros.ros.messages import image_message  # noqa: E402
from iterprime_ros.settings import SegmenterSettings  # noqa: E402
from iterprime_ros.tools.world.evaluate import (  # noqa: E402
    recommended_gradcam_layer,
    world_model_folder,
)
from iterprime_ros.tools.world.scenes import generate_scene  # noqa: E402

pytestmark = pytest.mark.slow

HERE = __import__("pathlib").Path(__file__).resolve().parent
WORLD_NODE = HERE.parent / "helpers" / "world_node.py"
SEED = 30_003_765  # test/helpers/world_node.py registers this scene
MOVED = 30_003_774  # ... and this one: the view after the camera moved


def _mask(image: Any) -> np.ndarray:
    return image_to_rgb(image)[:, :, 0] > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def _which(mask: np.ndarray, scene: Any) -> int:
    """The scene object a mask is (IoU >= 0.9), or -1."""
    for i, truth in enumerate(scene.masks):
        if _iou(mask, truth) >= 0.9:
            return i
    return -1


@pytest.fixture(scope="module")
def talk(tmp_path_factory, tiny_model_dirs) -> Iterator[tuple[Harness, NodeProcess, Any, list]]:
    folder = world_model_folder()
    params = tiny_params(
        tiny_model_dirs,
        vlp_model=str(folder),
        gradcam_layer=recommended_gradcam_layer(folder),
        empty_selection="best_heat",
        max_components=12,
        track=False,
        hold_ambiguous=True,
        plural_commands=True,
        ambiguity_margin=SegmenterSettings().ambiguity_margin,  # the node's default
        min_confidence=0.0,
    )
    proc = NodeProcess("talk", params, tmp_path_factory.mktemp("talk"), program=[str(WORLD_NODE)])
    rclpy.init()
    h = Harness(rclpy, proc, "talk_test")
    questions: list[str] = []
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    h.node.create_subscription(
        String, f"{proc.out}/question", lambda m: questions.append(m.data), reliable
    )
    scene = generate_scene(SEED)
    image = image_message(rgb_to_fields(scene.image))
    image.header.frame_id = "world_camera"
    try:
        h.wait_ready(timeout=180.0)
        h.restamp = True
        h.show(image)
        yield h, proc, scene, questions
    finally:
        h.close()
        rclpy.shutdown()
        proc.stop()


def _transition(h: Harness, transition: int) -> None:
    client = h.node.create_client(ChangeState, f"{h.target.out}/change_state")
    assert client.wait_for_service(timeout_sec=EVENT_TIMEOUT_S)
    future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
    assert h.until(future.done, 180.0), f"transition {transition} not answered"
    assert future.result().success, h.target.log[-3000:]


def _ask(h: Harness, questions: list[str]) -> tuple[Any, int]:
    """'the cup': an ambiguous answer with its question (on the result and on ~/question)."""
    asked = len(questions)
    r = h.command("the cup")
    assert r.status == Segmentation.STATUS_AMBIGUOUS and r.ambiguous and not r.success, r.error
    assert r.error.startswith("ambiguous") and r.mask.width == 0 and len(r.objects) == 0
    assert r.question and r.question.endswith("?") and r.in_reply_to == 0
    assert h.until(lambda: len(questions) > asked, EVENT_TIMEOUT_S), "no question published"
    assert questions[asked:] == [r.question]
    return r, asked


def _object(mask_image: Any, scene: Any) -> int:
    """The scene object a message mask is exactly (IoU >= 0.9), asserted to be one."""
    index = _which(_mask(mask_image), scene)
    assert index >= 0, "not one whole object of the scene"
    return index


def test_ambiguous_command_reply_and_correction(talk):
    h, proc, scene, questions = talk
    asked, n_questions = _ask(h, questions)
    offered = [_object(c.mask, scene) for c in asked.candidates]
    assert len(set(offered)) == len(offered) >= 2 and all(c.description for c in asked.candidates)
    leftmost = offered[int(np.argmin([c.centroid_px.x for c in asked.candidates]))]

    chosen = h.command("the left one")
    assert chosen.success and chosen.status == Segmentation.STATUS_ANSWERED, chosen.error
    assert chosen.in_reply_to == asked.command_id and chosen.sure and not chosen.question
    assert _object(chosen.mask, scene) == leftmost
    assert [_object(o.mask, scene) for o in chosen.objects] == [leftmost]

    other = h.command("no, the other one")
    assert other.success and other.in_reply_to == chosen.command_id, other.error
    second = _object(other.mask, scene)
    assert second in offered and second != leftmost

    if len(offered) > 2:  # two refused now: a third candidate, never a refused one
        again = h.command("not that one")
        assert again.success and again.in_reply_to == other.command_id, again.error
        assert _object(again.mask, scene) in set(offered) - {leftmost, second}
    assert len(questions) == n_questions + 1  # replies and corrections ask nothing


def test_plural_command_gives_whole_objects_left_to_right(talk):
    h, proc, scene, questions = talk
    r = h.command("all the cups")
    assert r.success and r.status == Segmentation.STATUS_PLURAL and r.in_reply_to == 0, r.error
    found = [_object(o.mask, scene) for o in r.objects]
    assert len(set(found)) == len(found) >= 2, found
    xs = [o.centroid_px.x for o in r.objects]
    assert xs == sorted(xs)
    assert _object(r.mask, scene) in found  # the top level is the best of them
    assert all(o.grasp_point_px.x > 0 and o.bbox.width > 0 for o in r.objects)


def test_a_weak_answer_is_not_sure_and_no_target(talk):
    h, proc, scene, questions = talk
    assert h.set_parameter("min_confidence", 1.0).successful
    try:
        r = h.command("the big blue block")
    finally:
        assert h.set_parameter("min_confidence", 0.0).successful
    assert r.status == Segmentation.STATUS_NOT_SURE and not r.sure and not r.success, r.error
    assert r.error.startswith("not sure") and r.confidence < 1.0
    assert r.mask.width == 0 and r.bbox.width == 0 and len(r.objects) == 0
    assert len(r.candidates) >= 1 and r.candidates[0].description
    assert h.command("the big blue block").success  # the same answer is a target again


def test_a_lifecycle_transition_ends_the_conversation(talk):
    h, proc, scene, questions = talk
    _ask(h, questions)
    _transition(h, Transition.TRANSITION_DEACTIVATE)
    _transition(h, Transition.TRANSITION_ACTIVATE)
    h.show(h.image)
    r = h.command("the left one")
    assert r.in_reply_to == 0, "a reply after a transition must be a new command"


def test_a_reply_after_the_camera_moved_is_answered_on_the_new_view(talk):
    h, proc, scene, questions = talk
    first_view = h.image
    asked, _ = _ask(h, questions)
    moved = generate_scene(MOVED)
    image = image_message(rgb_to_fields(moved.image))
    image.header.frame_id = "world_camera"
    try:
        h.show(image)
        r = h.command("the left one")
        assert r.in_reply_to == asked.command_id, r.error
        assert r.expression == "the left cup", "answered from the old view's candidates"
        assert r.candidates and all(_which(_mask(c.mask), moved) >= 0 for c in r.candidates)
        if r.success:
            _object(r.mask, moved)
        h.show(first_view)
        wrong = h.command("no, the other one")
        assert not wrong.success and wrong.in_reply_to == r.command_id
        assert "scene changed" in wrong.error and wrong.mask.width == 0, wrong.error
    finally:
        h.show(first_view)
