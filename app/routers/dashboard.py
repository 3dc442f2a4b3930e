"""Dashboards: HTML pages (Jinja2) and the JSON endpoints their charts read.

Plotly's JavaScript is served from the installed plotly package, so the pages work offline.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from app import dashboard_data as data
from app import dashboard_results as results
from app.dashboard_schemas import (
    AgreementData,
    DeviceData,
    FamiliesData,
    OverviewData,
    PredictorData,
    PredictorLine,
    TransferSuiteData,
)
from app.deps import DeviceRef, ReadAccess, ResourceId, SessionDep, SettingsDep
from app.domain_errors import NotFound
from app.errors import ERROR_RESPONSES
from app.optimize_schemas import OptimizeAnswer
from app.queries import find_device

router = APIRouter(responses=ERROR_RESPONSES, dependencies=[ReadAccess])
templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))
STATIC = Path(__file__).parent.parent / "static"
PLOTLY_JS = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
SPACES = ("nb201", "fbnet", "ofa_mbv3")


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, f"{name}.html", {"page": name, **context})


@router.get("/static/plotly.min.js", include_in_schema=False)
def plotly_js() -> FileResponse:
    return FileResponse(PLOTLY_JS, media_type="text/javascript")


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> FileResponse:
    path = STATIC / name
    if name not in {p.name for p in STATIC.iterdir() if p.is_file()}:  # not vendor/
        raise NotFound(f"no static file {name!r}")
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return FileResponse(path, media_type=media)


# -- pages ---------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def overview_page(request: Request) -> HTMLResponse:
    return _page(request, "overview")


@router.get("/ui/devices/{device}", response_class=HTMLResponse, include_in_schema=False)
def device_page(request: Request, device: DeviceRef, session: SessionDep) -> HTMLResponse:
    return _page(request, "device", device_id=find_device(session, device).id)


@router.get("/ui/predictors", response_class=HTMLResponse, include_in_schema=False)
def predictors_page(request: Request, predictor: int | None = None) -> HTMLResponse:
    return _page(request, "predictors", predictor_id=predictor)


@router.get("/ui/agreement", response_class=HTMLResponse, include_in_schema=False)
def agreement_page(request: Request, space: str = "nb201") -> HTMLResponse:
    if space not in SPACES:
        raise NotFound(f"unknown space {space!r}")
    return _page(request, "agreement", space=space, spaces=SPACES)


@router.get(
    "/ui/optimizations/{optimization_id}", response_class=HTMLResponse, include_in_schema=False
)
def optimization_page(request: Request, optimization_id: ResourceId) -> HTMLResponse:
    return _page(request, "optimization", optimization_id=optimization_id)


@router.get("/ui/jobs", response_class=HTMLResponse, include_in_schema=False)
def jobs_page(request: Request) -> HTMLResponse:
    return _page(request, "jobs")


# -- chart data ----------------------------------------------------------------------
@router.get("/api/charts/overview", tags=["dashboard"])
def overview_data(session: SessionDep) -> OverviewData:
    return OverviewData.model_validate(data.overview(session))


@router.get("/api/charts/devices/{device}", tags=["dashboard"])
def device_data(device: DeviceRef, session: SessionDep, settings: SettingsDep) -> DeviceData:
    device_id = find_device(session, device).id
    return DeviceData.model_validate(data.device_detail(session, settings.artifacts_dir, device_id))


@router.get("/api/charts/predictors", tags=["dashboard"])
def predictors_data(session: SessionDep) -> list[PredictorLine]:
    return [PredictorLine.model_validate(row) for row in data.predictor_table(session)]


@router.get("/api/charts/predictors/{predictor_id}", tags=["dashboard"])
def predictor_data(
    predictor_id: ResourceId, session: SessionDep, settings: SettingsDep
) -> PredictorData:
    return PredictorData.model_validate(
        data.predictor_quality(session, settings.artifacts_dir, predictor_id)
    )


@router.get("/api/charts/transfer-suite", tags=["dashboard"])
def transfer_suite_data(settings: SettingsDep) -> TransferSuiteData:
    return TransferSuiteData.model_validate(results.transfer_suite(settings.suite_results_dir))


@router.get("/api/charts/families", tags=["dashboard"])
def families_data(settings: SettingsDep) -> FamiliesData:
    return FamiliesData.model_validate(results.families(settings.suite_results_dir))


@router.get("/api/charts/agreement/{space}", tags=["dashboard"])
def agreement_data(space: str, session: SessionDep, policy: str = "fp32") -> AgreementData:
    if space not in SPACES:
        raise NotFound(f"unknown space {space!r}")
    return AgreementData.model_validate(data.rank_agreement(session, space, policy))


@router.get("/api/charts/optimizations/{optimization_id}", tags=["dashboard"])
def optimization_data(optimization_id: ResourceId, session: SessionDep) -> OptimizeAnswer:
    return OptimizeAnswer.model_validate(data.optimization_detail(session, optimization_id))
