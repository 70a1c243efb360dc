import sys

from score_lit.cli import main

sys.exit(main())
