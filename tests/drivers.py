"""One behavioural suite, every driver: a sync facade over each way of paying with the SDK.

A test asks for ``driven`` (or ``driven_for``) and gets a :class:`Driven` for the kind the
``driver_kind`` fixture is parametrized with:

- ``requests``: :class:`AutoAgent` itself;
- ``requests-auth``: a ``requests.Session`` with ``auth=PaymentAuth(AutoAgent)``;
- ``httpx``: an ``httpx.Client(auth=PaymentAuth(AutoAgent))``;
- ``httpx-async``: ``AsyncAutoAgent``, its coroutines run on the Driven's own event loop;
- ``httpx-async-auth``: an ``httpx.AsyncClient(auth=PaymentAuth(AsyncAutoAgent))``.

HTTP calls take requests' keywords (translated for httpx) and return a :class:`Reply`;
agent-level operations go to the agent (for the auth kinds, the one given to PaymentAuth),
awaited when they return an awaitable. A kind whose classes this build lacks fails the test:
it is never skipped.
"""

from __future__ import annotations

import asyncio
import inspect
import io
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import httpx
import pytest
import requests

import human_rpc_sdk
from human_rpc_sdk import AutoAgent

KINDS = ("requests", "requests-auth", "httpx", "httpx-async", "httpx-async-auth")
ASYNC_KINDS = frozenset({"httpx-async", "httpx-async-auth"})
PAYMENT_HEADERS = ("X-PAYMENT", "PAYMENT-SIGNATURE")
NO_RESEND_KINDS = frozenset({"httpx", "httpx-async-auth"})
"""PaymentAuth inside an httpx client: a transport error on the paid request (a dropped
connection, a read timeout) is raised by httpx outside the auth flow, so the SDK cannot send
the payment again; the payment stays open in the journal for ``recover_payments`` (as
PaymentAuth's docstring says). Every other kind sends the same payment again."""

T = TypeVar("T")
_OWN = frozenset({"agent", "kind", "client", "sent", "sent_payments", "_runner", "_closed"})


class Reply:
    """What a driver answered, the same shape for every kind; ``raw`` is the driver's own."""

    def __init__(self, raw: requests.Response | httpx.Response) -> None:
        self.raw = raw
        self.status_code: int = raw.status_code
        self.headers: Mapping[str, str] = raw.headers  # case-insensitive in both libraries
        self.content: bytes = raw.content
        self.url = str(raw.url)

    @property
    def text(self) -> str:
        return self.raw.text

    def json(self) -> Any:
        return self.raw.json()

    def __repr__(self) -> str:
        return f"<Reply {self.status_code} from {self.url}>"


class Sent:
    """The payment headers a driver sent, in order; ``before_payment`` (if set) runs just
    before each one leaves, e.g. to read the journal at that moment."""

    def __init__(self) -> None:
        self.headers: list[str] = []
        self.before_payment: Callable[[], None] | None = None

    def saw(self, headers: Mapping[str, str]) -> None:
        found = [headers[name] for name in PAYMENT_HEADERS if name in headers]
        if found and self.before_payment is not None:
            self.before_payment()
        self.headers.extend(found)


class CaptureTransport(httpx.BaseTransport):
    """An httpx transport that remembers every payment header sent through it."""

    def __init__(self, sent: Sent) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent = sent

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.saw(request.headers)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class AsyncCaptureTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`CaptureTransport`."""

    def __init__(self, sent: Sent) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent = sent

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.saw(request.headers)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CaptureAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, sent: Sent) -> None:
        super().__init__()
        self.sent = sent

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.saw(request.headers)
        return super().send(request, **kwargs)


def _sdk_class(kind: str, name: str) -> Any:
    found = getattr(human_rpc_sdk, name, None)
    if found is None:
        pytest.fail(f"driver kind {kind!r} needs human_rpc_sdk.{name}, which this build lacks")
    return found


def _async_sleep(sleep: Callable[[float], Any]) -> Callable[[float], Awaitable[None]]:
    """``sleep`` as the async agent takes it: a test's fake sync sleep is wrapped, never waited."""
    if inspect.iscoroutinefunction(sleep):
        return sleep

    async def asleep(seconds: float) -> None:
        sleep(seconds)

    return asleep


