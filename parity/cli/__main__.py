import sys

from . import main

if __name__ == "__main__":  # spawned processes may import this module too; they must not run the CLI
    sys.exit(main())
