"""Film any recorded episode again: ``python scripts/replay.py <run dir> --episode N``.

The same as the ``rlrec-replay`` command; see ``rlrec/replay.py``.
"""

import sys

from rlrec.replay import main

if __name__ == "__main__":
    sys.exit(main())
