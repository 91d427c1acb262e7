"""The base of every error a user can fix, in a module that imports nothing.

Commands turn any `UserError` into one clear message and exit code 2
(rrn/console.py); keeping the class here lets them catch it without
importing pydantic, torch or the modules that raise it.
"""

from __future__ import annotations


class UserError(ValueError):
    """An input the user can fix; the message names the file and field.

    Every such error derives from it (ConfigError, DataError, CheckpointError,
    WeightsError, PreflightError), so a command turns all of them into one clear
    message and exit code 2 (rrn/console.py) without importing their modules.
    """
