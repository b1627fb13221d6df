"""One router per page family. Every router depends on `auth.reader`, so no route answers an
anonymous caller; action routes add `auth.editor` or `auth.comparer`."""

from __future__ import annotations

from plugins.tunerflow_ui.routes import assets, compare, datasets, experiments, jobs, models, runs

ROUTERS = [r.router for r in (assets, experiments, runs, jobs, models, datasets, compare)]
