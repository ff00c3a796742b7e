"""pytest set-up for `python3 -m pytest scripts/model`: the modules of scripts/model and
scripts/dataset import each other by file name (they are scripts, not a package)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for d in (HERE, os.path.normpath(os.path.join(HERE, "..", "dataset"))):
    if d not in sys.path:
        sys.path.insert(0, d)
