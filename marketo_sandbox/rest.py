"""The REST API: which endpoint a path names, the checks every call passes, and the dispatch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import fields, identity, query, write
from .config import SandboxConfig
from .params import ApiError, json_object, request_params
from .store import OPPORTUNITIES, ROLES

if TYPE_CHECKING:
    from .state import SandboxState

Payload = dict[str, Any]

ROLE_CRM_MESSAGE = (
    "CRM Enabled: Opportunity Role APIs are not available for instances with native CRM sync enabled"
)
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Route:
    obj: str
    kind: str  # describe | records | delete | schema_list | schema_field
    arg: str = ""


_PREFIX = "/rest/v1/opportunities"
_ROUTES = {
    ".json": Route(OPPORTUNITIES, "records"),
    "/describe.json": Route(OPPORTUNITIES, "describe"),
    "/delete.json": Route(OPPORTUNITIES, "delete"),
    "/schema/fields.json": Route(OPPORTUNITIES, "schema_list"),
    "/roles.json": Route(ROLES, "records"),
    "/roles/describe.json": Route(ROLES, "describe"),
    "/roles/delete.json": Route(ROLES, "delete"),
}
_FIELD_PREFIX = "/schema/fields/"
#: The methods each route kind takes, after ``POST ?_method=GET`` counts as GET (else 605).
_METHODS = {"records": ("GET", "POST"), "delete": ("POST",)}


def resolve_route(path: str) -> Route | None:
    if not path.startswith(_PREFIX):
        return None
    rest = path[len(_PREFIX) :]
    if rest in _ROUTES:
        return _ROUTES[rest]
    if rest.startswith(_FIELD_PREFIX) and rest.endswith(".json"):
        name = rest[len(_FIELD_PREFIX) : -len(".json")]
        if name and "/" not in name:
            return Route(OPPORTUNITIES, "schema_field", name)
    return None


@dataclass(frozen=True)
class Call:
    """One REST request, decoded: everything the endpoints need, and no socket."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    content_type: str
    authorization: str
    is_query_post: bool = field(init=False)
    effective: str = field(init=False)  # "GET" for POST ?_method=GET
    route: Route | None = field(init=False)
    is_write: bool = field(init=False)

    def __post_init__(self) -> None:
        is_query_post = self.method == "POST" and self.query.get("_method", [""])[0].upper() == "GET"
        route = resolve_route(self.path)
        effective = "GET" if is_query_post else self.method
        object.__setattr__(self, "is_query_post", is_query_post)
        object.__setattr__(self, "effective", effective)
        object.__setattr__(self, "route", route)
        is_write = route is not None and route.kind in ("records", "delete") and effective == "POST"
        object.__setattr__(self, "is_write", is_write)

    @property
    def endpoint(self) -> str:
        """The name ``stats()["calls_by_endpoint"]`` counts this call under."""
        return f"{'QUERY' if self.is_query_post else self.method} {self.path}"

    def params(self) -> dict[str, Any]:
        return request_params(self.query, self.body, self.content_type, self.is_query_post)

    def json_body(self) -> dict[str, Any]:
        if self.content_type != "application/json":
            raise ApiError("612", "Invalid Content Type")
        return json_object(self.body)


def serve(state: SandboxState, cfg: SandboxConfig, call: Call) -> Payload:
    """Auth, the method, the quota and rate window, the route; then the endpoint's payload."""
    form_body = call.body if call.is_query_post and call.content_type == FORM else b""
    identity.check_auth(state, cfg, call.authorization, call.query, form_body)
    route = call.route
    if route is not None:
        allowed = _METHODS.get(route.kind, ("GET",))
        if call.method not in ("GET", "POST") or call.effective not in allowed:
            raise ApiError("605", f"Request method '{call.method}' not supported")
    refused = state.admit(cfg)
    if refused is not None:
        raise ApiError(*refused)
    if route is None:
        raise ApiError("610", "Requested resource not found")
    return execute(state, cfg, call)


Endpoint = Callable[["SandboxState", SandboxConfig, Call, Route], Payload]

#: (route kind, effective method) -> endpoint; :func:`serve` has refused every other pair.
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("describe", "GET"): lambda state, cfg, call, route: fields.describe(
        state.store.schema(route.obj), cfg.spec_complete
    ),
    ("schema_list", "GET"): lambda state, cfg, call, route: fields.schema_list(
        state.store.schema(route.obj), call.params(), cfg.spec_complete
    ),
    ("schema_field", "GET"): lambda state, cfg, call, route: fields.schema_field(
        state.store.schema(route.obj), route.arg, cfg.spec_complete
    ),
    ("records", "GET"): lambda state, cfg, call, route: query.query(
        state.store, cfg, route.obj, call.params()
    ),
    ("records", "POST"): lambda state, cfg, call, route: write.sync(
        state, cfg, route.obj, call.json_body(), f"POST {call.path}"
    ),
    ("delete", "POST"): lambda state, cfg, call, route: write.delete(
        state, cfg, route.obj, call.json_body(), f"POST {call.path}"
    ),
}


def execute(state: SandboxState, cfg: SandboxConfig, call: Call) -> Payload:
    """The endpoint alone, without the checks of :func:`serve` (a late write runs just this)."""
    route = call.route
    if route is None:
        raise ApiError("610", "Requested resource not found")
    if (
        route.obj == ROLES
        and cfg.crm_sync
        and route.kind in ("describe", "records")
        and call.effective == "GET"
    ):
        raise ApiError("1018", ROLE_CRM_MESSAGE)
    return ENDPOINTS[route.kind, call.effective](state, cfg, call, route)
