"""Modules imported on first use, so that `sim --help` stays fast."""

from __future__ import annotations

import importlib
from types import ModuleType


class lazy:  # noqa: N801 - used like a module
    """Stands for module `name` and imports it at the first attribute looked up, so `sim --help` imports none
    of the heavy libraries (numpy, pandas, scipy, matplotlib, SQLAlchemy, Mesa) the commands need.

    A plain proxy, not importlib's LazyLoader: a lazy module in sys.modules gets loaded half-way through
    another import when something walks sys.modules (Mesa's logger calls inspect.stack()).
    """

    def __init__(self, name: str):
        self._name, self._module = name, None

    def __getattr__(self, attr: str):
        module: ModuleType = self._module or importlib.import_module(self._name)
        self._module = module
        return getattr(module, attr)
