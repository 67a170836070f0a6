"""The papers' rows (one config module each) and the suite runner (``python -m experiments.run``).

Importing the package keeps TensorFlow's C++ start-up logging off unless the user set a
level, as the ``coopseg.cli`` programs do: ``experiments.run`` is a program too.
"""
from coopseg.utils.console import quiet_tensorflow_startup

quiet_tensorflow_startup()
