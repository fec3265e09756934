"""The resilience tests that stop or restart the engine use ``private_engine`` (tests/conftest.py):
restarting the machine's engine would stop every container on it, a running VibeCode's sandboxes
included."""
