"""Agent mode: the model works on a goal in steps with tools that act through the workspace's own
services, each file change and command reviewed by the user unless they allowed otherwise.

- :mod:`.tools`: the one internal tool schema, and what each tool does (pure text helpers:
  diffs, search/replace, trimming; and the calls into ``workspace_app``);
- :mod:`.loop`: one turn's worker: ask the model, run its tool calls, pause for reviews;
- :mod:`.services`: what the API calls: start a turn, decide on a step, stop, undo, settings.
"""
