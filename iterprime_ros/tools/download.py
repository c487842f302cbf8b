"""`iterprime download`: fetch weights into the Hugging Face cache (the only step that needs
internet).

Run time loads with ``local_files_only=True``; this command is how the cache gets filled, on
a machine with internet (or once, before a robot goes offline). Only what loading needs is
fetched: configs, tokenizer files and safetensors weights (``*.bin`` only when a repository has
no safetensors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ..models.loading import DEFAULT_PROPOSAL_MODEL, DEFAULT_VLP_MODEL, WEIGHT_FILES

ALLOW_PATTERNS = ["*.json", "*.txt", "*.safetensors", "*.model"]


class DownloadError(RuntimeError):
    """A model could not be fetched (no network, unknown id, no weights in the repository)."""


def download_model(
    repo_id: str, cache_dir: str | None = None, *, snapshot: Callable[..., str] | None = None
) -> Path:
    """Fetch one model repository into the cache; returns the local snapshot folder.

    snapshot: injectable ``huggingface_hub.snapshot_download`` (tests use a fake; no network
    there).
    """
    if snapshot is None:
        from huggingface_hub import snapshot_download as snapshot
    try:
        folder = Path(
            snapshot(repo_id=repo_id, cache_dir=cache_dir, allow_patterns=ALLOW_PATTERNS)
        )
        if not any(
            (folder / w).is_file() for w in WEIGHT_FILES
        ):  # older repositories ship only .bin
            folder = Path(
                snapshot(
                    repo_id=repo_id, cache_dir=cache_dir, allow_patterns=ALLOW_PATTERNS + ["*.bin"]
                )
            )
    except Exception as exc:  # network errors, 404s, auth: one clear line for the user
        raise DownloadError(
            f"could not download {repo_id!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        raise DownloadError(f"{repo_id!r} was fetched to {folder} but holds no model weights")
    return folder


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download",
        help="fetch model weights into the Hugging Face cache (needs internet)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "--vlp",
        default=None,
        metavar="ID",
        help=f"vision-language model id (default {DEFAULT_VLP_MODEL})",
    )
    p.add_argument(
        "--proposals",
        default=None,
        metavar="ID",
        help=f"proposal model id (default {DEFAULT_PROPOSAL_MODEL})",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="Hugging Face cache folder (default: HF_HOME / HF_HUB_CACHE)",
    )
    p.set_defaults(func=run)


def models_to_fetch(vlp: str | None, proposals: str | None) -> list[str]:
    """Both defaults when neither flag is given; otherwise just the ones named."""
    if vlp is None and proposals is None:
        return [DEFAULT_VLP_MODEL, DEFAULT_PROPOSAL_MODEL]
    return [m for m in (vlp, proposals) if m]


def run(
    args: argparse.Namespace,
    *,
    snapshot: Callable[..., str] | None = None,
    out: Callable[[str], None] = print,
) -> int:
    failed = 0
    for repo_id in models_to_fetch(args.vlp, args.proposals):
        try:
            folder = download_model(repo_id, args.cache_dir, snapshot=snapshot)
        except DownloadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        out(f"{repo_id}: {folder}")
    return 1 if failed else 0
