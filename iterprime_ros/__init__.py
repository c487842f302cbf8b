"""iterprime_ros: zero-shot referring image segmentation (IteRPrimE) for ROS 2.

The library face, for use without ROS::

    from iterprime_ros import Segmenter, SegmenterSettings

    segmenter = Segmenter(SegmenterSettings(device="cuda"))
    result = segmenter.segment(rgb, "the red cup on the left")
    print(result.success, result.centroid, result.mask.sum())

The names are loaded on first use, so `import iterprime_ros.msg` (every ROS message import)
does not pull in torch and transformers.
"""

# The generated message modules (iterprime_ros.msg / .srv / .action) may live in a different
# install tree than this source package (pip editable install + interfaces built into the
# virtual environment); extend_path lets both halves form one package.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"

_LAZY = {
    "Segmenter": "iterprime_ros.pipeline",
    "SegmenterSettings": "iterprime_ros.pipeline",
    "SegmentationResult": "iterprime_ros.pipeline",
}
__all__ = ["Segmenter", "SegmenterSettings", "SegmentationResult", "__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'iterprime_ros' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
