"""The HTTP application: `create_app(system)` wires routes, auth, errors and conventions."""

from __future__ import annotations

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from goalledger.api.auth import Authenticator
from goalledger.api.bootstrap import System
from goalledger.api.http_conventions import dependencies
from goalledger.api.http_headers import security_headers
from goalledger.api.http_idempotency import IdempotencyMiddleware, IdempotencyStore
from goalledger.api.http_json import OPENAPI_PLUGINS, JsonResponse
from goalledger.api.http_limits import (
    BodyLimitMiddleware,
    WriteBudgets,
    WriteRateLimitMiddleware,
    on_invalid_utf8,
    on_recursion,
)
from goalledger.api.http_metrics import HttpMetricsMiddleware
from goalledger.api.problems import EXCEPTION_HANDLERS
from goalledger.api.read_cache import ReadCache, ReadCacheMiddleware
from goalledger.api.routes_alerts import AlertController, SubscriptionController
from goalledger.api.routes_audit import AuditController
from goalledger.api.routes_chain import ChainController
from goalledger.api.routes_key_results import AppendLanes, CheckInLane, KeyResultController
from goalledger.api.routes_kpis import KpiController, ReadingBatchController
from goalledger.api.routes_objectives import ObjectiveController
from goalledger.api.routes_ops import OPS_ROUTES, LedgerMetrics
from goalledger.api.routes_org import CycleController, TeamController
from goalledger.api.routes_plugins import PluginController, SourceFetchController
from goalledger.api.routes_reads import ReadController
from goalledger.api.routes_stream import event_stream
from goalledger.api.routes_tokens import TokenController

API_VERSION = "1.0.0"
ROUTES = [
    CycleController,
    TeamController,
    ObjectiveController,
    KeyResultController,
    KpiController,
    SourceFetchController,
    ReadingBatchController,
    PluginController,
    ReadController,
    TokenController,
    AlertController,
    SubscriptionController,
    AuditController,
    ChainController,
    event_stream,
    *OPS_ROUTES,
]


def create_app(system: System, *, debug: bool = False) -> Litestar:
    """The goalledger API over one system (ledger, read models, projector, queries)."""
    authenticator = Authenticator(system.ledger)
    idempotency = IdempotencyStore(system.store)
    idempotency.setup()
    metrics = LedgerMetrics(system)
    settings = system.settings
    read_cache = ReadCache.for_store(system.store)
    budgets = WriteBudgets(settings.write_rate, settings.write_burst)
    lanes = AppendLanes()

    async def wake_projector(request: Request) -> None:
        # A write just landed: let the embedded projector pick it up without polling delay.
        if request.method != "GET":
            system.projector.notify()

    openapi = OpenAPIConfig(
        title="goalledger",
        version=API_VERSION,
        description="Event-sourced OKR and KPI ledger: the v1 HTTP API.",
        path="/schema",
        render_plugins=[ScalarRenderPlugin()],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", description="API token")
            }
        ),
        security=[{"bearer": []}],
    )
    app = Litestar(
        route_handlers=ROUTES,
        dependencies={
            **dependencies(system),
            "metrics": Provide(lambda: metrics, sync_to_thread=False),
            "authenticator": Provide(lambda: authenticator, sync_to_thread=False),
        },
        exception_handlers={
            **EXCEPTION_HANDLERS,
            RecursionError: on_recursion,
            UnicodeDecodeError: on_invalid_utf8,
        },
        middleware=[
            HttpMetricsMiddleware.define(),
            # Cached reads next: the write-side middlewares below have nothing to do for them.
            ReadCacheMiddleware.define(read_cache, authenticator),
            BodyLimitMiddleware.define(settings.max_body_bytes),
            WriteRateLimitMiddleware.define(authenticator, budgets),
            IdempotencyMiddleware.define(idempotency, authenticator),
        ],
        request_max_body_size=settings.max_body_bytes,
        before_send=[security_headers],
        # The root logger is the process's (`serve --log-level`), not reset to INFO here.
        logging_config=LoggingConfig(configure_root_logger=False),
        response_class=JsonResponse,
        plugins=list(OPENAPI_PLUGINS),
        openapi_config=openapi,
        after_response=wake_projector,
        state=State(
            {
                "system": system,
                "authenticator": authenticator,
                "read_cache": read_cache,
                "append_lanes": lanes,
            }
        ),
        debug=debug,
    )
    # Check-ins, the hottest write, are answered before routing when nothing is unusual.
    app.asgi_handler = CheckInLane(
        app.asgi_handler, system=system, authenticator=authenticator, lanes=lanes,
        budgets=budgets, max_body=settings.max_body_bytes,
    )  # fmt: skip
    return app
