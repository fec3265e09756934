from __future__ import annotations

from rest_framework import serializers

from workspace_app.paths import MAX_PATH_CHARS


def PathField(**kwargs: object) -> serializers.CharField:
    """A workspace path. Its safety is checked by workspace_app.paths in the services, so that
    every caller gets the same refusals; here only its size is bounded."""
    return serializers.CharField(
        max_length=MAX_PATH_CHARS * 2, trim_whitespace=False, allow_blank=True, **kwargs
    )


class EntryOutput(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField()
    type = serializers.ChoiceField(choices=["file", "directory", "symlink"])
    size = serializers.IntegerField()
    mtime = serializers.FloatField()


class ListingOutput(serializers.Serializer):
    path = serializers.CharField(allow_blank=True)
    entries = EntryOutput(many=True)
    truncated = serializers.BooleanField(
        default=False, help_text="More than 10,000 entries: the rest is not shown."
    )


class FileContentOutput(serializers.Serializer):
    path = serializers.CharField()
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)
    encoding = serializers.ChoiceField(choices=["utf-8", "base64"])
    size = serializers.IntegerField()
    mtime = serializers.FloatField()
    etag = serializers.CharField()


class FileSaveInput(serializers.Serializer):
    path = PathField()
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)
    encoding = serializers.ChoiceField(choices=["utf-8", "base64"], default="utf-8")
    etag = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=64)


class SavedOutput(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    mtime = serializers.FloatField()
    etag = serializers.CharField()


class CreateInput(serializers.Serializer):
    path = PathField()
    type = serializers.ChoiceField(choices=["file", "directory"])


class MoveInput(serializers.Serializer):
    # "from" is a Python keyword, hence the explicit field names.
    def get_fields(self):  # type: ignore[no-untyped-def]
        return {"from": PathField(), "to": PathField()}


class SearchOutput(serializers.Serializer):
    class Match(serializers.Serializer):
        path = serializers.CharField()
        line = serializers.IntegerField()
        text = serializers.CharField(allow_blank=True)

    matches = Match(many=True)
    truncated = serializers.BooleanField()


class _SearchOptions(serializers.Serializer):
    query = serializers.CharField(max_length=1000, trim_whitespace=False)
    regex = serializers.BooleanField(default=False)
    match_case = serializers.BooleanField(default=False)
    whole_word = serializers.BooleanField(default=False)


class TextSearchInput(_SearchOptions):
    include = serializers.ListField(
        child=serializers.CharField(max_length=300), required=False, max_length=50, default=list
    )
    exclude = serializers.ListField(
        child=serializers.CharField(max_length=300), required=False, max_length=50, default=list
    )
    path = PathField(required=False, default="")


class TextSearchOutput(serializers.Serializer):
    class TextMatch(serializers.Serializer):
        path = serializers.CharField()
        line = serializers.IntegerField()
        text = serializers.CharField(allow_blank=True, trim_whitespace=False)
        ranges = serializers.ListField(
            child=serializers.ListField(child=serializers.IntegerField()),
            help_text="[start, end) of each match in text, in characters.",
        )
        offset = serializers.IntegerField(help_text="Characters of the line cut before text.")

    matches = TextMatch(many=True)
    truncated = serializers.BooleanField()
    reason = serializers.CharField(
        allow_null=True, help_text="matches, per_file, time, long_lines or interrupted; null when complete."
    )
    etags = serializers.DictField(
        child=serializers.CharField(), help_text="Each file's etag as the search saw it (for /replace)."
    )


class QuickOpenOutput(serializers.Serializer):
    files = serializers.ListField(child=serializers.CharField())
    truncated = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True)


class ReplaceFileInput(serializers.Serializer):
    path = PathField()
    etag = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")


class ReplaceInput(_SearchOptions):
    replace = serializers.CharField(max_length=10000, allow_blank=True, trim_whitespace=False)
    files = ReplaceFileInput(many=True)
    apply = serializers.BooleanField(default=False)


