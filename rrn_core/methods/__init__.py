"""Training steps: one per method, all behind the same `Method` interface.

The methods are listed in rrn_core/methods/table.py and built by
rrn_core/methods/build.py; this package imports neither, so that the run config
(which needs every method's config model) can import the table.
"""

from __future__ import annotations

from rrn_core.methods.base import Method, StepContext, StepOutput

__all__ = ["Method", "StepContext", "StepOutput"]
