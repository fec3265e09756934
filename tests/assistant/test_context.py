"""What the model is told: the file trimmed around the selection, the end of the last run's output,
the most recent turns, all within the budget; what the user typed is refused rather than cut."""

from __future__ import annotations

import pytest

from assistant_app.context import ChatRequest, LastRun, Turn, build_prompt, excerpt_around, fence
from assistant_app.errors import ContextTooLarge

BIG_FILE = "".join(f"line_{n:04d} = {n}\n" for n in range(1, 2001))  # about 32 000 characters


def test_a_small_file_is_sent_whole():
    prompt = build_prompt(
        request=ChatRequest(action="chat", message="What does it do?", path="a.py", file_content="x = 1\n"),
        history=[],
        max_chars=4000,
    )
    current = prompt.messages[-1]["content"]
    assert "```python\nx = 1\n```" in current
    assert "lines" not in current.split("\n")[0]
    assert current.endswith("What does it do?")


def test_a_large_file_is_trimmed_to_whole_lines_around_the_selection():
    selection = "line_1500 = 1500\nline_1501 = 1501\n"
    prompt = build_prompt(
        request=ChatRequest(
            action="explain", path="big.py", file_content=BIG_FILE, selection=selection, message=""
        ),
        history=[],
        max_chars=6000,
    )
    assert prompt.chars <= 6000
    current = prompt.messages[-1]["content"]
    assert "line_1500 = 1500" in current and "line_1499 = 1499" in current and "line_1502 = 1502" in current
    assert "line_0001" not in current and "line_2000" not in current
    assert "(lines 1" in current and "of 2000)" in current


def test_the_excerpt_is_centred_on_the_selection():
    part = excerpt_around(BIG_FILE, "line_1000 = 1000", 170)
    assert part.first_line < 1000 < part.last_line
    assert abs((1000 - part.first_line) - (part.last_line - 1000)) <= 1
    assert part.text.startswith(f"line_{part.first_line:04d}")
    assert len(part.text) <= 170


def test_the_end_of_the_run_output_is_kept_where_the_error_is():
    stderr = "noise\n" * 3000 + "Traceback...\nZeroDivisionError: division by zero\n"
    prompt = build_prompt(
        request=ChatRequest(
            action="fix",
            path="main.py",
            file_content="print(1/0)\n",
            last_run=LastRun(path="main.py", stdout="", stderr=stderr, exit_code=1),
        ),
        history=[],
        max_chars=5000,
    )
    assert prompt.chars <= 5000
    current = prompt.messages[-1]["content"]
    assert "ZeroDivisionError: division by zero" in current
    assert "exit code 1" in current
    assert "My last run of main.py failed with exit code 1" in prompt.user_text


def test_the_oldest_turns_go_first_when_the_conversation_is_long():
    history = [Turn("user" if n % 2 == 0 else "assistant", f"turn {n} " + "x" * 400) for n in range(40)]
    prompt = build_prompt(
        request=ChatRequest(action="chat", message="And now?"), history=history, max_chars=4000
    )
    assert prompt.chars <= 4000
    kept = [m["content"].split(" ")[1] for m in prompt.messages[1:-1]]
    assert kept and kept[-1] == "39"
    assert kept == [str(n) for n in range(40 - len(kept), 40)]


def test_a_question_and_selection_over_the_budget_are_refused_not_cut():
    with pytest.raises(ContextTooLarge) as refused:
        build_prompt(
            request=ChatRequest(action="explain", path="big.py", file_content=BIG_FILE, selection=BIG_FILE),
            history=[],
            max_chars=8000,
        )
    assert refused.value.status_code == 413 and refused.value.code == "context_too_large"
    assert "8000" in refused.value.detail


def test_code_containing_fences_stays_one_block():
    assert fence("a\n```\nb") == "````\na\n```\nb\n````"
