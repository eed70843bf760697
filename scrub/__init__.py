"""scrub: safety and compliance scrubbing for published web-scale image-text datasets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scrub")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
