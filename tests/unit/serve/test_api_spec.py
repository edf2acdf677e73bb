"""The OpenAPI spec says what the API sends, and what the fuzzer
(tests/integration/test_openapi_fuzz.py) found wrong stays fixed. No services: the
spec, 405s and bad input are answered before PostgreSQL or Redis is needed."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core.domain import ASSET_CLASSES
from rwa.embedded import free_port
from serve.api import create_api
from serve.args import AppArgs


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    args = AppArgs(database_url=f"postgresql://rwa@127.0.0.1:{free_port()}/rwa",
                   redis_url=f"redis://127.0.0.1:{free_port()}/0", sentiment=None)
    # No lifespan (no ``with``): nothing here needs the pool or the tick feed.
    yield TestClient(create_api(args), raise_server_exceptions=False)


def test_a_422_detail_is_documented_as_a_message_or_the_field_list(client: TestClient
                                                                    ) -> None:
    spec = client.get("/openapi.json").json()
    detail = spec["components"]["schemas"]["HTTPValidationError"]["properties"]["detail"]
    assert [s.get("type") for s in detail["anyOf"]] == ["string", "array"]
    assert detail["anyOf"][1]["items"] == {"$ref": "#/components/schemas/ValidationError"}
    # Both shapes are sent: a rule the schema states, and one it cannot.
    assert isinstance(client.get("/assets?limit=0").json()["detail"], list)
    assert isinstance(client.get("/assets/paxg/prices?start=2026-01-02T00:00:00Z"
                                 "&end=2026-01-01T00:00:00Z").json()["detail"], str)


def test_metrics_are_documented_as_text(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == \
        ["text/plain"]
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


def test_asset_class_is_an_enum_in_the_spec_and_refused_outside_it(client: TestClient
                                                                    ) -> None:
    spec = client.get("/openapi.json").json()
    param = next(p for p in spec["paths"]["/assets"]["get"]["parameters"]
                 if p["name"] == "asset_class")
    assert param["schema"]["anyOf"][0]["enum"] == list(ASSET_CLASSES)
    for bad in ("", "crypto"):
        r = client.get("/assets", params={"asset_class": bad})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "asset_class"]


class Untouchable:
    """A pool that fails the test when anything asks it for a query."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"the database was asked ({name}) for an input it cannot hold")


@pytest.mark.parametrize("path", [
    "/assets/pa%00xg", "/assets/pa%00xg/prices", "/assets/pa%00xg/sentiment",
    "/assets/pa%00xg/onchain", "/risk/pa%00xg", "/risk/pa%00xg/history",
    "/predictions/pa%00xg",
])
def test_an_asset_reference_holding_nul_is_unknown_not_a_500(client: TestClient,
                                                              path: str) -> None:
    """PostgreSQL text cannot hold NUL, so the lookup failed (a 500); no asset has one."""
    services = client.app.state.services  # type: ignore[attr-defined]
    services.pool = Untouchable()
    try:
        r = client.get(path)
    finally:
        services.pool = None
    assert r.status_code == 404 and r.json()["detail"] == "unknown asset: pa\x00xg", r.text


@pytest.mark.parametrize("name", ["q", "blockchain"])
def test_asset_filters_holding_nul_are_a_422(client: TestClient, name: str) -> None:
    r = client.get("/assets", params={name: "gold\x00"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", name]
    assert "NUL" in r.json()["detail"][0]["msg"]


def test_offsets_past_bigint_are_a_422_not_a_500(client: TestClient) -> None:
    r = client.get("/assets", params={"offset": 2**63})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "offset"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("OPTIONS", "/portfolio/items/1", "DELETE, GET, PATCH"),
    ("PUT", "/alerts/1", "DELETE, GET, PATCH"),
    ("DELETE", "/assets", "GET"),
])
def test_a_405_allows_every_method_of_the_path(client: TestClient, method: str, path: str,
                                               allowed: str) -> None:
    """Starlette's Allow named only the first route matching the path."""
    r = client.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allowed
    assert r.json() == {"detail": "Method Not Allowed"}
