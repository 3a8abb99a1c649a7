"""The HTTP layer: FastAPI routes in front of the hub. Nothing below this package imports a web framework.

from tidings import Hub
from tidings.api import mount

hub = Hub()
app = FastAPI()
mount(app, hub)          # or app.include_router(build_router(hub)); the hub's lifespan comes along
"""

from __future__ import annotations

from .router import StreamFastPath, build_router, install_error_handlers, mount, stream_endpoints

__all__ = ["StreamFastPath", "build_router", "install_error_handlers", "mount", "stream_endpoints"]
