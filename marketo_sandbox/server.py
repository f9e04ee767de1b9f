"""The HTTP layer: a stdlib ThreadingHTTPServer speaking Marketo's REST and Identity dialect."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import hmac
import itertools
import json
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .config import QUERY_FIELDS_ADDED, Fault, SandboxConfig
from .schema import INTEGER_TYPES, FieldDef, ObjectSchema, filter_key
from .state import SandboxState, concurrency_message, rate_message, validate_changes
from .store import OPPORTUNITIES, ROLES, SALES_PERSON_MESSAGE

MAX_BATCH = 300
#: Query parameters the spec declares ``collectionFormat: multi``: repeated means comma-joined.
MULTI_PARAMS = ("filterValues", "fields")
MAX_DRAIN_BYTES = 64 * 1024 * 1024
LEGACY_AUTH_PARAM_MESSAGE = (
    "Access token invalid: the 'access_token' query parameter is no longer supported "
    "(removed 2026-08-31); send 'Authorization: Bearer <token>'"
)
ROLE_CRM_MESSAGE = (
    "CRM Enabled: Opportunity Role APIs are not available for instances with native CRM sync enabled"
)
FAULT_MESSAGES = {
    "603": "Access denied",
    "604": "Request timed out",
    "608": "API Temporarily Unavailable",
    "611": "System error",
    "614": "Invalid Subscription",
    "713": "Transient Error",
}
HTML_REASONS = {
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    404: "Not Found",
}

_request_counter = itertools.count(1)


def request_id() -> str:
    n = next(_request_counter)
    return f"{(n * 2654435761) & 0xFFFFF:x}#{int(time.time() * 1000):x}"


class ApiError(Exception):
    """A response-level Marketo error (HTTP 200, success:false)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Dropped(Exception):
    """Close the connection without answering."""


@dataclass(frozen=True)
class Route:
    obj: str
    kind: str  # describe | records | delete | schema_list | schema_field
    arg: str = ""


@dataclass(frozen=True)
class Call:
    """One REST request as seen by the pipeline."""

    method: str
    effective: str  # "GET" for POST ?_method=GET
    path: str
    route: Route | None
    query: dict[str, list[str]]
    body: bytes
    call_no: int
    is_query_post: bool
    is_write: bool


def resolve_route(path: str) -> Route | None:
    prefix = "/rest/v1/opportunities"
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix) :]
    simple = {
        ".json": Route(OPPORTUNITIES, "records"),
        "/describe.json": Route(OPPORTUNITIES, "describe"),
        "/delete.json": Route(OPPORTUNITIES, "delete"),
        "/schema/fields.json": Route(OPPORTUNITIES, "schema_list"),
        "/roles.json": Route(ROLES, "records"),
        "/roles/describe.json": Route(ROLES, "describe"),
        "/roles/delete.json": Route(ROLES, "delete"),
    }
    if rest in simple:
        return simple[rest]
    field_prefix = "/schema/fields/"
    if rest.startswith(field_prefix) and rest.endswith(".json"):
        name = rest[len(field_prefix) : -len(".json")]
        if name and "/" not in name:
            return Route(OPPORTUNITIES, "schema_field", name)
    return None


# ---------------------------------------------------------------------- paging tokens
def _fingerprint(parts: Any) -> bytes:
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).digest()[:8]


def make_page_token(offset: int, fingerprint: bytes) -> str:
    """Opaque token: base32 of (offset, fingerprint), shaped like Marketo's own tokens."""
    return base64.b32encode(struct.pack(">Q", offset) + fingerprint).decode()


def read_page_token(token: Any, fingerprint: bytes) -> int:
    if not isinstance(token, str) or not token.strip():
        raise ApiError("1003", "Invalid nextPageToken")
    text = token.strip().upper()
    text += "=" * (-len(text) % 8)
    try:
        raw = base64.b32decode(text)
    except ValueError as exc:
        raise ApiError("1003", "Invalid nextPageToken") from exc
    if len(raw) != 16 or not hmac.compare_digest(raw[8:], fingerprint):
        raise ApiError("1003", "Invalid nextPageToken")
    return int(struct.unpack(">Q", raw[:8])[0])


