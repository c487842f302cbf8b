"""The world model's losses beyond BLIP's ITM: grounding of the cross-attention on the
referred object, dense patch attributes for the vision encoder, and the contrastive loss; and
the ITM forward pass they share.

Why a module of their own: each is an option of the training run (off by default), and each
is checked on its own by the tests.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .scenes import COLOURS, SHAPES, SIZES, Scene, patch_coverage
from .training_data import Row


def target_patch_distribution(mask: np.ndarray, grid: int) -> torch.Tensor:
    """H x W bool -> grid*grid weights: the fraction of each patch the mask covers, normalised."""
    m = torch.from_numpy(patch_coverage(mask, grid))
    return m / m.sum().clamp_min(1e-8)


def grounding_loss(
    attention: torch.Tensor, targets: torch.Tensor, token_mask: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy between the target-patch distribution and the cross-attention.

    attention: R x K x L x (1 + g*g) post-softmax probabilities of the grounded layer (key 0 is
    the image [CLS]); targets: R x g*g (one distribution for every token) or R x L x g*g (one per
    token; rows sum to 1); token_mask: R x L (the tokens grounded).
    The heads' mean attention is used, so mass on [CLS] or on other patches is penalised.
    """
    a = attention.mean(1)[:, :, 1:]  # R x L x g*g
    t = targets[:, None, :] if targets.ndim == 2 else targets
    ce = -(t * torch.log(a.clamp_min(1e-8))).sum(-1)  # R x L
    w = token_mask.float()
    return (ce * w).sum() / w.sum().clamp_min(1.0)


def anchor_token_count(tokenizer, text: str, anchor_words: int) -> int:
    """How many word pieces the last `anchor_words` words of `text` take (the anchor's phrase)."""
    if anchor_words <= 0:
        return 0
    return sum(len(tokenizer.tokenize(w)) for w in text.split()[-anchor_words:])


