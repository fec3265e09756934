"""The container spec is a pure function of a session and its limits: no Docker needed."""

from __future__ import annotations

import pytest
from django.test import override_settings

from sessions_app import specs
from sessions_app.models import Session, new_public_id
from sessions_app.runtime.docker import docker_create_kwargs


def _session(**overrides) -> Session:
    fields = dict(
        public_id="abcdefgh23",
        owner_id=7,
        name="demo",
        container_name="vibecode-7-abcdefgh23",
        volume_name="vibecode-7-abcdefgh23-ws",
        image="vibecode-sandbox:latest",
        runtime="runc",
        limits={"memory_mb": 2048, "cpus": 1.5, "pids": 512},
    )
    fields.update(overrides)
    return Session(**fields)


def test_names_follow_the_seed_guide():
    assert specs.container_name(user_id=7, public_id="abc") == "vibecode-7-abc"
    assert specs.volume_name(user_id=7, public_id="abc") == "vibecode-7-abc-ws"


def test_session_ids_are_short_random_slugs():
    ids = {new_public_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 10 and i.isalnum() and i.islower() for i in ids)


# scripts/test.sh sets a CA bundle from $SSL_CERT_FILE; its mount is tested in tests/egress.
@override_settings(VIBECODE_SANDBOX_CA_BUNDLE="")
def test_the_default_spec_has_every_limit_and_hardening_setting():
    kwargs = docker_create_kwargs(specs.sandbox_spec(_session()))
    assert kwargs["name"] == "vibecode-7-abcdefgh23"
    assert kwargs["labels"]["app"] == "vibecode"
    assert kwargs["labels"]["vibecode.user_id"] == "7"
    assert kwargs["labels"]["vibecode.session_id"] == "abcdefgh23"
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == 2 * 1024**3
    assert kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["pids_limit"] == 512
    assert kwargs["security_opt"] == ["no-new-privileges:true"]
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["user"] == "1000:1000"
    assert kwargs["read_only"] is True
    assert kwargs["tmpfs"]["/tmp"].endswith("mode=1777") and "size=512m" in kwargs["tmpfs"]["/tmp"]
    assert kwargs["network_mode"] == "none"
    assert kwargs["init"] is True
    assert kwargs["volumes"] == {"vibecode-7-abcdefgh23-ws": {"bind": "/workspace", "mode": "rw"}}
    assert kwargs["ulimits"][0]["Name"] == "nofile"
    assert kwargs["log_config"]["Config"]["max-size"] == "10m"
    assert "runtime" not in kwargs
    assert kwargs["environment"]["HOME"].startswith("/workspace/")


@override_settings(
    VIBECODE_SANDBOX_NETWORK="vibecode-internal",
    VIBECODE_SANDBOX_READ_ONLY_ROOT=False,
    VIBECODE_SANDBOX_DROP_CAPABILITIES=False,
)
def test_hardening_settings_can_be_relaxed_one_by_one():
    kwargs = docker_create_kwargs(specs.sandbox_spec(_session(runtime="runsc")))
    assert kwargs["network_mode"] == "vibecode-internal"
    assert kwargs["read_only"] is False
    assert "cap_drop" not in kwargs
    assert kwargs["runtime"] == "runsc"


@pytest.mark.parametrize(("memory_mb", "cpus", "pids"), [(512, 0.5, 64), (4096, 2, 1024)])
def test_limits_come_from_the_sessions_snapshot(memory_mb, cpus, pids):
    session = _session(limits={"memory_mb": memory_mb, "cpus": cpus, "pids": pids})
    kwargs = docker_create_kwargs(specs.sandbox_spec(session))
    assert kwargs["mem_limit"] == memory_mb * 1024 * 1024
    assert kwargs["nano_cpus"] == int(cpus * 1e9)
    assert kwargs["pids_limit"] == pids


def test_the_spec_carries_the_disk_quota_the_workspace_was_made_with():
    limits = {"memory_mb": 2048, "cpus": 1.5, "pids": 512}
    assert specs.sandbox_spec(_session(limits={**limits, "disk_mb": 64})).disk_mb == 64
    # Made before quotas (no key) or where the runtime could not apply one (null): no quota.
    assert specs.sandbox_spec(_session(limits=limits)).disk_mb is None
    assert specs.sandbox_spec(_session(limits={**limits, "disk_mb": None})).disk_mb is None


def test_the_workspace_owner_comes_from_the_sandbox_user():
    assert specs.owner_ids("1000:1000") == (1000, 1000)
    assert specs.owner_ids("1001") == (1001, 1001)
    with pytest.raises(ValueError):
        specs.owner_ids("coder")


def test_a_workspace_path_never_leaves_the_workspaces_root():
    from sessions_app.runtime import btrfs

    assert btrfs.workspace_path(root="/srv/ws", name="vibecode-7-abc-ws") == "/srv/ws/vibecode-7-abc-ws"
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 300):
        with pytest.raises(btrfs.WorkspaceDiskFailure):
            btrfs.workspace_path(root="/srv/ws", name=bad)
    assert btrfs.is_under("/srv/ws/vibecode-7-abc-ws", "/srv/ws")
    assert not btrfs.is_under("/srv/ws/a/b", "/srv/ws") and not btrfs.is_under("/srv/wsx/a", "/srv/ws")
    assert not btrfs.is_under("/srv/ws/a", "")