def type_mismatch(value: Any, name: str, data_type: str) -> ApiError:
    """1001, Marketo's "Invalid value '%s'. Required of type '%s'", naming the parameter too."""
    return ApiError("1001", f"Invalid value '{value}' for '{name}'. Required of type '{data_type}'")


def parse_batch_size(value: Any) -> int:
    if value is None or value == "":
        return MAX_BATCH
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise type_mismatch(value, "batchSize", "integer")
    try:
        size = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise type_mismatch(value, "batchSize", "integer") from exc
    if not 1 <= size <= MAX_BATCH:
        raise ApiError("1003", f"Invalid batchSize '{value}': must be between 1 and {MAX_BATCH}")
    return size


def _split_list(value: Any, what: str, *, trim: bool = True) -> list[str]:
    """A comma-separated string or a JSON array, each value without surrounding whitespace only
    when ``trim``; blank values are dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = []
        for v in value:
            if isinstance(v, dict | list) or v is None:
                raise ApiError("1003", f"Invalid {what}")
            items.append(v if isinstance(v, str) else json.dumps(v))
    else:
        items = [json.dumps(value)]
    return [i.strip() if trim else i for i in items if i.strip()]


def _flatten(parsed: dict[str, list[str]]) -> dict[str, Any]:
    """One value per parameter; a repeated ``filterValues`` or ``fields`` (``collectionFormat:
    multi``) is joined with commas, so ``a&a`` and ``a,a`` mean the same. Other repeats: the first."""
    return {k: ",".join(v) if k in MULTI_PARAMS else v[0] for k, v in parsed.items() if k != "_method"}


def _required(params: dict[str, Any], name: str) -> Any:
    """A required parameter: 1002 when it is absent, 701 when it is blank."""
    if name not in params or params[name] is None:
        raise ApiError("1002", f"Missing value for required parameter '{name}'")
    value = params[name]
    if isinstance(value, str) and not value.strip():
        raise ApiError("701", f"{name} cannot be blank")
    return value


def _filter_key(fdef: FieldDef, raw: Any) -> Any:
    """A filter value as an index key; a value of the wrong type for an integer field is 1001."""
    key = filter_key(fdef, raw)
    if key is None and fdef.data_type in INTEGER_TYPES:
        shown = raw if isinstance(raw, str) else json.dumps(raw)
        raise type_mismatch(shown, fdef.name, fdef.data_type)
    return key


def _with_added_fields(schema: ObjectSchema, requested: list[str], mode: str) -> list[str]:
    """The requested fields plus what ``query_fields_added`` adds: the spec's required
    ``marketoGUID`` at least, and optionally the dedupe fields and the timestamps."""
    added: list[str] = []
    for part in QUERY_FIELDS_ADDED[mode]:
        if part == "idField":
            added.append(schema.id_field)
        elif part == "dedupeFields":
            added.extend(schema.dedupe_fields)
        else:
            added.append(part)
    return requested + [n for n in added if n not in requested]


# ---------------------------------------------------------------------- the handler
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MarketoSandbox/1.0"
    sys_version = ""
    timeout = 300
    # Buffered writes plus TCP_NODELAY: separate small header and body writes on a keep-alive
    # connection would otherwise meet Nagle's algorithm and delayed ACKs (+40 ms per response).
    wbufsize = 1 << 16
    server: SandboxHTTPServer

    # ---- plumbing ---------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def state(self) -> SandboxState:
        return self.server.state

    def _read_body(self, limit: int | None) -> tuple[bytes, bool]:
        """The request body and whether it exceeded ``limit`` (then it is drained, not kept)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    n = int(line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    self.close_connection = True
                    return b"", True
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(n)
                self.rfile.readline(3)
                size += len(data)
                if size > MAX_DRAIN_BYTES:
                    self.close_connection = True
                    return b"", True
                if limit is None or size <= limit:
                    chunks.append(data)
            return b"".join(chunks), limit is not None and size > limit
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            if length > MAX_DRAIN_BYTES:
                self.close_connection = True
                return b"", True
            remaining = length
            while remaining > 0:
                got = self.rfile.read(min(remaining, 1 << 16))
                if not got:
                    break
                remaining -= len(got)
            return b"", True
        return (self.rfile.read(length) if length > 0 else b""), False

    def _release_slot(self) -> None:
        """Give back the concurrency slot; done just before a response leaves, so a client that
        has read its answer can never find its own finished request still counted as in flight."""
        if getattr(self, "_holds_slot", False):
            self._holds_slot = False
            self.state.leave()

    def _write(self, status: int, body: bytes, content_type: str, *, count: bool = True) -> None:
        self._release_slot()
        if count:  # before the answer leaves, so a client that has read it finds it counted
            self.state.count_status(status)
        cfg = self.state.config
        encoding = None
        accept = (self.headers.get("Accept-Encoding") or "").lower()
        if (
            cfg.gzip
            and len(body) >= 1024
            and "gzip" in accept
            and content_type.startswith("application/json")
        ):
            body = gzip.compress(body, compresslevel=5)
            encoding = "gzip"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
            self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()  # into the buffered wfile: headers and body leave in one send()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, payload: Any, *, count: bool = True) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self._write(status, body, "application/json;charset=UTF-8", count=count)

    def _send_html(self, status: int, *, count: bool = True) -> None:
        reason = HTML_REASONS.get(status, "Error")
        page = (
            f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        self._write(status, page.encode(), "text/html", count=count)

    def _send_rest(self, payload: dict[str, Any]) -> None:
        if self.state.config.spec_complete:  # every envelope member the spec marks required
            payload = {"errors": [], "result": [], "warnings": [], **payload}
        self._send_json(200, {"requestId": request_id(), **payload})

    def _send_error(self, code: str, message: str) -> None:
        self.state.count_error(code)
        self._send_rest({"success": False, "errors": [{"code": code, "message": message}]})

    def _content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _json_body(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ApiError("609", "Invalid JSON") from exc
        if not isinstance(data, dict):
            raise ApiError("609", "Invalid JSON: the request body must be a JSON object")
        return data

    # ---- dispatch ---------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        cfg = self.state.config
        if cfg.max_uri_bytes is not None and len(self.path) > cfg.max_uri_bytes:
            self._read_body(cfg.max_body_bytes)
            self._send_html(414)
            return
        body, too_large = self._read_body(cfg.max_body_bytes)
        if too_large:
            self._send_html(413)
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        path = url.path
        if path.startswith("/_sandbox/"):
            self._inspect(method, path, query, body)
        elif path == "/identity/oauth/token":
            self._identity(method, query, body)
        elif path == "/rest" or path.startswith("/rest/"):
            self._rest(method, path, query, body)
        else:
            self._send_html(404, count=False)

    # ---- identity ---------------------------------------------------------------------
    def _identity(self, method: str, query: dict[str, list[str]], body: bytes) -> None:
        state = self.state
        state.count_identity(f"{method} /identity/oauth/token")
        if method not in ("GET", "POST"):
            self._send_json(405, {"error": "invalid_request", "error_description": "Method not allowed"})
            return
        params = {k: v[0] for k, v in query.items()}
        if body and self._content_type() == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({k: v[0] for k, v in form.items()})
        grant = params.get("grant_type")
        if grant != "client_credentials":
            error = "invalid_request" if not grant else "unsupported_grant_type"
            self._send_json(400, {"error": error, "error_description": f"Unsupported grant type: {grant}"})
            return
        cfg = state.config
        good_id = hmac.compare_digest(str(params.get("client_id", "")).encode(), cfg.client_id.encode())
        good_secret = hmac.compare_digest(
            str(params.get("client_secret", "")).encode(), cfg.client_secret.encode()
        )
        if not (good_id and good_secret):
            self._send_json(401, {"error": "invalid_client", "error_description": "Bad client credentials"})
            return
        token, remaining = state.issue_token()
        self._send_json(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": remaining,
                "scope": "apis@sandbox.local",
            },
        )

    # ---- REST pipeline ----------------------------------------------------------------
    def _rest(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        state = self.state
        cfg = state.config
        is_query_post = method == "POST" and query.get("_method", [""])[0].upper() == "GET"
        effective = "GET" if is_query_post else method
        route = resolve_route(path)
        is_write = route is not None and route.kind in ("records", "delete") and effective == "POST"
        call_no = state.begin_rest_call(f"{'QUERY' if is_query_post else method} {path}")
        if not state.try_enter(cfg):
            self._send_error("615", concurrency_message(cfg))
            return
        self._holds_slot = True
        call = Call(method, effective, path, route, query, body, call_no, is_query_post, is_write)
        try:
            self._rest_inside(cfg, call)
        except Dropped:
            self._release_slot()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        finally:
            self._release_slot()

    def _rest_inside(self, cfg: SandboxConfig, call: Call) -> None:
        state = self.state
        route, method, effective = call.route, call.method, call.effective
        if cfg.latency_seconds > 0:
            time.sleep(cfg.latency_seconds)
        deferred: Fault | None = None
        fault = state.pick_fault(cfg, call.call_no, call.path, call.is_write)
        if fault is not None:
            if fault.kind == "slow":
                state.count_fault("slow")
                time.sleep(fault.seconds)
            elif fault.kind == "late":
                self._apply_late(cfg, call, fault.seconds)
                state.count_fault("late")
                raise Dropped
            elif fault.after_apply:
                deferred = fault
            else:
                self._send_fault(fault, cfg)
                return
        try:
            self._check_auth(cfg, call.query, call.body, call.is_query_post)
            if route is not None:
                allowed = {"records": ("GET", "POST"), "delete": ("POST",)}.get(route.kind, ("GET",))
                if method not in ("GET", "POST") or effective not in allowed:
                    raise ApiError("605", f"Request method '{method}' not supported")
            refused = state.admit(cfg)
            if refused is not None:
                raise ApiError(*refused)
            if route is None:
                raise ApiError("610", "Requested resource not found")
            payload = self._execute(cfg, route, call)
        except ApiError as err:
            self._send_error(err.code, err.message)
            return
        except Exception:  # a sandbox bug: answer like Marketo does for unhandled exceptions
            traceback.print_exc(file=sys.stderr)
            self._send_error("611", "System error")
            return
        if deferred is not None:
            self._send_fault(deferred, cfg)
            return
        self._send_rest(payload)

    def _apply_late(self, cfg: SandboxConfig, call: Call, seconds: float) -> None:
        """Apply this write ``seconds`` from now, after its client saw the connection drop."""
        route = call.route
        if route is None:
            return

        def apply() -> None:
            with contextlib.suppress(Exception):  # a late write that fails leaves no trace, like Marketo
                self._execute(cfg, route, call)
                self.state.count_fault("late_applied")

        timer = threading.Timer(seconds, apply)
        timer.daemon = True
        timer.start()

    def _send_fault(self, fault: Fault, cfg: SandboxConfig) -> None:
        self.state.count_fault(fault.kind)
        kind = fault.kind
        if kind == "drop":
            raise Dropped
        if kind.startswith("http"):
            self._send_html(int(kind[4:]))
        elif kind == "606":
            self._send_error("606", rate_message(cfg))
        elif kind == "615":
            self._send_error("615", concurrency_message(cfg))
        else:
            self._send_error(kind, FAULT_MESSAGES[kind])

    def _check_auth(
        self, cfg: SandboxConfig, query: dict[str, list[str]], body: bytes, is_query_post: bool
    ) -> None:
        """The ``Authorization: Bearer`` token; an ``access_token`` parameter as
        ``cfg.legacy_param_auth`` says (refused outright, ignored, or accepted)."""
        legacy = query.get("access_token")
        if (
            legacy is None
            and is_query_post
            and body
            and self._content_type() == "application/x-www-form-urlencoded"
        ):
            legacy = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get("access_token")
        if legacy is not None and cfg.legacy_param_auth == "refused":
            raise ApiError("601", LEGACY_AUTH_PARAM_MESSAGE)
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.strip().partition(" ")
        if header.strip() == "" and legacy is not None and cfg.legacy_param_auth == "accepted":
            scheme, token = "bearer", legacy[0]
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError("601", "Access token invalid")
        problem = self.state.check_token(token.strip())
        if problem == "601":
            raise ApiError("601", "Access token invalid")
        if problem == "602":
            raise ApiError("602", "Access token expired")

    # ---- endpoints --------------------------------------------------------------------
    def _execute(self, cfg: SandboxConfig, route: Route, call: Call) -> dict[str, Any]:
        effective, query, body, is_query_post = call.effective, call.query, call.body, call.is_query_post
        store = self.state.store
        schema = store.schema(route.obj)
        if (
            route.obj == ROLES
            and cfg.crm_sync
            and route.kind in ("describe", "records")
            and effective == "GET"
        ):
            raise ApiError("1018", ROLE_CRM_MESSAGE)
        complete = cfg.spec_complete
        if route.kind == "describe":
            return {"success": True, "result": [schema.describe(complete=complete)]}
        if route.kind == "schema_list":
            return self._schema_list(schema, self._params(query, body, is_query_post), complete)
        if route.kind == "schema_field":
            wanted = route.arg.lower()
            for name in schema.schema_order or []:
                if name.lower() == wanted:
                    return {"success": True, "result": [schema.by_name[name].schema_record(complete)]}
            raise ApiError("610", "Requested resource not found")
        if route.kind == "records" and effective == "GET":
            return self._query(cfg, route.obj, schema, self._params(query, body, is_query_post))
        if self._content_type() != "application/json":
            raise ApiError("612", "Invalid Content Type")
        data = self._json_body(body)
        records = data.get("input")
        if records is None:
            raise ApiError("1002", "Missing value for required parameter 'input'")
        if not isinstance(records, list):
            raise ApiError("1003", "Invalid input: 'input' must be a JSON array")
        if len(records) > MAX_BATCH:
            raise ApiError("1003", f"Too many records in input: {len(records)} (max {MAX_BATCH})")
        if route.kind == "delete":
            delete_by = data.get("deleteBy") or "dedupeFields"
            if delete_by not in ("dedupeFields", "idField"):
                raise ApiError("1003", f"Invalid deleteBy '{delete_by}'")
            skip = self._record_faults(cfg, route.obj, schema, delete_by, records)
            self.state.count_write_batch(f"POST {call.path}", len(records))
            results = store.delete(
                route.obj, delete_by, records, cfg.crm_sync, skip=skip, fold=not cfg.filter_case_sensitive
            )
        else:
            action = data.get("action") or "createOrUpdate"
            if action not in ("createOnly", "updateOnly", "createOrUpdate"):
                raise ApiError("1003", f"Invalid action '{action}'")
            dedupe_by = data.get("dedupeBy") or "dedupeFields"
            if dedupe_by not in ("dedupeFields", "idField"):
                raise ApiError("1003", f"Invalid dedupeBy '{dedupe_by}'")
            if dedupe_by == "idField" and action != "updateOnly":
                raise ApiError("1003", "dedupeBy 'idField' is only valid with action 'updateOnly'")
            check_sales_person = route.obj == OPPORTUNITIES and cfg.sales_person_check is not None
            if check_sales_person and cfg.sales_person_check == "response" and not cfg.crm_sync:
                unknown = store.unknown_sales_person(records)
                if unknown is not None:
                    raise ApiError("718", SALES_PERSON_MESSAGE.format(id=unknown))
            skip = self._record_faults(cfg, route.obj, schema, dedupe_by, records)
            self.state.count_write_batch(f"POST {call.path}", len(records))
            results = store.sync(
                route.obj,
                action,
                dedupe_by,
                records,
                cfg.crm_sync,
                skip=skip,
                missing_opportunity_code=cfg.missing_opportunity_code,
                check_sales_person=check_sales_person and cfg.sales_person_check == "record",
                fold=not cfg.filter_case_sensitive,
            )
        self.state.count_record_errors(results)
        return {"success": True, "result": results}

    def _record_faults(
        self, cfg: SandboxConfig, obj: str, schema: ObjectSchema, by: str, records: list[Any]
    ) -> dict[int, dict[str, Any]]:
        """Records the configured record faults skip in this sync or delete call."""
        if cfg.crm_sync or not cfg.record_faults:
            return {}
        key_fields = (schema.id_field,) if by == "idField" else tuple(schema.dedupe_fields)
        return self.state.pick_record_faults(cfg, obj, key_fields, records)

    def _params(self, query: dict[str, list[str]], body: bytes, is_query_post: bool) -> dict[str, Any]:
        """Query-string and body parameters (the body wins); see :func:`_flatten` for repeats."""
        params = _flatten(query)
        if is_query_post and body:
            ctype = self._content_type()
            if ctype == "application/x-www-form-urlencoded":
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ApiError("609", "Invalid request body encoding") from exc
                params.update(_flatten(parse_qs(text, keep_blank_values=True)))
            elif ctype == "application/json":
                data = self._json_body(body)
                # The spec: "filterType ... Default is dedupeFields" in a JSON lookup body.
                if "filterType" not in data and "filterType" not in params:
                    data["filterType"] = "dedupeFields"
                params.update(data)
            else:
                raise ApiError("612", "Invalid Content Type")
        return params

    def _schema_list(self, schema: ObjectSchema, params: dict[str, Any], complete: bool) -> dict[str, Any]:
        size = parse_batch_size(params.get("batchSize"))
        records = schema.schema_records(complete)
        fp = _fingerprint(["schema-fields", schema.api_name])
        token = params.get("nextPageToken")
        offset = read_page_token(token, fp) if token not in (None, "") else 0
        page = records[offset : offset + size]
        out: dict[str, Any] = {"success": True, "result": page}
        end = offset + len(page)
        if end < len(records):
            out["nextPageToken"] = make_page_token(end, fp)
        out["moreResult"] = end < len(records)
        return out

    def _query(
        self, cfg: SandboxConfig, obj: str, schema: ObjectSchema, params: dict[str, Any]
    ) -> dict[str, Any]:
        filter_type = _required(params, "filterType")
        if not isinstance(filter_type, str):
            raise type_mismatch(json.dumps(filter_type), "filterType", "string")
        lowered = filter_type.strip().lower()
        if lowered == "idfield":
            filter_fields: tuple[str, ...] = (schema.id_field,)
        elif lowered == "dedupefields":
            filter_fields = tuple(schema.dedupe_fields)
        else:
            fdef = schema.resolve(filter_type)
            if fdef is None or fdef.name not in schema.single_searchable:
                raise ApiError("1011", f"Field not supported: invalid filterType '{filter_type}'")
            filter_fields = (fdef.name,)
        fdefs: list[FieldDef] = [schema.by_name[n] for n in filter_fields]
        keys = self._query_keys(cfg, filter_type, fdefs, params)

        requested = _split_list(params.get("fields"), "fields")
        out_fields: list[str] = []
        for name in requested:
            fdef = schema.resolve(name)
            if fdef is None:
                raise ApiError("1006", f"Field '{name}' not found")
            if fdef.name not in out_fields:
                out_fields.append(fdef.name)
        if out_fields:
            out_fields = _with_added_fields(schema, out_fields, cfg.query_fields_added)
        else:
            out_fields = list(schema.default_fields)
        size = parse_batch_size(params.get("batchSize"))

        fold = not cfg.filter_case_sensitive
        fp = _fingerprint([obj, list(filter_fields), [list(k) for k in keys], out_fields, fold])
        token = params.get("nextPageToken")
        offset = read_page_token(token, fp) if token not in (None, "") else 0
        page, total = self.state.store.query(
            obj,
            filter_fields=filter_fields,
            keys=keys,
            out_fields=out_fields,
            offset=offset,
            limit=size,
            cache_key=fp.hex(),
            fold=fold,
        )
        out: dict[str, Any] = {"success": True, "result": page}
        end = offset + len(page)
        more = end < total or (cfg.trailing_empty_page and bool(page))
        if more:
            out["nextPageToken"] = make_page_token(end, fp)
        if cfg.emit_more_result:
            out["moreResult"] = more
        return out

    def _query_keys(
        self, cfg: SandboxConfig, filter_type: str, fdefs: list[FieldDef], params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """The filter keys, from the JSON ``input`` form or from ``filterValues``."""
        keys: list[tuple[Any, ...]] = []
        raw_input = params.get("input")
        if raw_input is not None:
            if not isinstance(raw_input, list):
                raise ApiError("1003", "Invalid input: 'input' must be a non-empty JSON array")
            if not raw_input:
                raise ApiError("701", "input cannot be blank")
            if len(raw_input) > MAX_BATCH:
                raise ApiError("1003", f"Too many records in input: {len(raw_input)} (max {MAX_BATCH})")
            for item in raw_input:
                if not isinstance(item, dict):
                    raise ApiError("1003", "Invalid input: each input record must be a JSON object")
                lowered_item = {str(k).lower(): v for k, v in item.items()}
                key = []
                for fdef in fdefs:
                    raw = lowered_item.get(fdef.name.lower())
                    if raw is None or raw == "":
                        raise ApiError(
                            "1003", f"Value for required field '{fdef.name}' not specified in input"
                        )
                    key.append(_filter_key(fdef, raw))
                keys.append(tuple(key))
            return keys
        if len(fdefs) > 1:
            raise ApiError(
                "1003",
                f"Invalid filterType '{filter_type}': the compound key needs the JSON 'input' form "
                "(POST ?_method=GET with Content-Type application/json)",
            )
        values = _split_list(
            _required(params, "filterValues"), "filterValues", trim=cfg.filter_values_trimmed
        )
        if not values:
            raise ApiError("701", "filterValues cannot be blank")
        if len(values) > MAX_BATCH:
            raise ApiError("1003", f"Too many filterValues: {len(values)} (max {MAX_BATCH})")
        return [(_filter_key(fdefs[0], v),) for v in values]

    # ---- /_sandbox --------------------------------------------------------------------
    def _inspect(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        state = self.state
        name = path[len("/_sandbox/") :]
        try:
            data: dict[str, Any] = {}
            if method == "POST" and body:
                try:
                    parsed = json.loads(body.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as exc:
                    raise ValueError("request body must be JSON") from exc
                if not isinstance(parsed, dict):
                    raise ValueError("request body must be a JSON object")
                data = parsed
            if method == "GET" and name == "stats":
                self._send_json(200, state.stats(), count=False)
            elif method == "GET" and name == "call-times":
                self._send_json(200, state.call_times(), count=False)
            elif method == "GET" and name == "config":
                self._send_json(200, state.config.public_dict(), count=False)
            elif method == "GET" and name == "store":
                obj = query.get("object", ["opportunities"])[0]
                store = state.store
                records: list[Any]
                if obj == "opportunities":
                    records = store.opportunities()
                elif obj in ("opportunity_roles", "roles"):
                    records = store.roles()
                elif obj == "leads":
                    records = store.lead_ids()
                else:
                    raise ValueError("object must be opportunities, opportunity_roles or leads")
                self._send_json(200, {"object": obj, "count": len(records), "result": records}, count=False)
            elif method == "POST" and name == "config":
                cfg = state.configure(**validate_changes(data))
                self._send_json(200, cfg.public_dict(), count=False)
            elif method == "POST" and name == "reset-stats":
                state.reset_stats()
                self._send_json(200, {"ok": True}, count=False)
            elif method == "POST" and name == "revoke-tokens":
                state.revoke_tokens()
                self._send_json(200, {"ok": True}, count=False)
            elif method == "POST" and name == "expire-tokens":
                state.expire_tokens()
                self._send_json(200, {"ok": True}, count=False)
            elif method == "POST" and name == "leads":
                ids = data.get("ids")
                if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                    raise ValueError("'ids' must be a list of integers")
                state.store.add_leads(ids)
                self._send_json(200, {"ok": True, "leads": len(state.store.lead_ids())}, count=False)
            elif method == "POST" and name == "clear":
                state.store.clear(leads=bool(data.get("leads", False)))
                self._send_json(200, {"ok": True}, count=False)
            else:
                self._send_json(404, {"error": f"unknown sandbox endpoint {method} {path}"}, count=False)
        except (ValueError, TypeError) as exc:
            self._send_json(400, {"error": str(exc)}, count=False)


class SandboxHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its sandbox state and can close its open connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SandboxState, *, log_requests: bool = False) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.log_requests = log_requests
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError | OSError):
            return
        super().handle_error(request, client_address)
