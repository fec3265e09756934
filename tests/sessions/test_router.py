"""The engine router on in-memory runtimes: each call goes to the engine its ref or spec names,
one runtime per engine and address, ``local`` by default. The real engines are in test_engines.py."""

from __future__ import annotations

import pytest

from sessions_app.runtime.base import SandboxRef, SandboxSpec, SandboxState
from sessions_app.runtime.errors import EngineUnavailable
from sessions_app.runtime.router import EngineRouter
from tests.fake_runtime import FakeRuntime


def spec(name: str, engine: str = "local") -> SandboxSpec:
    return SandboxSpec(
        name=name,
        volume_name=f"{name}-ws",
        image="img",
        labels={},
        memory_mb=64,
        cpus=1,
        pids=64,
        engine=engine,
    )


@pytest.fixture
def made() -> dict[str, list[tuple[str, str, str]]]:
    """The engines the router made a runtime for, in order."""
    return {"calls": []}


def router(addresses: dict[str, tuple[str, str]], made) -> tuple[EngineRouter, dict[str, FakeRuntime]]:
    runtimes: dict[str, FakeRuntime] = {}

    def factory(name: str, url: str, tls_dir: str) -> FakeRuntime:
        made["calls"].append((name, url, tls_dir))
        runtimes[name] = FakeRuntime()
        return runtimes[name]

    def resolve(name: str) -> tuple[str, str]:
        if name not in addresses:
            raise EngineUnavailable.naming(name)
        return addresses[name]

    return EngineRouter(factory=factory, resolve=resolve), runtimes


def test_each_call_goes_to_the_engine_its_ref_names(made):
    routed, runtimes = router({"b": ("unix:///b.sock", "")}, made)
    on_local = routed.create(spec("one"))
    on_b = routed.create(spec("two", engine="b"))
    assert runtimes["local"].container_named("one") and not runtimes["local"].container_named("two")
    assert runtimes["b"].container_named("two") and not runtimes["b"].container_named("one")
    on_b = SandboxRef(on_b.object_id, on_b.object_name, on_b.volume_name, engine="b")
    assert routed.status(on_b).state == SandboxState.RUNNING
    # The same ref on the wrong engine is not there: nothing is looked up across engines.
    assert routed.status(SandboxRef(on_b.object_id, "two", "two-ws")).state == SandboxState.MISSING
    routed.stop(on_b)
    assert runtimes["b"].containers[on_b.object_id].state == "stopped"
    assert runtimes["local"].containers[on_local.object_id].state == "running"
    # One runtime per engine, local's with no address of its own (DOCKER_HOST).
    assert made["calls"] == [("local", "", ""), ("b", "unix:///b.sock", "")]


def test_engine_wide_calls_default_to_local_and_an_unknown_engine_is_unavailable(made):
    routed, runtimes = router({}, made)
    assert routed.ping() == "Fake runtime"
    assert runtimes["local"].calls == ["ping"]
    with pytest.raises(EngineUnavailable) as raised:
        routed.ping(engine="nowhere")
    assert raised.value.code == "engine_unavailable" and raised.value.extra == {"engine": "nowhere"}
    assert "'nowhere'" in raised.value.detail


def test_an_engine_whose_address_changes_gets_a_new_runtime(made, monkeypatch):
    addresses = {"b": ("unix:///b.sock", "")}
    routed, _ = router(addresses, made)
    first = routed.engine("b")
    assert routed.engine("b") is first
    addresses["b"] = ("tcp://10.0.0.5:2376", "/etc/b")
    monkeypatch.setattr("sessions_app.runtime.router.RESOLVE_SECONDS", 0)
    assert routed.engine("b") is not first
    assert made["calls"][-1] == ("b", "tcp://10.0.0.5:2376", "/etc/b")
