"""The web pages: HTTP only. What a page shows comes from `app.web.views`; sign-in and CSRF
from `app.web.auth`. None of these routes is part of the API's OpenAPI schema."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from app.api.deps import AppSettings, DbSession
from app.api.pagination import decode_cursor, encode_cursor
from app.auth.service import authenticate
from app.builds import service as builds
from app.builds.queries import BuildFilters
from app.errors import ApiError, BadRequest, ErrorCode, Forbidden, Unauthorized
from app.models import ApiToken, BuildStatus, DeliveryOutcome
from app.repos import service as repos
from app.web import auth, views
from app.web.templating import STATIC_DIR, templates

PAGE_SIZE = 50
SHA_PREFIX = re.compile(r"^[0-9a-fA-F]{7,40}$")


class PageRoute(APIRoute):
    """Renders a domain error (an unknown build, a refused cancel) as a page, not as JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def render_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                if exc.code is ErrorCode.SIGN_IN_REQUIRED and request.method == "GET":
                    target = urlencode(
                        {
                            "next": request.url.path
                            + (f"?{request.url.query}" if request.url.query else "")
                        }
                    )
                    return RedirectResponse(f"/sign-in?{target}", status_code=303)
                return templates.TemplateResponse(
                    request,
                    "error.html",
                    {"error": exc, "viewer": None, "csrf": "", "active": ""},
                    status_code=exc.status_code,
                )

        return render_errors


router = APIRouter(route_class=PageRoute, include_in_schema=False)


def mount_static(app: Any) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@dataclass
class Viewer:
    """Who is looking: the signed-in token (if any) and the CSRF token for the page's forms."""

    token: ApiToken | None
    csrf_secret: str
    new_csrf_secret: bool

    @property
    def may_change_builds(self) -> bool:
        return auth.may_change_builds(self.token)

    @property
    def csrf(self) -> str:
        return auth.csrf_token(self.csrf_secret)


def _viewer(request: Request, session: DbSession) -> Viewer:
    secret, new = auth.csrf_secret(request)
    return Viewer(auth.signed_in_token(request, session), secret, new)


def _reader(
    request: Request, viewer: Annotated[Viewer, Depends(_viewer)], settings: AppSettings
) -> Viewer:
    """The viewer of a page, who must be signed in when reads need a token."""
    if settings.read_requires_token and viewer.token is None:
        raise Unauthorized(
            "Sign in with an API token to see this page.", code=ErrorCode.SIGN_IN_REQUIRED
        )
    return viewer


Reader = Annotated[Viewer, Depends(_reader)]
AnyViewer = Annotated[Viewer, Depends(_viewer)]


def render(
    request: Request,
    viewer: Viewer,
    template: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    context.setdefault("active", "")
    response = templates.TemplateResponse(
        request,
        template,
        {"viewer": viewer, "csrf": viewer.csrf, **context},
        status_code=status_code,
    )
    if viewer.new_csrf_secret:
        auth.set_csrf_cookie(response, viewer.csrf_secret)
    return response


def _check_csrf(request: Request, submitted: str | None) -> None:
    if not auth.csrf_valid(request, submitted):
        raise CsrfRefused("This form is stale or was not sent by Cartridge; reload the page.")


class CsrfRefused(Forbidden):
    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.CSRF_REFUSED)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: DbSession, settings: AppSettings, viewer: Reader) -> Response:
    return render(request, viewer, "home.html", home=views.home(session, settings), active="home")


@router.get("/repos/{owner}/{name}", response_class=HTMLResponse)
def repository(
    owner: str,
    name: str,
    request: Request,
    session: DbSession,
    settings: AppSettings,
    viewer: Reader,
) -> Response:
    page = views.repository_page(session, settings, f"{owner}/{name}")
    return render(request, viewer, "repository.html", page=page, active="home")


@dataclass(frozen=True)
class ListQuery:
    repo: str
    branch: str
    status: str
    sha: str

    def filters(self, session: DbSession) -> BuildFilters:
        statuses = frozenset({BuildStatus(self.status)}) if self.status else frozenset()
        if self.sha and not SHA_PREFIX.match(self.sha):
            raise BadRequest(
                "A SHA filter is 7 to 40 hexadecimal characters.", code=ErrorCode.INVALID_FILTER
            )
        return BuildFilters(
            repository_id=repos.get(session, self.repo).id if self.repo else None,
            branch=self.branch or None,
            sha=self.sha.lower() or None,
            statuses=statuses,
        )

    def url(self, **changes: str) -> str:
        values = {"repo": self.repo, "branch": self.branch, "status": self.status, "sha": self.sha}
        values.update(changes)
        return "/builds?" + urlencode({key: value for key, value in values.items() if value})

    @property
    def events_url(self) -> str:
        values = {"repo": self.repo, "branch": self.branch}
        query = urlencode({key: value for key, value in values.items() if value})
        return "/api/v1/events" + (f"?{query}" if query else "")


