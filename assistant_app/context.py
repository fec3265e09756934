"""What the model is told: pure functions from the user's request and the conversation so far to
the provider's messages, within a character budget (``VIBECODE_ASSISTANT_MAX_CONTEXT_CHARS``).

What the user typed and selected is never trimmed: when it alone is over the budget the request
is refused (``ContextTooLarge``, 413). The rest is trimmed to fit, in this order of priority: the
last run's output (its end, where errors are), the current file (a window of whole lines around
the selection) and the conversation so far (its most recent turns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from assistant_app.errors import ContextTooLarge
from assistant_app.providers.base import ChatMessage

SYSTEM_PROMPT = (
    "You are the coding assistant inside VibeCode, a browser IDE. Be concise and concrete. "
    "Put code in fenced Markdown code blocks with a language tag. When you correct a file, give "
    "the whole corrected file in one code block."
)
# Headings, fences and labels around the pieces of context.
OVERHEAD_CHARS = 400

LANGUAGES = {
    ".py": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript", ".sh": "bash",
    ".c": "c", ".h": "c", ".cpp": "cpp", ".go": "go", ".rs": "rust", ".java": "java", ".rb": "ruby",
    ".html": "html", ".css": "css", ".json": "json", ".md": "markdown", ".sql": "sql", ".yaml": "yaml",
    ".yml": "yaml", ".toml": "toml",
}  # fmt: skip


@dataclass(frozen=True)
class LastRun:
    path: str
    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool = False


@dataclass(frozen=True)
class ChatRequest:
    action: str  # "chat", "explain" or "fix"
    message: str = ""
    path: str = ""
    file_content: str = ""
    selection: str = ""
    last_run: LastRun | None = None


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Prompt:
    messages: list[ChatMessage]
    user_text: str  # the question as stored in the conversation and shown to the user
    chars: int


@dataclass(frozen=True)
class Excerpt:
    text: str
    first_line: int
    last_line: int
    total_lines: int

    @property
    def complete(self) -> bool:
        return self.first_line <= 1 and self.last_line >= self.total_lines


def language_of(path: str) -> str:
    return LANGUAGES.get(PurePosixPath(path).suffix.lower(), "")


def fence(text: str, language: str = "") -> str:
    # A longer fence than any run of backticks inside, so that code with ``` stays one block.
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{language}\n{text.rstrip(chr(10))}\n{ticks}"


def excerpt_around(text: str, selection: str, budget: int) -> Excerpt:
    """At most ``budget`` characters of whole lines of ``text``, centred on ``selection`` (on the
    top of the file when there is none, or it is not found)."""
    lines = text.splitlines(keepends=True)
    total = len(lines)
    if len(text) <= budget:
        return Excerpt(text, 1, total, total)
    at = text.find(selection) if selection.strip() else -1
    first = text.count("\n", 0, at) if at >= 0 else 0
    last = text.count("\n", 0, at + len(selection.rstrip("\n"))) if at >= 0 else 0
    size = sum(len(line) for line in lines[first : last + 1])
    if size > budget:  # the selected lines alone are over: their start, cut at the budget
        return Excerpt("".join(lines[first : last + 1])[:budget], first + 1, last + 1, total)
    low, high = first, last
    grew = True
    while grew:
        grew = False
        if low > 0 and size + len(lines[low - 1]) <= budget:
            low -= 1
            size += len(lines[low])
            grew = True
        if high < total - 1 and size + len(lines[high + 1]) <= budget:
            high += 1
            size += len(lines[high])
            grew = True
    return Excerpt("".join(lines[low : high + 1]), low + 1, high + 1, total)


def tail(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    return "…" + text[len(text) - budget + 1 :] if budget > 1 else ""


def user_text_for(request: ChatRequest) -> str:
    """The user's question as the conversation keeps it."""
    where = f" from {request.path}" if request.path else ""
    extra = f"\n\n{request.message.strip()}" if request.message.strip() else ""
    if request.action == "explain":
        code = request.selection if request.selection.strip() else request.file_content
        return f"Explain this code{where}:\n\n{fence(code, language_of(request.path))}{extra}"
    if request.action == "fix":
        run = request.last_run
        target = f" of {run.path}" if run and run.path else where.replace(" from ", " of ")
        outcome = (
            "timed out" if run and run.timed_out else f"failed with exit code {run.exit_code}" if run else ""
        )
        return f"My last run{target} {outcome}. Find the cause and give the corrected code.{extra}"
    return request.message.strip()


def _run_block(run: LastRun, budget: int) -> str:
    outcome = "timed out" if run.timed_out else f"exit code {run.exit_code}"
    header = f"Output of the last run of {run.path or 'the program'} ({outcome}):"
    # stderr is where errors are: it gets its full share first, stdout what is left.
    err = tail(run.stderr, budget)
    out = tail(run.stdout, max(0, budget - len(err)))
    parts = [header]
    if out:
        parts.append("stdout:\n" + fence(out))
    if err:
        parts.append("stderr:\n" + fence(err))
    if not out and not err:
        parts.append("(no output)")
    return "\n".join(parts)


def build_prompt(*, request: ChatRequest, history: Sequence[Turn], max_chars: int) -> Prompt:
    user_text = user_text_for(request)
    show_selection = request.action != "explain" and bool(request.selection.strip())
    fixed = len(SYSTEM_PROMPT) + len(user_text) + OVERHEAD_CHARS
    if show_selection:
        fixed += len(request.selection)
    if fixed > max_chars:
        raise ContextTooLarge(
            f"The question and the selected code come to {fixed} characters; the assistant takes at "
            f"most {max_chars}. Select less code or ask a shorter question.",
            limit=max_chars,
        )
    room = max_chars - fixed
    blocks: list[str] = []

    run = request.last_run
    run_text = ""
    if run is not None and request.action != "explain":
        run_text = _run_block(run, min(len(run.stdout) + len(run.stderr), room // 4))
        room -= len(run_text)

    file_text = ""
    if request.file_content and not (request.action == "explain" and not request.selection.strip()):
        part = excerpt_around(request.file_content, request.selection, max(0, room * 2 // 3))
        if part.text:
            where = (
                "" if part.complete else f" (lines {part.first_line}-{part.last_line} of {part.total_lines})"
            )
            file_text = (
                f"The file open in the editor: {request.path or 'untitled'}{where}\n"
                f"{fence(part.text, language_of(request.path))}"
            )
            room -= len(file_text)

    if file_text:
        blocks.append(file_text)
    if show_selection:
        blocks.append(f"Selected in the editor:\n{fence(request.selection, language_of(request.path))}")
    if run_text:
        blocks.append(run_text)
    blocks.append(user_text)
    current = "\n\n".join(blocks)

    kept: list[Turn] = []
    for turn in reversed(history):  # the most recent turns that fit
        if len(turn.content) > room:
            break
        kept.append(turn)
        room -= len(turn.content)
    kept.reverse()

    messages: list[ChatMessage] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for turn in kept:
        messages.append(
            {"role": "assistant" if turn.role == "assistant" else "user", "content": turn.content}
        )
    messages.append({"role": "user", "content": current})
    return Prompt(messages=messages, user_text=user_text, chars=sum(len(m["content"]) for m in messages))
