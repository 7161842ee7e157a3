import sys

from trading_lib.cli import main

sys.exit(main())
