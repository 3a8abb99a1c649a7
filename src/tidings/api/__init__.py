"""The HTTP layer: FastAPI routes in front of the hub. Nothing below this package imports a web framework.

from tidings import Hub
from tidings.api import mount

hub = Hub()
app = FastAPI()
mount(app, hub)          # or app.include_router(build_router(hub)); the hub's lifespan comes along
app.router.routes.append(stream_route(hub, "/events"))   # a stream at a path of the app's own
"""

from __future__ import annotations

from .router import (
    StreamFastPath,
    StreamRoute,
    build_router,
    install_error_handlers,
    mount,
    stream_endpoints,
    stream_route,
)

__all__ = [
    "StreamFastPath",
    "StreamRoute",
    "build_router",
    "install_error_handlers",
    "mount",
    "stream_endpoints",
    "stream_route",
]
