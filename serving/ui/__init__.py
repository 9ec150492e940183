"""The investigators' workbench: server-rendered pages under ``/ui`` (queue, claim, sign-in).

Jinja2 templates, a little vendored htmx and cytoscape (``static/vendor``, nothing from a network).
"""

from serving.ui.pages import router

__all__ = ["router"]
