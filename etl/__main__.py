"""`python -m etl` runs the `etl` command."""

from etl.cli import entry_point

if __name__ == "__main__":
    entry_point()