def _list_query(
    repo: Annotated[str, Query(max_length=200)] = "",
    branch: Annotated[str, Query(max_length=500)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    sha: Annotated[str, Query(max_length=40)] = "",
) -> ListQuery:
    if status and status not in {s.value for s in BuildStatus}:
        raise BadRequest(f"Unknown status {status!r}.", code=ErrorCode.INVALID_FILTER)
    return ListQuery(repo.strip(), branch.strip(), status, sha.strip())


Listing = Annotated[ListQuery, Depends(_list_query)]


@router.get("/builds", response_class=HTMLResponse)
def build_list(
    request: Request,
    session: DbSession,
    viewer: Reader,
    listing: Listing,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    before_id = int(decode_cursor(cursor, int)) if cursor else None
    rows = views.build_rows(
        session, listing.filters(session), before_id=before_id, limit=PAGE_SIZE + 1
    )
    next_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_url = listing.url(cursor=encode_cursor(rows[-1].build.id))
    return render(
        request,
        viewer,
        "builds.html",
        rows=rows,
        listing=listing,
        statuses=[s.value for s in BuildStatus],
        next_url=next_url,
        first_page=cursor is None,
        active="builds",
    )


@router.get("/builds/{build_id}/row", response_class=HTMLResponse)
def build_row(
    build_id: int, request: Request, session: DbSession, viewer: Reader, listing: Listing
) -> Response:
    """One row of the list, for live updates; empty (204) when the build does not match the
    list's filters."""
    filters = listing.filters(session)
    matching = views.build_rows(session, filters, before_id=build_id + 1, limit=1)
    if not matching or matching[0].build.id != build_id:
        return Response(status_code=204)
    return render(request, viewer, "_build_row.html", row=matching[0])


@router.get("/builds/{build_id}", response_class=HTMLResponse)
def build_detail(
    build_id: int,
    request: Request,
    session: DbSession,
    settings: AppSettings,
    viewer: Reader,
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    page = views.build_page(session, settings, build_id, attempt)
    return render(request, viewer, "build.html", page=page, active="builds")


@router.get("/builds/{build_id}/summary", response_class=HTMLResponse)
def build_summary(
    build_id: int,
    request: Request,
    session: DbSession,
    settings: AppSettings,
    viewer: Reader,
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    page = views.build_page(session, settings, build_id, attempt)
    return render(request, viewer, "_build_summary.html", page=page)


def _signed_in_writer(viewer: AnyViewer) -> ApiToken:
    if viewer.token is None or not viewer.may_change_builds:
        raise Unauthorized(
            "Sign in with a token that may change builds.", code=ErrorCode.SIGN_IN_REQUIRED
        )
    return viewer.token


@router.post("/builds/{build_id}/retry")
def retry(
    build_id: int,
    request: Request,
    session: DbSession,
    settings: AppSettings,
    viewer: AnyViewer,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    _check_csrf(request, csrf_token)
    _signed_in_writer(viewer)
    builds.retry(session, builds.get(session, build_id), settings)
    return RedirectResponse(f"/builds/{build_id}", status_code=303)


@router.post("/builds/{build_id}/cancel")
def cancel(
    build_id: int,
    request: Request,
    session: DbSession,
    viewer: AnyViewer,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    _check_csrf(request, csrf_token)
    token = _signed_in_writer(viewer)
    builds.cancel(session, builds.get(session, build_id), token.name)
    return RedirectResponse(f"/builds/{build_id}", status_code=303)


@router.get("/images/{digest}", response_class=HTMLResponse)
def image(digest: str, request: Request, session: DbSession, viewer: Reader) -> Response:
    return render(request, viewer, "image.html", image=views.image_page(session, digest))


@router.get("/registries", response_class=HTMLResponse)
def registries(
    request: Request, session: DbSession, settings: AppSettings, viewer: Reader
) -> Response:
    page = views.registries_page(session, settings)
    return render(request, viewer, "registries.html", page=page, active="registries")


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries(
    request: Request,
    session: DbSession,
    viewer: Reader,
    event: Annotated[str, Query(max_length=100)] = "",
    outcome: Annotated[str, Query(max_length=40)] = "",
    repo: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    before_id = int(decode_cursor(cursor, int)) if cursor else None
    rows = views.deliveries(
        session,
        event=event or None,
        outcome=outcome or None,
        repository=repo or None,
        before_id=before_id,
        limit=PAGE_SIZE + 1,
    )
    next_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        query = {"event": event, "outcome": outcome, "repo": repo}
        query["cursor"] = encode_cursor(rows[-1].delivery.id)
        next_url = "/deliveries?" + urlencode({k: v for k, v in query.items() if v})
    return render(
        request,
        viewer,
        "deliveries.html",
        rows=rows,
        event=event,
        outcome=outcome,
        repo=repo,
        outcomes=[o.value for o in DeliveryOutcome],
        next_url=next_url,
        active="deliveries",
    )


def _local_path(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never `//host` or a URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(
    request: Request, viewer: AnyViewer, next: Annotated[str | None, Query(max_length=2000)] = None
) -> Response:
    return render(request, viewer, "sign_in.html", next=_local_path(next), error=None)


@router.post("/sign-in")
def sign_in(
    request: Request,
    session: DbSession,
    viewer: AnyViewer,
    token: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    _check_csrf(request, csrf_token)
    try:
        found = authenticate(session, token.strip())
    except Unauthorized:
        return render(
            request,
            viewer,
            "sign_in.html",
            status_code=401,
            next=_local_path(next),
            error="That token is unknown or revoked.",
        )
    response = RedirectResponse(_local_path(next), status_code=303)
    auth.start_session(response, found)
    return response


@router.post("/sign-out")
def sign_out(request: Request, csrf_token: Annotated[str | None, Form()] = None) -> Response:
    _check_csrf(request, csrf_token)
    response = RedirectResponse("/", status_code=303)
    auth.end_session(response)
    return response
