"""``python -m mslstm`` == ``mslstm`` (useful under ``torchrun -m mslstm train``)."""
import sys

from mslstm.cli import main

sys.exit(main())
