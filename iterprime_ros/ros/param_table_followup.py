"""The rows of the parameter table for what follows an answer: tracking the answered object on
later frames, and the conversation about it (confidence, candidates, questions, replies).

Why a module of its own: these rows belong to the one table (param_table.PARAMETERS ends with
them) but describe the node's behaviour after a result rather than how a result is computed, and
keeping them apart keeps each file short enough to read whole.
"""

from __future__ import annotations

from .param_spec import ParamSpec

P = ParamSpec
FOLLOWUP_ROWS: tuple[ParamSpec, ...] = (
    # following the object after a command (tracking.py, ~/track)
    P(
        "track",
        "bool",
        "after a successful command, follow its object on later frames (~/track)",
        default=True,
        setting=False,
    ),
    P(
        "track_rate_hz",
        "float",
        "most track updates per second (0: every frame it can afford)",
        default=0.0,
        low=0.0,
        high=1000.0,
        setting=False,
    ),
    P(
        "track_timeout_s",
        "float",
        "a track ends this long after its command (0: never)",
        default=0.0,
        low=0.0,
        high=86400.0,
        setting=False,
    ),
    P(
        "track_lost_timeout_s",
        "float",
        "a track lost for longer than this ends",
        default=3.0,
        low=0.0,
        high=3600.0,
        setting=False,
    ),
    P(
        "track_flow",
        "str",
        "optical flow that carries the mask between frames (none: only proposals)",
        default="dis",
        choices=("dis", "farneback", "none"),
        setting=False,
    ),
    P(
        "track_flow_max_side",
        "int",
        "flow is computed on frames scaled to at most this side",
        default=320,
        low=16,
        high=4096,
        setting=False,
    ),
    P(
        "track_min_appearance",
        "float",
        "colour-histogram similarity to the command's mask below which the object counts as lost",
        default=0.5,
        low=0.0,
        high=1.0,
        setting=False,
    ),
    P(
        "track_proposals_period_s",
        "float",
        "re-associate with fresh mask proposals at most this often (a proposal pass on the "
        "current frame; 0: never)",
        default=0.0,
        low=0.0,
        high=3600.0,
        setting=False,
    ),
    # the conversation (docs/voice.md)
    P(
        "min_confidence",
        "float",
        "answers with a lower confidence are 'not sure': success false, no grasp target, their "
        "candidates and a question instead (0: every answer found is a target)",
        low=0.0,
        high=1.0,
    ),
    P(
        "hold_ambiguous",
        "bool",
        "an ambiguous answer (the words fit several objects) is no target either until the "
        "person chooses (the question is published either way)",
    ),
    P(
        "max_candidates",
        "int",
        "distinct objects offered with each answer (candidates)",
        low=1,
        high=20,
    ),
    P(
        "ambiguity_margin",
        "float",
        "the runner-up within this share of the best candidate's score makes an answer ambiguous",
        low=0.0,
        high=1.0,
        high_open=True,
    ),
    P(
        "plural_commands",
        "bool",
        "'both cups', 'all the red blocks': answer with every matching object (objects)",
    ),
    P(
        "dialogue_timeout_s",
        "float",
        "a question or answer older than this takes no replies or corrections",
        low=0.0,
        high=86400.0,
        low_open=True,
    ),
    P(
        "publish_candidate_masks",
        "bool",
        "give each candidate in a result its full-size mono8 mask (false: boxes and "
        "descriptions only, for lighter messages)",
        default=True,
        setting=False,
    ),
)
del P
