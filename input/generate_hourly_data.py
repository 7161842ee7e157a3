"""Write sample bars into the bar store (kept from the original design; a thin wrapper over the library CLI).

    python input/generate_hourly_data.py [--contracts 10] [--seed 42] [--real input/yahoo-1h-2022]

Same as ``python -m trading_lib generate ...``; the data root is TRADING_DATA_ROOT (default: this project).
"""

import sys

from trading_lib.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
