"""A synthetic tabletop world on which the whole method can be checked offline.

No pretrained vision-language weights can be downloaded on the development machines, so
nothing else shows that the pipeline finds the right object. This package provides:

- ``scenes``: a seeded generator of tabletop-like images (objects of a few shapes, colours
  and sizes) with exact instance masks;
- ``grammar``: referring expressions that are checked to refer to exactly one object
  (attributes, relations between objects, absolute positions, spoken-command forms) and
  ITM hard negatives (wrong colour / shape / size, swapped relation);
- ``model``: the BLIP-architecture (``transformers`` BlipForImageTextRetrieval) builder and
  tokenizer for this world; ``train``: its from-scratch training (scripts/train_world_model.py);
- ``oracle``: ORACLE mask proposals (the generator's true instance masks plus named
  distractors), used because no Mask2Former was trained for this world (see MODEL_CARD);
- ``evaluate``: the world evaluation (``python -m iterprime_ros.tools.world.evaluate``).

The trained checkpoint (models/world_blip) knows this world only.
"""

WORLD_MODEL_DIR_NAME = "world_blip"