def token_grounding_targets(
    rows: list[Row], scenes: list[Scene], att: torch.Tensor, grid: int, tokenizer=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token target distributions (R x L x g*g) and the grounded tokens (R x L) of positive
    rows.

    Every token but [SEP] and padding is grounded on the referred object, except -- when a
    tokenizer is given -- the tokens of a relation's anchor phrase ("... left of *the red box*"),
    which are grounded on the anchor: each word attends to what it names, so the primary word's
    map (PWEM) carries the target while the mean over tokens mixes in the anchor, as in a VLP
    trained on real captions.
    """
    n, length = att.shape
    targets = torch.zeros(n, length, grid * grid)
    tok = att.clone().float()
    for k, r in enumerate(rows):
        sep = int(att[k].sum()) - 1
        tok[k, sep] = 0
        sc = scenes[r.image]
        targets[k, :sep] = target_patch_distribution(sc.masks[r.target], grid)
        if tokenizer is not None and r.anchor >= 0:
            m = anchor_token_count(tokenizer, r.text, r.anchor_words)
            if 0 < m < sep:
                targets[k, sep - m : sep] = target_patch_distribution(sc.masks[r.anchor], grid)
    return targets, tok


# Dense attribute supervision of the vision encoder (training only; the heads are not saved).
PATCH_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": SIZES,
}


def patch_attribute_labels(
    scene: Scene, grid: int, min_cover: float = 0.3
) -> dict[str, torch.Tensor]:
    """Per patch (g*g), the index of the shape / colour / size of the object covering most of it
    (at least `min_cover` of the patch), or len(values) for the table; "centre": that object's
    centroid (x, y) in patch units (g*g x 2, NaN for the table).
    """
    cover = patch_coverage(scene.masks, grid)
    best = cover.argmax(0)
    table = cover.max(0) < min_cover
    out = {}
    for attr, values in PATCH_ATTRIBUTES.items():
        idx = np.array([values.index(getattr(o, attr)) for o in scene.objects])[best]
        idx[table] = len(values)
        out[attr] = torch.from_numpy(idx.astype(np.int64))
    # WorldObject.centroid is the mean of pixel centres (+0.5); in patch units from the image
    # corner
    centres = (np.array([o.centroid for o in scene.objects]) - 0.5) * (
        grid / scene.width,
        grid / scene.height,
    )
    centres = centres[best]
    centres[table] = np.nan
    out["centre"] = torch.from_numpy(centres.astype(np.float32))
    return out


class PatchAttributeHeads(torch.nn.Module):
    """Linear heads that read each patch's shape, colour and size (and, with position_weight > 0,
    its object's centroid) from the vision encoder's output.

    Stage-1 ITM training alone taught the vision encoder colour but hardly shape (wrong-shape
    negatives were accepted about half the time), so expressions that only a shape singles out
    could not be grounded; and "the leftmost cup" needs every patch of a cup to carry where that
    cup is, not where the patch is. This auxiliary loss gives the encoder a dense signal; the
    heads are thrown away, so the saved model is a plain BlipForImageTextRetrieval.
    """

    def __init__(self, hidden: int, position_weight: float = 0.0):
        super().__init__()
        self.heads = torch.nn.ModuleDict(
            {a: torch.nn.Linear(hidden, len(v) + 1) for a, v in PATCH_ATTRIBUTES.items()}
        )
        self.position_weight = position_weight
        self.centre = torch.nn.Linear(hidden, 2) if position_weight > 0 else None

    def loss(
        self, patch_embeds: torch.Tensor, labels: list[dict[str, torch.Tensor]]
    ) -> torch.Tensor:
        """patch_embeds: N x g*g x D (no [CLS]); labels: one ``patch_attribute_labels`` per
        image.
        """
        total = patch_embeds.new_zeros(())
        for attr, head in self.heads.items():
            target = torch.stack([lab[attr] for lab in labels])
            total = total + F.cross_entropy(head(patch_embeds).flatten(0, 1), target.flatten())
        total = total / len(self.heads)
        if self.centre is not None:
            target = torch.stack(
                [lab["centre"] for lab in labels]
            )  # N x g*g x 2, NaN on the table
            on_object = ~torch.isnan(target[..., 0])
            if on_object.any():
                pred = self.centre(patch_embeds)[on_object]
                total = total + self.position_weight * F.smooth_l1_loss(pred, target[on_object])
        return total


def encode_texts(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    ids = enc["input_ids"].clone()
    ids[:, 0] = tokenizer.convert_tokens_to_ids("[ENC]")  # BLIP's ITM first token
    return ids, enc["attention_mask"]


def itm_logits(
    model,
    pixel_values: torch.Tensor,
    ids: torch.Tensor,
    att: torch.Tensor,
    img_index: torch.Tensor,
    return_image: bool = False,
):
    image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
    out = model.text_encoder(
        input_ids=ids, attention_mask=att, encoder_hidden_states=image_embeds[img_index]
    ).last_hidden_state
    logits = model.itm_head(out[:, 0])
    return (logits, image_embeds) if return_image else logits


def itc_loss(
    model,
    tokenizer,
    image_embeds: torch.Tensor,
    ids: torch.Tensor,
    att: torch.Tensor,
    img_index: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.07,
) -> torch.Tensor:
    """BLIP's image-text contrastive loss on the positive captions (text-only pass, [CLS]
    first).
    """
    pos = labels == 1
    ids = ids[pos].clone()
    ids[:, 0] = tokenizer.cls_token_id
    text = model.text_encoder(input_ids=ids, attention_mask=att[pos]).last_hidden_state[:, 0]
    t = F.normalize(model.text_proj(text), dim=-1)
    v = F.normalize(model.vision_proj(image_embeds[:, 0]), dim=-1)
    sim = t @ v.t() / temperature  # captions x images
    target = img_index[pos]
    first = torch.zeros(v.shape[0], dtype=torch.bool)
    keep = []
    for k, i in enumerate(target.tolist()):  # one caption per image for image -> text
        if not first[i]:
            first[i] = True
            keep.append(k)
    keep_t = torch.tensor(keep)
    i2t = F.cross_entropy(sim[keep_t].t()[target[keep_t]], torch.arange(len(keep)))
    return 0.5 * (F.cross_entropy(sim, target) + i2t)
