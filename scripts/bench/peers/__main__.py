"""``python -m peers PEER WORKLOAD --url URL ...``: run one workload of one library.

The Redis URL goes into the environment before the adapter is imported, since adapters
build their clients at import time, as users' task modules do; no adapter has a default URL.
``python -m peers PEER worker ...`` runs the adapter's own worker, for a library without a
worker command line (it reads the URL from the environment its parent gave it).
"""

from __future__ import annotations

import importlib
import os
import sys

from peers._common import URL_ENV, main

if __name__ == "__main__":
    peer, rest = sys.argv[1], sys.argv[2:]
    if "--url" in rest:
        os.environ[URL_ENV] = rest[rest.index("--url") + 1]
    if not os.environ.get(URL_ENV):
        sys.exit(f"{URL_ENV} is not set and no --url given")
    module = importlib.import_module(f"peers.{peer}")
    if rest[:1] == ["worker"] and hasattr(module, "worker"):
        module.worker(rest[1:])
    else:
        main(module, rest)
