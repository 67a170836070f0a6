"""What every coopseg command-line program does around absl's flag parsing.

A quiet start (``quiet_tensorflow_startup``), a ``--help`` that starts with a usage line
and shows the program's own flags (``program_help``), and exits 0 (``run_program``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import Callable, Iterator

from absl import app, flags
from absl import logging as absl_logging

# Read before quiet_tensorflow_startup sets it: whether the user asked for TF's logs.
_USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def quiet_tensorflow_startup() -> None:
    """Hide TensorFlow's C++ start-up logging unless the user chose a level.

    Importing TensorFlow prints a screen of C++ log lines (CUDA stubs, "Unable to
    register cuDNN/cuFFT/cuBLAS factory", TensorRT, CPU instruction sets) that say
    nothing about the user's run; errors that matter reach Python as exceptions.
    ``TF_CPP_MIN_LOG_LEVEL`` is set to 3 unless the user set it
    (``TF_CPP_MIN_LOG_LEVEL=0 coopseg-train`` shows everything). It must happen before
    TensorFlow is imported.
    """
    user_chose_a_level = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not user_chose_a_level:
        # TensorFlow Addons warns at import that it has reached end of life (8 lines on
        # every start); the stack pins it on purpose (setup.py), so the warning is noise.
        warnings.filterwarnings("ignore", message=r"(?s).*TensorFlow Addons",
                                category=UserWarning)


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
    if main is not None and program.__doc__ and not program.__doc__.startswith("usage:"):
        name = os.path.basename(sys.argv[0]) if main is not program else (
            f"python -m {module_name}" if module_name != "__main__" else sys.argv[0])
        if name.endswith(".py") or name == "__main__.py":
            name = f"python -m {program.__spec__.name}" if program.__spec__ else name
        main.__doc__ = f"usage: {name} [flags]\n\n{program.__doc__}"
    values = flags.FLAGS
    # Flags defined in the module run as __main__ are registered under sys.argv[0].
    for name in (module_name,) + flag_modules:
        for flag in values.get_flags_for_module(sys.argv[0] if name == "__main__" else name):
            values.register_key_flag_for_module(sys.argv[0], flag)


def start_program(module_name: str, *flag_modules: str) -> None:
    """``quiet_tensorflow_startup`` and ``program_help`` for a CLI's ``run()``."""
    quiet_tensorflow_startup()
    program_help(module_name, *flag_modules)


def asked_for_help(argv) -> bool:
    """Whether the command line asks for help (``--help`` and absl's other forms)."""
    return any(arg in HELP_FLAGS for arg in argv[1:])


def run_program(main: Callable, module_name: str, *flag_modules: str) -> None:
    """``start_program``, then ``absl.app.run(main)``; ``--help`` exits 0, as a request
    that was answered (absl ends it with status 1)."""
    start_program(module_name, *flag_modules)
    try:
        app.run(main)
    except SystemExit as exit_:
        if exit_.code == 1 and asked_for_help(sys.argv):
            sys.exit(0)
        raise


@contextlib.contextmanager
def quiet_tensorflow_python_logs() -> Iterator[None]:
    """TensorFlow's Python INFO lines off for the block (e.g. the SavedModel writer's
    "Assets written to <temporary folder>"), unless the user asked for TensorFlow's logs
    with ``TF_CPP_MIN_LOG_LEVEL`` below 3."""
    if _USER_TF_LOG_LEVEL is not None and _USER_TF_LOG_LEVEL.strip() not in ("3", ""):
        yield
        return
    # TensorFlow logs through its own logger and, in newer modules, through absl's.
    loggers = [logging.getLogger("tensorflow"), logging.getLogger("absl")]
    levels = [logger.level for logger in loggers]
    verbosity = absl_logging.get_verbosity()
    for logger, level in zip(loggers, levels):
        logger.setLevel(max(level, logging.WARNING))
    absl_logging.set_verbosity(min(verbosity, absl_logging.WARNING))  # absl: lower = quieter
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        absl_logging.set_verbosity(verbosity)
