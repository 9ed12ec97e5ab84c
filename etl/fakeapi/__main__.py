"""`python -m etl.fakeapi`: the simulator's command line without the main CLI."""

from etl.fakeapi.cli import fake_api

if __name__ == "__main__":
    fake_api(prog_name="fake-api")
