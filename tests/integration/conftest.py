"""Fixtures of the multi-process integration tests: ``--long``, the ``clusters`` factory, logs on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False, help="also run the long integration variants")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: a long variant, run only with --long")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long variant: run with --long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call" and report.failed:
        for cluster in getattr(item, "_clusters", []):
            report.sections.append((f"node logs: {cluster.name}", cluster.log_report()))
    return report


@pytest.fixture
def clusters(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """A factory of (not yet started) ``Cluster``s under ``tmp_path``; the finalizer kills what they started."""
    made: list[Cluster] = []
    request.node._clusters = made

    def make(size: int, **kwargs: Any) -> Cluster:
        name = kwargs.pop("name", f"cluster{len(made)}")
        cluster = Cluster(tmp_path / name, size, name=name, **kwargs)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.force_cleanup()
