"""A model folder of the wrong kind is refused alike by every entry point (models/loading.py).

Random weights: the folders are tiny BLIP and Mask2Former builds; these tests check that a
folder holding one kind of model is refused where the other kind is wanted, by name, before
anything runs, never that a model segments well.
"""

from __future__ import annotations

import cv2
import pytest

from iterprime_ros.models import check_model_folder
from iterprime_ros.models.blip import BlipITMBackend
from iterprime_ros.models.loading import ModelNotFoundError, ModelTypeError
from iterprime_ros.models.mask2former import Mask2FormerProposals
from iterprime_ros.pipeline import Segmenter, SegmenterSettings
from iterprime_ros.tools.cli import main


@pytest.fixture(scope="module")
def node_message(tiny_model_dirs):
    """The node's configure check: the message every other entry point must repeat."""
    with pytest.raises(ModelTypeError) as err:
        blip = str(tiny_model_dirs.blip)
        check_model_folder("proposal_model", blip, "proposals", "mask2former")
    return str(err.value)


def test_the_message_names_the_parameter_the_kind_found_and_the_kind_wanted(node_message):
    assert "'proposal_model'" in node_message and "'blip' model" in node_message
    assert "model_type 'mask2former'" in node_message


def test_python_api_refuses_a_blip_folder_as_proposals(tiny_model_dirs, node_message):
    settings = SegmenterSettings(
        vlp_model=str(tiny_model_dirs.blip), proposal_model=str(tiny_model_dirs.blip), device="cpu"
    )
    with pytest.raises(ModelTypeError) as err:
        Segmenter(settings)
    assert str(err.value) == node_message
    # the backend itself refuses too (a caller building backends by hand)
    with pytest.raises(ModelTypeError) as err:
        Mask2FormerProposals(tiny_model_dirs.blip, device="cpu")
    assert str(err.value) == node_message


def test_python_api_refuses_a_mask2former_folder_as_the_vlp(tiny_model_dirs):
    with pytest.raises(ModelTypeError, match="'vlp_model'.*'mask2former' model.*'blip'"):
        BlipITMBackend(tiny_model_dirs.mask2former, device="cpu")
    # one kind of error for every missing or unusable model: callers catch ModelNotFoundError
    assert issubclass(ModelTypeError, ModelNotFoundError)


def test_cli_segment_refuses_a_blip_folder_as_proposals(
    tiny_model_dirs, sample_image, tmp_path, capsys, node_message
):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), sample_image[:, :, ::-1])
    out = tmp_path / "mask.png"
    code = main(
        [
            "segment",
            str(image),
            "the red cup",
            "--vlp",
            str(tiny_model_dirs.blip),
            "--proposals",
            str(tiny_model_dirs.blip),
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"error: {node_message}"
    assert not out.exists()
