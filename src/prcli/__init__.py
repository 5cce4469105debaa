"""prcli: reproduce and extend Perception-R1 (GRPO with a visual perception reward)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prcli")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"
