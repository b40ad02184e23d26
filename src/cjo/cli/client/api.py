"""The connection to the API: `with_api` gives a command --api, --api-key, --json and
--timeout and an `Api`; the API's problems become `ApiRefusal` (exit 1), no answer at all
`ApiUnreachable` (exit 2)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import IO, Any

import click
import httpx
from click.core import ParameterSource
from pydantic import ValidationError

from cjo.cli.client.text import format_diagnostic
from cjo.runtime.settings import Settings

DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_SECONDS = 30.0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2
DEV_KEY_FILE = "dev-admin-key"
CLIENT_EPILOG = (
    "Exit status: 0 done; 1 the API refused or failed (its problem is on stderr); "
    "2 a usage error, or no answer from the API."
)


class ApiRefusal(click.ClickException):
    """The API answered with an error: its RFC 9457 problem, shown on stderr."""

    exit_code = EXIT_REFUSED

    def __init__(self, status: int, problem: dict[str, Any], hint: str | None = None) -> None:
        self.status = status
        self.problem = problem
        self.hint = hint
        title = str(problem.get("title") or _phrase(status))
        detail = problem.get("detail")
        self.listed = [format_diagnostic(d) for d in problem.get("diagnostics") or []] + [
            f"  {error.get('field', '?')}: {error.get('message', '')}"
            for error in problem.get("errors") or []
        ]
        # The detail of a problem that lists its diagnostics or field errors sums up the
        # list (and quotes its first item), which is printed in full below the headline.
        shown = detail if detail and not self.listed else None
        super().__init__(f"{status} {title}" + (f": {shown}" if shown else ""))

    def show(self, file: IO[Any] | None = None) -> None:
        lines = [f"Error: {self.message}", *self.listed]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        for line in lines:
            click.echo(line, file=file, err=True)  # stderr unless a file is given


class ApiUnreachable(click.ClickException):
    """No answer from the API: not running, wrong address, or too slow."""

    exit_code = EXIT_UNREACHABLE


class Api:
    """One command's connection to the API, and how it prints answers."""

    def __init__(
        self, url: str, key: str | None, key_source: str, timeout: float, as_json: bool
    ) -> None:
        self.url = url
        self.key = key
        self.key_source = key_source
        self.timeout = timeout
        self.as_json = as_json
        headers = {"User-Agent": f"cjo-cli/{_own_version()}"}
        if key is not None:
            if _looks_like_jwt(key):
                headers["Authorization"] = f"Bearer {key}"
            else:
                headers["X-API-Key"] = key
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer's JSON; ApiRefusal for an error answer, ApiUnreachable for none."""
        try:
            answer = self._http.request(
                method,
                path,
                json=json_body,
                content=content,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers=headers,
            )
        except httpx.TimeoutException:
            raise ApiUnreachable(
                f"no answer from the CJO API at {self.url} within {self.timeout:g}s "
                f"({method} {path}); it may or may not have acted on the request. "
                "Check the API, or give it longer with --timeout."
            ) from None
        except httpx.TransportError as error:
            raise ApiUnreachable(
                f"cannot reach the CJO API at {self.url}: {error or type(error).__name__}. "
                "Is it running (`cjo dev` starts one)? Point at another with --api or "
                "CJO_API_URL."
            ) from None
        body = _json_or_none(answer)
        if answer.is_success:
            if body is None and answer.content:
                raise ApiRefusal(
                    answer.status_code,
                    {"title": "Not JSON", "detail": f"the answer is not JSON: {_excerpt(answer)}"},
                    hint=f"is {self.url} a CJO API?",
                )
            return body if body is not None else {}
        problem = body if isinstance(body, dict) else {"detail": _excerpt(answer) or None}
        if self.as_json and isinstance(body, dict):
            self.emit(body)
        raise ApiRefusal(answer.status_code, problem, self._hint(answer.status_code))

    def emit(self, body: Any) -> None:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))

    def _hint(self, status: int) -> str | None:
        if status != HTTPStatus.UNAUTHORIZED:
            return None
        if self.key is None:
            return (
                "no API key was given: pass --api-key or set CJO_API_KEY "
                "(`cjo token create` mints one; `cjo dev` prints one)"
            )
        if self.key_source.endswith(DEV_KEY_FILE):
            return (
                f"the key was read from {self.key_source}; is `cjo dev` running with this "
                "CJO_HOME? (it renews the key on start) Or pass --api-key."
            )
        return f"check the key given by {self.key_source}"


def _json_or_none(answer: httpx.Response) -> Any:
    if not answer.content:
        return None
    try:
        return answer.json()
    except ValueError:
        return None


def _excerpt(answer: httpx.Response) -> str:
    return " ".join(answer.text.split())[:200]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _own_version() -> str:
    try:
        return package_version("cjo")
    except PackageNotFoundError:
        return "dev"


def _looks_like_jwt(credential: str) -> bool:
    # A JWT is three base64url parts, its header JSON ("{\"...") encoding as "eyJ"; CJO keys
    # read `key_<id>.<secret>`.
    return credential.startswith("eyJ") and credential.count(".") == 2


def _dev_key() -> tuple[str | None, str]:
    """The key `cjo dev` keeps, and where it was read; (None, "") when there is none."""
    try:
        home = Settings().home
    except ValidationError as error:
        raise click.UsageError(f"the CJO_* settings are invalid: {error}") from None
    path = home / DEV_KEY_FILE
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None, ""
    return (kept, str(path)) if kept else (None, "")


def with_api(command: Callable[..., None]) -> Callable[..., None]:
    """Give the command --api, --api-key, --json and --timeout, and an `Api` as first argument."""

    @click.option(
        "--api",
        "api_url",
        envvar="CJO_API_URL",
        show_envvar=True,
        default=DEFAULT_API_URL,
        show_default=True,
        metavar="URL",
        help="The CJO API to talk to.",
    )
    @click.option(
        "--api-key",
        envvar="CJO_API_KEY",
        show_envvar=True,
        metavar="KEY",
        help="An API key (a JWT is sent as a bearer token instead). Without one, the admin "
        "key `cjo dev` keeps in $CJO_HOME/dev-admin-key is used when that file exists.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer as it is.")
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_TIMEOUT_SECONDS,
        show_default=True,
        metavar="SECONDS",
        help="How long to wait for each answer.",
    )
    @functools.wraps(command)
    def run(
        api_url: str, api_key: str | None, as_json: bool, timeout: float, **arguments: Any
    ) -> None:
        context = click.get_current_context()
        url = api_url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise click.BadParameter(
                f"{api_url!r} is not an http:// or https:// URL", param_hint="--api"
            )
        key_source = ""
        if api_key and api_key.strip():
            from_flag = context.get_parameter_source("api_key") is ParameterSource.COMMANDLINE
            key_source = "--api-key" if from_flag else "CJO_API_KEY"
            key: str | None = api_key.strip()
        else:
            key, key_source = _dev_key()
        api = Api(url, key, key_source, timeout, as_json)
        context.call_on_close(api.close)
        command(api, **arguments)

    return run
