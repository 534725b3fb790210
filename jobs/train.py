"""``ray job submit --working-dir . -- python jobs/train.py DATA [options]``

Same arguments as ``ray-ingest train``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ray_ingest.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
