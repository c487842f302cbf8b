"""Proposal masks that stay on the device, read to the host one mask at a time.

Why: on a GPU the proposal network makes its N x H x W masks there (200 masks at 640 x 480 are
about 61 MB). Selection needs only the few masks that cover the heat-map peak on the host (to
count their connected components) and then the chosen one; copying all of them to the host on
every fresh frame costs more than the rest of the selection. DeviceMasks stands where the
pipeline would hold the host array: indexing copies only the masks asked for (a single mask is
kept once read), and anything else numpy is asked of it reads the whole set once (a fallback
for tools, never on the command path).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class DeviceMasks:
    """N x H x W bool masks held as a torch tensor; numpy-like reads copy only what they touch."""

    def __init__(self, tensor: torch.Tensor) -> None:
        if tensor.dim() != 3:
            raise ValueError(f"expected N x H x W masks, got shape {tuple(tensor.shape)}")
        self.tensor = tensor.to(torch.bool)
        self._one: dict[int, np.ndarray] = {}
        self._all: np.ndarray | None = None
        self.masks_read = 0  # masks copied to the host so far (a whole read counts N)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(bool)

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    def __getitem__(self, index: Any) -> np.ndarray:
        if self._all is not None:
            return self._all[index]
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if i < 0:
                i += len(self)
            if i not in self._one:
                self._one[i] = self.tensor[i].cpu().numpy()
                self.masks_read += 1
            return self._one[i]
        if isinstance(index, (list, tuple, np.ndarray)) and np.asarray(index).dtype != bool:
            rows = np.asarray(index, dtype=np.int64).reshape(-1)
            picked = torch.from_numpy(rows).to(self.tensor.device)
            out = self.tensor.index_select(0, picked).cpu().numpy()
            self.masks_read += len(rows)
            return out.reshape(*np.asarray(index).shape, *self.shape[1:])
        return self.host()[index]

    def host(self) -> np.ndarray:
        """Every mask on the host (read once, then kept)."""
        if self._all is None:
            self._all = self.tensor.cpu().numpy()
            self.masks_read += len(self)
        return self._all

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.host()
        return arr if dtype is None else arr.astype(dtype)

    def __getattr__(self, name: str) -> Any:
        # any other numpy attribute (reshape, mean ...): the whole set, read once
        if name.startswith("_") or name == "tensor":
            raise AttributeError(name)
        return getattr(self.host(), name)
