"""The console for marketers at `/console` of `nbo serve` (docs/console.md).

A small server-rendered web application (Starlette + Jinja2, charts as SVG drawn by matplotlib):
look up a customer, see a live decision with its reasons and suppressions, the registered models
and their reports, and try a draft contact policy in the closed-loop simulator.

It sits above serving and evaluation (a what-if runs the closed loop), so the service cannot import
it: `console.service` composes the two (the BentoML service of `serving.service` with this
application mounted), and `nbo serve` starts that composition.

Public names are imported on first use (`nbo.lazy`).
"""

from nbo.lazy import lazy_exports

#: public name -> the module that defines it (imported when the name is first used)
_EXPORTS = {
    "ConsoleBackend": "console.backend",
    "create_app": "console.app",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
