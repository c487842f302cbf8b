"""iterprime_ros: zero-shot referring image segmentation (IteRPrimE) for ROS 2."""

# The generated message modules (iterprime_ros.msg / .srv) may live in a different
# install tree than this source package (pip editable install + interfaces built into
# the virtual environment); extend_path lets both halves form one package.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
