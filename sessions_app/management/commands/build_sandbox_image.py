from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core_app.errors import DomainError
from sandbox.builder import DEFAULT_BASE_IMAGE, DEFAULT_MIRROR, SandboxBuildError
from sessions_app.services import sandbox_image_build


class Command(BaseCommand):
    help = (
        "Build the sandbox image offline (debootstrap + docker import, then sandbox/Dockerfile) when "
        "it is missing. Does nothing when the image is present, unless --rebuild. Needs root and a "
        "Docker engine."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rebuild", action="store_true", help="Rebuild the base and the sandbox image even if present."
        )
        parser.add_argument(
            "--image", default=None, help="Image name:tag to build (default: VIBECODE_SANDBOX_IMAGE)."
        )
        parser.add_argument(
            "--base-image", default=DEFAULT_BASE_IMAGE, help="The debootstrap base image to make or reuse."
        )
        parser.add_argument("--mirror", default=DEFAULT_MIRROR, help="The Debian mirror debootstrap uses.")

    def handle(self, *args: Any, **options: Any) -> None:
        image: str = options["image"] or settings.VIBECODE_SANDBOX_IMAGE
        try:
            built = sandbox_image_build(
                image=image,
                base_image=options["base_image"],
                mirror=options["mirror"],
                rebuild=options["rebuild"],
                progress=self._progress,
            )
        except SandboxBuildError as exc:
            raise CommandError(f"could not build {image}: {exc}") from exc
        except DomainError as exc:  # the engine does not answer, or refuses
            raise CommandError(f"could not build {image}: {exc.detail}") from exc
        if built:
            self.stdout.write(self.style.SUCCESS(f"image {image} built"))
        else:
            self.stdout.write(f"image {image} already present (use --rebuild)")

    def _progress(self, line: str) -> None:
        # A build takes minutes: show each step as it happens, not when the buffer fills.
        self.stdout.write(line)
        self.stdout.flush()
