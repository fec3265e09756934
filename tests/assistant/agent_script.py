"""The scripted agent turn the tests replay in every wire format: create two files, run the tests
(they fail), read the error's file, fix it, run again (they pass), then sum up."""

from __future__ import annotations

from tests.assistant.servers import Reply

CALC_BUGGY = "def add(a, b):\n    return a - b\n"
CALC_FIXED = "def add(a, b):\n    return a + b\n"
TEST_CALC = (
    "from calc import add\n\nassert add(2, 3) == 5, f'add(2, 3) is {add(2, 3)}'\nprint('all tests pass')\n"
)
SUMMARY = "I created calc.py and test_calc.py, found the bug in add and fixed it: the tests pass."

TURN = [
    Reply(
        "I'll create the module and its test.",
        (
            ("write_file", {"path": "calc.py", "content": CALC_BUGGY}),
            ("write_file", {"path": "test_calc.py", "content": TEST_CALC}),
        ),
    ),
    Reply("", (("run", {"command": "python3 test_calc.py", "timeout": 30}),)),
    Reply("The test fails; let me read calc.py.", (("read_file", {"path": "calc.py"}),)),
    Reply("", (("edit_file", {"path": "calc.py", "search": "return a - b", "replace": "return a + b"}),)),
    Reply("", (("run", {"command": "python3 test_calc.py"}),)),
    Reply(SUMMARY),
]
