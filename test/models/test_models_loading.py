"""Model resolution, errors naming `iterprime download`, the model cache, the registry, download
plumbing.

No network anywhere: Hugging Face lookups are local_files_only and downloads use a fake.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from iterprime_ros.models import (
    ModelNotFoundError,
    create_proposal_backend,
    create_vlp_backend,
    proposal_backends,
    register_proposal_backend,
    vlp_backends,
)
from iterprime_ros.models.loading import resolve, resolve_device, resolve_dtype
from iterprime_ros.tools import download as dl


def test_tiny_folders_are_marked_random(tiny_model_dirs):
    for folder in (tiny_model_dirs.blip, tiny_model_dirs["mask2former"]):
        assert (folder / "TINY_RANDOM_WEIGHTS.txt").is_file()
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
        assert (folder / "preprocessor_config.json").is_file()
    assert (tiny_model_dirs.blip / "tokenizer.json").is_file()


def test_resolve_local_folder(tiny_model_dirs):
    assert resolve(tiny_model_dirs.blip) == tiny_model_dirs.blip.resolve()
    assert resolve(str(tiny_model_dirs.mask2former)) == tiny_model_dirs.mask2former.resolve()


def test_missing_folder_and_incomplete_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve(tmp_path / "nope" / "deeper")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="missing model weights"):
        resolve(tmp_path)
    f = tmp_path / "file.bin"
    f.write_text("x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve(f)


def test_hub_id_not_in_cache_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so the id is not accidentally a relative folder
    with pytest.raises(ModelNotFoundError) as err:
        resolve("nobody-xyz/not-a-model", kind="vlp")
    msg = str(err.value)
    assert (
        "not in the Hugging Face cache" in msg
        and "iterprime download --vlp nobody-xyz/not-a-model" in msg
    )
    with pytest.raises(ModelNotFoundError, match="iterprime download --proposals"):
        resolve("nobody-xyz/not-a-model", kind="proposals")


def test_devices_and_dtypes():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_dtype(torch.device("cpu"), True) == torch.float32  # fp16 only on CUDA
    assert resolve_dtype(torch.device("cuda"), True) == torch.float16


def test_the_backend_registry_builds_known_backends_and_refuses_unknown_ones(
    tiny_model_dirs, sample_image
):
    assert "blip_itm" in vlp_backends() and "mask2former" in proposal_backends()
    with pytest.raises(ValueError, match="unknown proposal backend 'sam'"):
        create_proposal_backend("sam")
    with pytest.raises(ValueError, match="unknown VLP backend"):
        create_vlp_backend("albef")

    class Everything:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def propose(self, image):
            import numpy as np

            return np.ones((1, *image.shape[:2]), bool)

    register_proposal_backend("everything_test", Everything)
    backend = create_proposal_backend("everything_test", model="x", device="cpu")
    assert (
        backend.kwargs == {"model": "x", "device": "cpu"}
        and backend.propose(sample_image).shape[0] == 1
    )
    vlp = create_vlp_backend(
        "blip_itm", model=str(tiny_model_dirs.blip), device="cpu", gradcam_layer=3
    )
    assert vlp.gradcam_layer == 3


# ------------------------------------------------------------------ download (no network)
def _fake_snapshot(folder: Path, weights_on_call: int = 1):
    calls = []

    def snapshot(repo_id, cache_dir=None, allow_patterns=None):
        calls.append((repo_id, tuple(allow_patterns)))
        folder.mkdir(parents=True, exist_ok=True)
        if len(calls) >= weights_on_call:
            (
                folder
                / ("pytorch_model.bin" if "*.bin" in allow_patterns else "model.safetensors")
            ).write_text("w")
        return str(folder)

    return snapshot, calls


def test_download_defaults_and_named_models():
    assert dl.models_to_fetch(None, None) == [dl.DEFAULT_VLP_MODEL, dl.DEFAULT_PROPOSAL_MODEL]
    assert dl.models_to_fetch("a/b", None) == ["a/b"]
    assert dl.models_to_fetch(None, "c/d") == ["c/d"]


def test_download_uses_snapshot_and_falls_back_to_bin(tmp_path):
    snapshot, calls = _fake_snapshot(tmp_path / "snap", weights_on_call=2)
    folder = dl.download_model("org/model", snapshot=snapshot)
    assert folder == tmp_path / "snap" and (folder / "pytorch_model.bin").is_file()
    assert len(calls) == 2 and "*.safetensors" in calls[0][1] and "*.bin" not in calls[0][1]
    assert "*.bin" in calls[1][1]


def test_download_errors_are_one_line(tmp_path, capsys):
    def offline(**kwargs):
        raise OSError("no network")

    args = argparse.Namespace(vlp="org/model", proposals=None, cache_dir=None)
    assert dl.run(args, snapshot=offline) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not download 'org/model': OSError: no network")

    snapshot, _ = _fake_snapshot(tmp_path / "snap2", weights_on_call=99)  # never any weights
    with pytest.raises(dl.DownloadError, match="holds no model weights"):
        dl.download_model("org/empty", snapshot=snapshot)


def test_download_subcommand_is_registered():
    from iterprime_ros.tools.cli import build_parser

    args = build_parser().parse_args(
        ["download", "--vlp", "a/b", "--proposals", "c/d", "--cache-dir", "/x"]
    )
    assert (args.vlp, args.proposals, args.cache_dir) == (
        "a/b",
        "c/d",
        "/x",
    ) and args.func is dl.run
