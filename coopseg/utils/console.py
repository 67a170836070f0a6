"""What every coopseg command-line program does before absl parses its flags.

A quiet start (``quiet_tensorflow_startup``) and a ``--help`` that shows the program's
own flags and usage (``program_help``); ``start_program`` does both.
"""
from __future__ import annotations

import os
import sys

from absl import flags


def quiet_tensorflow_startup() -> None:
    """Hide TensorFlow's C++ start-up logging unless the user chose a level.

    Importing TensorFlow prints a screen of C++ log lines (CUDA stubs, "Unable to
    register cuDNN/cuFFT/cuBLAS factory", TensorRT, CPU instruction sets) that say
    nothing about the user's run; errors that matter reach Python as exceptions.
    ``TF_CPP_MIN_LOG_LEVEL`` is set to 3 unless the user set it
    (``TF_CPP_MIN_LOG_LEVEL=0 coopseg-train`` shows everything). It must happen before
    TensorFlow is imported.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def program_help(module_name: str, *flag_modules: str) -> None:
    """``--help`` prints ``module_name``'s docstring and the flags defined in it and in
    ``flag_modules`` (module names). Call after the flags are defined.

    absl's short help lists the key flags of the module named by ``sys.argv[0]`` and
    prints ``__main__``'s docstring as the usage. For a console script both belong to
    pip's generated wrapper, which has no docstring and defines no flag, so
    ``coopseg-convert --help`` printed only "Try --helpfull". Hence the program's flags
    become that module's key flags and ``__main__`` gets the program's docstring.
    """
    program = sys.modules[module_name]
    main = sys.modules.get("__main__")
    if main is not None and main is not program and program.__doc__:
        main.__doc__ = program.__doc__
    values = flags.FLAGS
    # Flags defined in the module run as __main__ are registered under sys.argv[0].
    for name in (module_name,) + flag_modules:
        for flag in values.get_flags_for_module(sys.argv[0] if name == "__main__" else name):
            values.register_key_flag_for_module(sys.argv[0], flag)


def start_program(module_name: str, *flag_modules: str) -> None:
    """``quiet_tensorflow_startup`` and ``program_help`` for a CLI's ``run()``."""
    quiet_tensorflow_startup()
    program_help(module_name, *flag_modules)
