"""The investigators' workbench: server-rendered pages under ``/ui`` (queue, claim, sign-in).

Jinja2 templates, a little vendored htmx and cytoscape (``static/vendor``, nothing from a network).
The routes are :data:`serving.ui.pages.router`; :mod:`serving.ui.views` works out what they show.
"""