def _httpx_timeout(timeout: Any) -> Any:
    if isinstance(timeout, tuple):
        connect, read = timeout
        return httpx.Timeout(max(connect or 0, read or 0) or None, connect=connect, read=read)
    return timeout


def _httpx_keywords(method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """requests' keywords in httpx's words; redirects follow requests' defaults."""
    out = dict(kwargs)
    out["follow_redirects"] = out.pop("allow_redirects", method.upper() != "HEAD")
    data = out.get("data")
    if isinstance(data, bytes | str | io.IOBase):
        out["content"] = out.pop("data")
    if "timeout" in out:
        out["timeout"] = _httpx_timeout(out["timeout"])
    return out


class Driven:
    """A payer of one kind behind a sync interface; see the module docstring."""

    def __init__(self, kind: str, *args: Any, capture: bool = False, **agent_kwargs: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown driver kind {kind!r}; one of {KINDS}")
        self.kind = kind
        self.sent = Sent()
        """The payment headers sent (only when built with ``capture=True``)."""
        self.sent_payments = self.sent.headers
        self.client: Any = None
        self._closed = False
        self._runner = asyncio.Runner() if kind in ASYNC_KINDS else None
        if self._runner is not None:
            try:
                self.agent: Any = self._run(self._build_async(args, capture, agent_kwargs))
            except BaseException:
                self._runner.close()
                raise
        else:
            self.agent = AutoAgent(*args, **agent_kwargs)
            self._build_sync(capture)

    # -- construction ------------------------------------------------------------------------

    def _build_sync(self, capture: bool) -> None:
        if self.kind == "requests":
            if capture:
                self.agent.session.mount("http://", _CaptureAdapter(self.sent))
            return
        auth = _sdk_class(self.kind, "PaymentAuth")(self.agent)
        if self.kind == "requests-auth":
            session = requests.Session()
            session.auth = auth
            if capture:
                session.mount("http://", _CaptureAdapter(self.sent))
            self.client = session
        else:
            transport = CaptureTransport(self.sent) if capture else None
            self.client = httpx.Client(auth=auth, transport=transport)

    async def _build_async(
        self, args: tuple[Any, ...], capture: bool, agent_kwargs: dict[str, Any]
    ) -> Any:
        """Built inside the loop, so whatever the agent binds to a loop binds to this one."""
        cls = _sdk_class(self.kind, "AsyncAutoAgent")
        if "sleep" in agent_kwargs:
            agent_kwargs = {**agent_kwargs, "sleep": _async_sleep(agent_kwargs["sleep"])}
        transport = AsyncCaptureTransport(self.sent) if capture else None
        if self.kind == "httpx-async":
            if capture and "session" not in agent_kwargs:
                agent_kwargs = {**agent_kwargs, "session": httpx.AsyncClient(transport=transport)}
            return cls(*args, **agent_kwargs)
        agent = cls(*args, **agent_kwargs)
        auth = _sdk_class(self.kind, "PaymentAuth")(agent)
        self.client = httpx.AsyncClient(auth=auth, transport=transport)
        return agent

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._runner is not None
        return self._runner.run(coroutine)

    def _resolve(self, value: Any) -> Any:
        """``value``, awaited on this Driven's loop if it is awaitable."""
        if inspect.isawaitable(value):
            return self._run(_awaited(value))
        return value

    # -- HTTP --------------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> Reply:
        """``method url`` with requests' keywords, through this kind's driver."""
        if self.kind == "requests":
            return Reply(self.agent.request(method, url, **kwargs))
        if self.kind == "requests-auth":
            return Reply(self.client.request(method, url, **kwargs))
        options = _httpx_keywords(method, kwargs)
        if self.kind == "httpx-async":
            return Reply(self._run(self.agent.request(method, url, **options)))
        follow = options.pop("follow_redirects")
        request = self.client.build_request(method, url, **options)
        if self.kind == "httpx":
            return Reply(self.client.send(request, follow_redirects=follow))
        return Reply(self._run(self.client.send(request, follow_redirects=follow)))

    def get(self, url: str, params: Any = None, **kwargs: Any) -> Reply:
        return self.request("GET", url, params=params, **kwargs)

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", url, data=data, json=json, **kwargs)

    def put(self, url: str, data: Any = None, **kwargs: Any) -> Reply:
        return self.request("PUT", url, data=data, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> Reply:
        return self.request("HEAD", url, **kwargs)

    # -- the agent ---------------------------------------------------------------------------

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._resolve(getattr(self.agent, name)(*args, **kwargs))

    def _read(self, name: str) -> Any:
        """A property of the agent, or a method taking nothing (the async agent may make one)."""
        value = getattr(self.agent, name)
        return self._resolve(value() if inspect.ismethod(value) else value)

    @property
    def address(self) -> str:
        return str(self.agent.address)

    @property
    def payments(self) -> Any:
        return self._read("payments")

    def pending_payments(self) -> Any:
        return self._read("pending_payments")

    @property
    def budget(self) -> Any:
        return self._read("budget")

    @property
    def reiterator(self) -> Any:
        return self.agent.reiterator

    def pending_tasks(self) -> Any:
        return self._read("pending_tasks")

    def balance(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("balance", *args, **kwargs)

    def recover_payments(self) -> Any:
        return self._call("recover_payments")

    def raise_budget(self, amounts: Mapping[str, Any]) -> Any:
        return self._call("raise_budget", amounts)

    def ask_human_rpc(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("ask_human_rpc", *args, **kwargs)

    def wait_for_verdict(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("wait_for_verdict", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        """Anything else the agent has (``rpc_stats``, ``journal_path``, ...), resolved."""
        if name.startswith("__") or name in {
            "agent",
            "kind",
            "client",
            "sent",
            "_runner",
            "_closed",
        }:
            raise AttributeError(name)
        value = getattr(self.agent, name)
        if inspect.ismethod(value):
            return lambda *args, **kwargs: self._resolve(value(*args, **kwargs))
        return self._resolve(value)

    def close(self) -> None:
        """Close the client, then the agent, then the loop; twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._runner is None:
            if self.client is not None:
                self.client.close()
            self.agent.close()
            return
        try:
            if self.client is not None:
                self._run(self.client.aclose())
            self._run(self.agent.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> Driven:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Driven {self.kind} {self.agent!r}>"


async def _awaited(value: Awaitable[T]) -> T:
    return await value


def make(kind: str, *args: Any, capture: bool = False, **agent_kwargs: Any) -> Driven:
    """A :class:`Driven` of ``kind`` whose agent is built with AutoAgent's arguments."""
    return Driven(kind, *args, capture=capture, **agent_kwargs)


Maker = Callable[..., Driven]


def made_for(kind: str) -> Iterator[Maker]:
    """A fixture body: build Drivens of ``kind``; each is closed after the test."""
    made: list[Driven] = []

    def build(*args: Any, capture: bool = False, **agent_kwargs: Any) -> Driven:
        driven = make(kind, *args, capture=capture, **agent_kwargs)
        made.append(driven)
        return driven

    yield build
    for driven in made:
        driven.close()


def settle_unanswered(driven: Driven, call: Callable[[], object]) -> Any:
    """For a :data:`NO_RESEND_KINDS` payer: ``call`` raises httpx's transport error, the one
    payment it sent is pending in the journal, and ``recover_payments`` settles it from the
    chain. Returns the recovered receipt."""
    assert driven.kind in NO_RESEND_KINDS
    with pytest.raises(httpx.TransportError):
        call()
    (pending,) = driven.pending_payments()
    (recovered,) = driven.recover_payments()
    assert recovered.id == pending.id
    assert driven.pending_payments() == []
    return recovered
