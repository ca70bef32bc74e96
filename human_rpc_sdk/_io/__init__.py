"""The SDK's I/O: every module that touches the network, the disk or the clock lives here.

The rest of the package is the sans-I/O core: flows that yield effects (see
:mod:`human_rpc_sdk._effects`) and pure functions. A lint rule (ruff ``TID251``, configured in
``pyproject.toml``) bans ``requests``, ``httpx``, ``urllib3``, ``sqlite3``, ``socket`` and
``time`` outside this package, so a decision cannot hide in a driver and a driver cannot
drift from the others.

* :mod:`.store` - the journal's interface (``JournalStore``) and which store a location names.
* :mod:`.journal` - the SQLite payment journal (the default store).
* :mod:`.postgres` - the PostgreSQL payment journal (one budget for a fleet; psycopg 3).
* :mod:`.rpc` - Solana JSON-RPC over ``requests`` (the synchronous transport).
* :mod:`.sync` - the synchronous driver: performs effects, sends HTTP with ``requests``.
* :mod:`.agent` - :class:`~human_rpc_sdk.AutoAgent`, the ``requests`` agent.
* :mod:`.arpc` - Solana JSON-RPC over ``httpx.AsyncClient`` (the asynchronous transport).
* :mod:`.aio` - the asynchronous driver: performs effects, sends HTTP with ``httpx``.
* :mod:`.async_agent` - :class:`~human_rpc_sdk.AsyncAutoAgent`, the asyncio agent.
* :mod:`.auth` - :class:`~human_rpc_sdk.PaymentAuth`, the ``auth=`` of requests and httpx.
* :mod:`.errors` - the connection errors that are ``requests`` exceptions too.
* :mod:`.environment` - ``requests``' environment settings (proxies), remembered per origin.
"""
