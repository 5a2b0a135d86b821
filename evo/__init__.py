"""evo: evolutionary search for a consensus pair of xLSTM trading models.

Importing ``evo`` is cheap on purpose: no torch, pandas or search library is loaded until a
command needs it (``python -m evo --help`` stays fast and ``evo predict`` stays light).
"""

__version__ = "0.1.0"
