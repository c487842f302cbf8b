"""The conversation fields in real Segmentation messages, live (rclpy) and offline (rosbags).

The message builders are the contract a voice front end and a planner read (docs/voice.md): the
status numbers must be the message's own constants, a not-sure answer must carry no geometry a
planner could take, and candidates and plural objects must arrive with their masks and order.
"""

from __future__ import annotations

import numpy as np
from result_fixtures import answer, box_candidate
from std_msgs.msg import Header

from iterprime_ros.msg import Segmentation
from iterprime_ros.result import Candidate, SegmentationResult
from iterprime_ros.ros import conversions
from iterprime_ros.ros.conversions import image_to_rgb
from iterprime_ros.ros.messages import Answer, segmentation
from iterprime_ros.tools.bags import SEGMENTATION_TYPE, typestore


def _object(index: int, x0: int, x1: int, description: str) -> Candidate:
    return box_candidate(index, (x0, x1), (3, 9), (12, 40), 0.5 + index / 10, description)


def _result(**fields) -> SegmentationResult:
    left, right = _object(2, 1, 9, "the red cup on the left"), _object(6, 25, 35, "the blue cup")
    defaults = dict(
        command="both cups",
        expression="both cups",
        primary_word="cup",
        score=1.3,
        itm_score=0.8,
        iterations=1,
        confidence=0.8,
        plural=True,
        candidates=[left, right],
        objects=[left, right],
    )
    # the rest as SegmentationResult defaults: sure, not ambiguous, no question, not a reply
    return answer(left, **{**defaults, **fields})


def test_status_numbers_are_the_messages_constants():
    for name in ("NONE", "ANSWERED", "NOT_SURE", "AMBIGUOUS", "PLURAL"):
        assert getattr(conversions, f"STATUS_{name}") == getattr(Segmentation, f"STATUS_{name}")


def _answer(**kw) -> Answer:
    header = Header(frame_id="cam")
    header.stamp.sec = 7
    return Answer(command_id=4, command="both cups", header=header, latency_s=0.1, **kw)


def test_a_plural_answer_carries_every_object_with_mask_and_3d():
    msg = segmentation(_result(), _answer(objects_3d=((0.1, 0.2, 0.9), None)))
    assert msg.success and msg.sure and msg.status == Segmentation.STATUS_PLURAL
    assert [o.proposal_index for o in msg.objects] == [2, 6]
    first, second = msg.objects
    assert first.has_centroid_3d and (first.centroid_3d.z, second.has_centroid_3d) == (0.9, False)
    assert np.array_equal(image_to_rgb(second.mask)[:, :, 0] > 0, _result().objects[1].mask)
    assert second.mask.header.frame_id == "cam" and second.bbox.x_offset == 25
    assert [c.description for c in msg.candidates] == ["the red cup on the left", "the blue cup"]
    assert msg.bbox.x_offset == 1 and msg.mask.width == 40  # the top level is the answer itself


def test_candidates_can_go_without_masks():
    msg = segmentation(_result(), _answer(candidate_masks=False))
    assert all(c.mask.width == 0 for c in msg.candidates) and msg.candidates[1].bbox.width == 10
    assert all(o.mask.width == 40 for o in msg.objects)  # an answer always has its masks


def test_a_not_sure_answer_gives_a_planner_nothing_to_take():
    error = "not sure: confidence 0.20 is below min_confidence 0.50"
    result = _result(success=False, sure=False, confidence=0.2, error=error, plural=False)
    msg = segmentation(result, _answer(centroid_3d=(0.1, 0.2, 0.9)))
    assert not msg.success and not msg.sure and msg.status == Segmentation.STATUS_NOT_SURE
    assert msg.error == error and msg.mask.width == 0 and msg.bbox.width == 0
    assert not msg.has_centroid_3d and list(msg.objects) == []
    assert len(msg.candidates) == 2 and msg.confidence == np.float32(0.2)


def test_offline_messages_have_the_same_conversation_fields():
    from iterprime_ros.tools.replay_dialogue import conversation_fields

    types = typestore().types
    fields = conversation_fields(_result(in_reply_to="3"), 7, "cam", (None, (0.0, 0.1, 0.5)))
    assert fields["status"] == Segmentation.STATUS_PLURAL and fields["in_reply_to"] == 3
    assert [o.proposal_index for o in fields["objects"]] == [2, 6]
    assert fields["objects"][1].has_centroid_3d and not fields["objects"][0].has_centroid_3d
    assert all(isinstance(c, types["iterprime_ros/msg/Candidate"]) for c in fields["candidates"])
    # and they serialize inside a whole Segmentation
    from iterprime_ros.tools.replay import segmentation_message

    msg = segmentation_message(_result(), 1, "both cups", 7, "cam", 0.1, None)
    msg = msg.__class__(**{**msg.__dict__, **fields})
    raw = typestore().serialize_cdr(msg, SEGMENTATION_TYPE)
    back = typestore().deserialize_cdr(raw, SEGMENTATION_TYPE)
    assert back.question == "" and [o.description for o in back.objects] == [
        "the red cup on the left",
        "the blue cup",
    ]
