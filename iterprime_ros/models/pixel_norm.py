"""Pixel mean and standard deviation the checkpoints were trained with.

One definition: the backends normalise with them, and the tiny test models and the synthetic
world's model are saved with the same values so they load through the same preprocessing.
"""

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # BLIP and ALBEF (CLIP's statistics)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # Mask2Former (ImageNet statistics)
IMAGENET_STD = (0.229, 0.224, 0.225)
