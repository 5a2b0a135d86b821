"""The ``python -m evo`` commands, one module each (see :mod:`evo.cli`)."""
