"""What each model can take: the one table that the UI controls, request checks and tests read.

Pixel sizes are not documented by either service. We use the sizes Gemini-3-class image models
produce (1K is about 1024 px on a square's side, 2K and 4K are 2x and 4x); the simulator renders
at these sizes and the studio shows them next to the aspect-ratio picker.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Service(StrEnum):
    GEMPIX2 = "gempix2"  # defapi.org
    NANO_BANANA_PRO = "nano_banana_pro"  # apixo.ai


# 1K pixel sizes per aspect ratio; 2K and 4K scale both sides by 2 and 4.
_SIZES_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (848, 1264),
    "3:2": (1264, 848),
    "3:4": (896, 1200),
    "4:3": (1200, 896),
    "4:5": (928, 1152),
    "5:4": (1152, 928),
    "9:16": (768, 1376),
    "16:9": (1376, 768),
    "21:9": (1584, 672),
}
_RESOLUTION_SCALE = {"1K": 1, "2K": 2, "4K": 4}


@dataclass(frozen=True)
class ModelSpec:
    """Capabilities of one model. Empty tuples mean the API has no such parameter."""

    id: str
    label: str
    description: str
    service: Service
    max_references: int
    aspect_ratios: tuple[str, ...] = ()
    resolutions: tuple[str, ...] = ()
    output_formats: tuple[str, ...] = ()
    routings: tuple[str, ...] = ()
    # Typical generation time in seconds (earliest, latest) per resolution; "" keys models
    # without a resolution parameter. The poll schedule concentrates its requests in this window.
    expected_seconds: dict[str, tuple[float, float]] | None = None

    @property
    def takes_aspect_ratio(self) -> bool:
        return bool(self.aspect_ratios)

    @property
    def takes_resolution(self) -> bool:
        return bool(self.resolutions)

    @property
    def takes_output_format(self) -> bool:
        return bool(self.output_formats)

    @property
    def takes_routing(self) -> bool:
        return bool(self.routings)

    @property
    def default_aspect_ratio(self) -> str | None:
        return self.aspect_ratios[0] if self.aspect_ratios else None

    @property
    def default_resolution(self) -> str | None:
        return self.resolutions[0] if self.resolutions else None

    @property
    def default_output_format(self) -> str | None:
        return self.output_formats[0] if self.output_formats else None

    @property
    def default_routing(self) -> str | None:
        return self.routings[0] if self.routings else None

    def expected_window(self, resolution: str | None) -> tuple[float, float]:
        table = self.expected_seconds or {}
        return table.get(resolution or "", table.get("", (10.0, 30.0)))

    def pixel_size(self, aspect_ratio: str | None, resolution: str | None) -> tuple[int, int]:
        width, height = _SIZES_1K.get(aspect_ratio or "1:1", _SIZES_1K["1:1"])
        scale = _RESOLUTION_SCALE.get(resolution or "1K", 1)
        return width * scale, height * scale


_GEMPIX2_WINDOW = {"": (8.0, 20.0)}

MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="google/gempix2",
            label="GemPix2 (Nano Banana)",
            description="Nano Banana via defapi: fast edits and blends, up to 4 references.",
            service=Service.GEMPIX2,
            max_references=4,
            expected_seconds=_GEMPIX2_WINDOW,
        ),
        ModelSpec(
            id="google/gemini-2.5-flash-image",
            label="Gemini 2.5 Flash Image",
            description="Gemini 2.5 Flash Image via defapi: quick drafts, up to 4 references.",
            service=Service.GEMPIX2,
            max_references=4,
            expected_seconds=_GEMPIX2_WINDOW,
        ),
        ModelSpec(
            id="nano-banana-pro",
            label="Nano Banana Pro",
            description="apixo: up to 4K, ten aspect ratios, up to 10 references.",
            service=Service.NANO_BANANA_PRO,
            max_references=10,
            aspect_ratios=("1:1", "16:9", "9:16", "21:9", "3:2", "2:3", "4:3", "3:4", "5:4", "4:5"),
            resolutions=("1K", "2K", "4K"),
            output_formats=("png", "jpeg"),
            routings=("auto", "value", "official"),
            # The seed's timing advice: 1K ~20-30 s, 2K ~30-45 s, 4K ~45-60 s.
            expected_seconds={"1K": (20.0, 30.0), "2K": (30.0, 45.0), "4K": (45.0, 60.0)},
        ),
    )
}

DEFAULT_MODEL = "nano-banana-pro"


def model_spec(model_id: str) -> ModelSpec:
    """The spec of `model_id`; KeyError names the known models."""
    try:
        return MODELS[model_id]
    except KeyError:
        known = ", ".join(MODELS)
        raise KeyError(f"unknown model {model_id!r}; known models: {known}") from None


def request_problems(
    model_id: str,
    *,
    prompt: str,
    reference_count: int = 0,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    output_format: str | None = None,
    routing: str | None = None,
) -> list[str]:
    """Plain sentences saying what `model_id` cannot take; empty when the request fits."""
    if model_id not in MODELS:
        return [f"Unknown model {model_id!r}; choose one of: {', '.join(MODELS)}."]
    spec = MODELS[model_id]
    problems = []
    if not prompt.strip():
        problems.append("Write a prompt first.")
    if reference_count > spec.max_references:
        problems.append(
            f"{spec.label} takes at most {spec.max_references} reference images "
            f"({reference_count} given)."
        )
    for name, value, allowed in (
        ("aspect ratio", aspect_ratio, spec.aspect_ratios),
        ("resolution", resolution, spec.resolutions),
        ("output format", output_format, spec.output_formats),
        ("routing", routing, spec.routings),
    ):
        if value and value not in allowed:
            choices = ", ".join(allowed) if allowed else "none (the API has no such setting)"
            problems.append(f"{spec.label} cannot take {name} {value!r}; choices: {choices}.")
    return problems
