"""``python -m alignflow`` (and ``torchrun -m alignflow``): the ``alignflow`` command line."""

from alignflow.cli.main import app

app()