class ReplaceOutput(serializers.Serializer):
    class ReplacedFile(serializers.Serializer):
        class Change(serializers.Serializer):
            line = serializers.IntegerField()
            before = serializers.CharField(allow_blank=True, trim_whitespace=False)
            after = serializers.CharField(allow_blank=True, trim_whitespace=False)

        path = serializers.CharField()
        status = serializers.IntegerField(help_text="200, or this file's error: 409 conflict, 415, 404...")
        code = serializers.CharField(allow_blank=True)
        detail = serializers.CharField(allow_blank=True)
        etag = serializers.CharField(required=False, allow_blank=True)
        lines = serializers.IntegerField()
        changes = Change(many=True, required=False)

    files = ReplacedFile(many=True)
    applied = serializers.BooleanField()
    lines = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    failed = serializers.IntegerField()


class ExecInput(serializers.Serializer):
    argv = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, max_length=65536), required=False, max_length=1000
    )
    command = serializers.CharField(required=False, trim_whitespace=False, max_length=65536)
    timeout = serializers.FloatField(required=False)
    stdin = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=1024 * 1024
    )
    cwd = PathField(required=False)

    def validate(self, data):  # type: ignore[no-untyped-def]
        if ("argv" in data) == ("command" in data):
            raise serializers.ValidationError("Give either argv (a list) or command (a string).")
        return data


class RunInput(serializers.Serializer):
    path = PathField()
    args = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False), required=False, max_length=1000
    )
    stdin = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=1024 * 1024
    )
    timeout = serializers.FloatField(required=False)


class ExecOutput(serializers.Serializer):
    exit_code = serializers.IntegerField(allow_null=True)
    stdout = serializers.CharField(allow_blank=True, trim_whitespace=False)
    stderr = serializers.CharField(allow_blank=True, trim_whitespace=False)
    duration_ms = serializers.IntegerField()
    timed_out = serializers.BooleanField()
    truncated = serializers.BooleanField()
    oom_killed = serializers.BooleanField()
    max_rss_kb = serializers.IntegerField(allow_null=True)


# --- streaming runs ---------------------------------------------------------------------------


class RunStartInput(serializers.Serializer):
    path = PathField(required=False, help_text="A file to run by its extension (.py, .js, .sh, .c).")
    args = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, max_length=65536), required=False, max_length=1000
    )
    argv = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, max_length=65536),
        required=False,
        max_length=1000,
        help_text="A command to run instead of a file (no shell).",
    )

    def validate(self, data):  # type: ignore[no-untyped-def]
        if ("path" in data) == ("argv" in data):
            raise serializers.ValidationError("Give either path (a file) or argv (a command).")
        return data


class RunInfoOutput(serializers.Serializer):
    run_id = serializers.CharField()
    label = serializers.CharField(allow_blank=True)
    argv = serializers.ListField(child=serializers.CharField(allow_blank=True, trim_whitespace=False))
    started_at = serializers.FloatField()
    running = serializers.BooleanField()
    first_offset = serializers.IntegerField(help_text="Output before this offset fell out of the buffer.")
    end_offset = serializers.IntegerField(help_text="Bytes of output so far.")
    exit_code = serializers.IntegerField(allow_null=True, required=False)
    timed_out = serializers.BooleanField(required=False)
    stopped = serializers.BooleanField(required=False)
    oom_killed = serializers.BooleanField(required=False)
    duration_ms = serializers.IntegerField(required=False)
    max_rss_kb = serializers.IntegerField(allow_null=True, required=False)


class RunListOutput(serializers.Serializer):
    runs = RunInfoOutput(many=True)


class RunInputInput(serializers.Serializer):
    text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=64 * 1024)
    eof = serializers.BooleanField(default=False, help_text="Close the program's stdin after the text.")


class RunInputOutput(serializers.Serializer):
    run_id = serializers.CharField()
    accepted = serializers.IntegerField()
