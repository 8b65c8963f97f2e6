"""Agent-based virtual trials of exercise adherence in depression."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("exercise-adherence-sim")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"
