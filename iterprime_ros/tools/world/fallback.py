r"""Run the main job on the synthetic world when no real weights are installed.

The real models (BLIP ITM, Mask2Former) cannot be downloaded on an offline machine. Rather
than stopping there, the main-job command can fall back to this world: a generated tabletop
scene, the world's trained BLIP-architecture model (models/world_blip) and ORACLE proposals
(the scene's own instance masks plus distractors). The output must say so loudly
(WORLD_BANNER): the model knows these synthetic scenes only, and the proposals are not a
network's.

World images carry their scene seed in a PNG text chunk (``iterprime_world_seed``), so a
saved sample can be segmented later: load_world_image() regenerates the scene from the seed
and checks that the pixels match before the oracle may use its masks.

Typical wiring (cli ``segment``):

    ok, why = real_weights_available(settings.vlp_model, settings.proposal_model)
    if not ok:
        print(WORLD_BANNER + "\n  (" + why + ")", file=sys.stderr)
        image, scene = load_world_image(path)  # or scene = world_sample(); image = scene.image
        segmenter = world_segmenter(settings, scene)
        result = segmenter.segment(image, command)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .model_folder import recommended_gradcam_layer, world_model_folder
from .oracle import OracleProposals
from .scenes import Scene, generate_scene

SEED_KEY = "iterprime_world_seed"
# A held-out scene (test split, beyond the ~260 scenes of the 500-expression evaluation set) in
# which DEFAULT_SAMPLE_COMMAND refers to exactly one object (object 5, the small yellow cup;
# there are three cups): test_world_eval.py checks this.
DEFAULT_SAMPLE_SEED = 30_003_765
DEFAULT_SAMPLE_TARGET = 5
DEFAULT_SAMPLE_COMMAND = "grab the cup left of the big blue block"
WORLD_BANNER = (
    "=" * 78 + "\n"
    "!! NO REAL WEIGHTS INSTALLED -- RUNNING ON THE SYNTHETIC TABLETOP WORLD !!\n"
    "!! VLP: models/world_blip, a small BLIP-architecture model trained from scratch on "
    "generated\n"
    "!! scenes (it knows that world only); proposals: ORACLE masks from the scene generator.\n"
    "!! Install the real models with `iterprime download` on a machine with internet.\n" + "=" * 78
)


class NotAWorldImageError(ValueError):
    """The image is not a generated world scene, so the oracle proposals cannot serve it."""


def real_weights_available(vlp_model: str, proposal_model: str) -> tuple[bool, str]:
    """(True, "") when both models resolve to local weights; else (False, the first reason)."""
    from ...models.loading import ModelNotFoundError, resolve

    for name, kind in ((vlp_model, "vlp"), (proposal_model, "proposals")):
        try:
            resolve(name, kind=kind)
        except ModelNotFoundError as exc:
            return False, str(exc)
    return True, ""


def world_sample(seed: int = DEFAULT_SAMPLE_SEED) -> Scene:
    return generate_scene(seed)


def save_world_image(path: str | Path, seed: int = DEFAULT_SAMPLE_SEED) -> Scene:
    """Write the scene of `seed` as a PNG that remembers its seed; returns the scene."""
    from PIL import Image, PngImagePlugin

    scene = generate_scene(seed)
    info = PngImagePlugin.PngInfo()
    info.add_text(SEED_KEY, str(seed))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene.image).save(str(path), pnginfo=info)
    return scene


def load_world_image(path: str | Path) -> tuple[np.ndarray, Scene]:
    """(RGB image, its scene) for a PNG written by save_world_image; NotAWorldImageError
    otherwise.
    """
    from PIL import Image

    with Image.open(str(path)) as im:
        seed_text = (getattr(im, "text", None) or {}).get(SEED_KEY)
        image = np.asarray(im.convert("RGB"))
    if seed_text is None:
        raise NotAWorldImageError(
            f"{path} is not a world scene (no {SEED_KEY} in it); without real weights only "
            "generated world scenes can be segmented"
        )
    scene = scene_for_image(image, int(seed_text))
    return image, scene


def scene_for_image(image: np.ndarray, seed: int) -> Scene:
    scene = generate_scene(seed, image.shape[0], image.shape[1])
    if scene.image.shape != image.shape or not np.array_equal(scene.image, image):
        raise NotAWorldImageError(
            f"the image does not match world scene {seed} (edited or re-encoded?)"
        )
    return scene


def world_backends(
    scene: Scene | None = None,
    device: str = "cpu",
    gradcam_layer: int | None = None,
    model_folder: str | Path | None = None,
) -> tuple[Any, OracleProposals]:
    """(BlipITMBackend on the world model, OracleProposals with `scene` registered)."""
    from ...models.blip import BlipITMBackend

    folder = Path(model_folder or world_model_folder())
    layer = recommended_gradcam_layer(folder) if gradcam_layer is None else gradcam_layer
    vlp = BlipITMBackend(folder, device=device, gradcam_layer=layer)
    oracle = OracleProposals()
    if scene is not None:
        oracle.register(scene)
    return vlp, oracle


def world_segmenter(settings: Any = None, scene: Scene | None = None, device: str | None = None):
    """A pipeline.Segmenter on the world model + oracle, keeping the method switches of `settings`.

    The Grad-CAM layer is the world model's recommended one (its world_config.json), not the
    real BLIP's default; register more scenes with ``segmenter.proposals.register(scene)``.
    """
    from ...pipeline import Segmenter, SegmenterSettings

    settings = settings or SegmenterSettings()
    folder = world_model_folder()
    dev = device or ("cpu" if settings.device == "auto" else settings.device)
    vlp, oracle = world_backends(scene, dev, None, folder)
    s = settings.replace(
        vlp_model=str(folder),
        proposal_model="world-oracle",
        device=dev,
        gradcam_layer=vlp.gradcam_layer,
        half_precision=False,
    )
    return Segmenter.from_backends(vlp, oracle, s)
