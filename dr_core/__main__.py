import sys

from dr_core.cli import main

sys.exit(main())
