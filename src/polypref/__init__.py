"""polypref: synthetic persona preference datasets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("polypref")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0.0.0+checkout"

SCHEMA_VERSION = "1.0"
