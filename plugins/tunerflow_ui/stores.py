"""The artifact store the pages read: `TUNERFLOW_STORE` (file:// or s3://), as every task uses.

A FastAPI dependency, so tests point the app at a store of their own with `dependency_overrides`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from tasks.storage.uris import default_root


def store_root() -> str:
    return default_root()


# The store root as a route parameter.
Root = Annotated[str, Depends(store_root)]
