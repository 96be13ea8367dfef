"""The API's routers, one per resource; ``main`` mounts them under ``/api/v1``."""
