"""The API's interactive docs, Swagger UI at ``/docs`` and ReDoc at ``/redoc``.

FastAPI loads both from a CDN by default, which leaves the pages blank on a machine without
internet; their assets are vendored under ``app/static/vendor`` (versions and licenses in its
README) and served from here, as the dashboards serve plotly.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from app.domain_errors import NotFound

router = APIRouter(include_in_schema=False)
VENDOR = Path(__file__).parent.parent / "static" / "vendor"
PREFIX = "/static/vendor"
FAVICON = f"{PREFIX}/swagger-ui/favicon-32x32.png"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def _title(request: Request) -> str:
    return str(request.app.title)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=str(request.app.openapi_url),
        title=f"{_title(request)} - Swagger UI",
        swagger_js_url=f"{PREFIX}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{PREFIX}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=FAVICON,
        # no badge asking validator.swagger.io about the schema
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=str(request.app.openapi_url),
        title=f"{_title(request)} - ReDoc",
        redoc_js_url=f"{PREFIX}/redoc/redoc.standalone.js",
        redoc_favicon_url=FAVICON,
        with_google_fonts=False,
    )


@router.get(PREFIX + "/{package}/{name}")
def vendored(package: str, name: str) -> FileResponse:
    """A vendored asset or its license; nothing outside ``app/static/vendor``."""
    files = {(p.parent.name, p.name): p for p in VENDOR.glob("*/*") if p.is_file()}
    path = files.get((package, name))
    if path is None:
        raise NotFound(f"no vendored file {package}/{name}")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "text/plain"))
