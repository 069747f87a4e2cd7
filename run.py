"""Record a Gymnasium agent: ``python run.py [OVERRIDES]`` (see README.md)."""

from rlrec.cli import main

if __name__ == "__main__":
    main()
