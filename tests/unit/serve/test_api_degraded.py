"""With PostgreSQL and Redis unreachable the API answers 503, never 500, and keeps running."""

from fastapi.testclient import TestClient

from rwa.embedded import free_port
from serve.api import create_api
from serve.args import AppArgs


def test_dependencies_down_give_503_with_a_reason() -> None:
    args = AppArgs(database_url=f"postgresql://rwa@127.0.0.1:{free_port()}/rwa",
                   redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_api(args), raise_server_exceptions=False) as client:
        health = client.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "degraded"
        assert body["components"]["postgres"]["status"] == "down"
        assert body["components"]["redis"]["status"] == "down"
        for path in ("/assets", "/assets/paxg", "/predictions/paxg?horizon=7"):
            r = client.get(path)
            assert r.status_code == 503, (path, r.text)
            assert "unavailable" in r.json()["detail"]
        # Bad input is still a 4xx, checked before any dependency is touched.
        assert client.get("/assets?limit=0").status_code == 422
