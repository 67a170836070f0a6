"""coopseg's command-line programs (absl flags at the edge only).

Every program is a module of this package, so this runs before any of them imports
TensorFlow: its C++ start-up logging stays off unless the user set a level
(``coopseg.utils.console``).
"""
from coopseg.utils.console import quiet_tensorflow_startup

quiet_tensorflow_startup()
