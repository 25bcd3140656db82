"""``gyre server``: the REST API (``/api/v1``) over a metadata store and an artifact store.

Build the app with :func:`create_app`; ``gyre server`` runs it under uvicorn.
"""

from gyre.server.app import create_app

__all__ = ["create_app"]
