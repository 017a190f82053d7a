"""polypref: synthetic persona preference datasets."""

import os
from importlib.metadata import PackageNotFoundError, version

# Polars' jemalloc keeps freed pages for 10 s by default, so a build that reads one shard after another holds
# several shards' worth of pages it no longer uses (1M items x 2 personas: 2257 -> ~2130 MiB peak with 100 ms).
# Read when polars loads, so set before anything of ours imports it; a user's own setting wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:100,muzzy_decay_ms:0")

try:
    __version__ = version("polypref")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0.0.0+checkout"

SCHEMA_VERSION = "1.0"
