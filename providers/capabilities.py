"""What a model can take: its capabilities and the one value for its image settings.

Pixel sizes are not documented by either service. We use the sizes Gemini-3-class image models
produce (1K is about 1024 px on a square's side, 2K and 4K are 2x and 4x); the simulator renders
at these sizes and the studio shows them next to the aspect-ratio picker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

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
class ImageSettings:
    """The settings a generation may carry; None means "not given" (or not taken by the model)."""

    aspect_ratio: str | None = None
    resolution: str | None = None
    output_format: str | None = None
    routing: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> ImageSettings:
        """The settings found in `values` (a stored params dict, a form); other keys are ignored."""
        picked = {name: values.get(name) for name in SETTING_NAMES}
        return cls(**{k: str(v) if v not in (None, "") else None for k, v in picked.items()})

    def as_dict(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in SETTING_NAMES}

    def given(self) -> dict[str, str]:
        """Only the settings that have a value."""
        return {k: v for k, v in self.as_dict().items() if v is not None}


NO_SETTINGS = ImageSettings()
SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ImageSettings))
SETTING_WORDS = {name: name.replace("_", " ") for name in SETTING_NAMES}


@dataclass(frozen=True)
class ModelSpec:
    """Capabilities of one model. Empty tuples mean the API has no such parameter."""

    id: str
    label: str
    description: str
    service: str  # the id of the service that runs it
    max_references: int
    aspect_ratios: tuple[str, ...] = ()
    resolutions: tuple[str, ...] = ()
    output_formats: tuple[str, ...] = ()
    routings: tuple[str, ...] = ()
    # Typical generation time in seconds (earliest, latest) per resolution; "" keys models
    # without a resolution parameter. The poll schedule concentrates its requests in this window.
    expected_seconds: Mapping[str, tuple[float, float]] | None = None

    def choices(self, setting: str) -> tuple[str, ...]:
        """The values the model takes for `setting` (one of SETTING_NAMES), first = default."""
        return {
            "aspect_ratio": self.aspect_ratios,
            "resolution": self.resolutions,
            "output_format": self.output_formats,
            "routing": self.routings,
        }[setting]

    def takes(self, setting: str) -> bool:
        return bool(self.choices(setting))

    @property
    def takes_any_setting(self) -> bool:
        return any(self.takes(name) for name in SETTING_NAMES)

    @property
    def defaults(self) -> ImageSettings:
        return ImageSettings(**{n: (self.choices(n) or (None,))[0] for n in SETTING_NAMES})

    def settings_for(self, wanted: ImageSettings) -> ImageSettings:
        """What this model takes of `wanted`: its values where allowed, else the model's defaults;
        settings the model has no parameter for are dropped (None)."""
        values = {}
        for name in SETTING_NAMES:
            allowed = self.choices(name)
            value = getattr(wanted, name)
            values[name] = value if value in allowed else (allowed[0] if allowed else None)
        return replace(wanted, **values)

    def setting_problems(self, settings: ImageSettings) -> list[str]:
        """A plain sentence for each given setting the model cannot take."""
        problems = []
        for name, value in settings.given().items():
            allowed = self.choices(name)
            if value not in allowed:
                options = ", ".join(allowed) if allowed else "none (the API has no such setting)"
                problems.append(
                    f"{self.label} cannot take {SETTING_WORDS[name]} {value!r}; choices: {options}."
                )
        return problems

    def expected_window(self, resolution: str | None) -> tuple[float, float]:
        table = self.expected_seconds or {}
        return table.get(resolution or "", table.get("", (10.0, 30.0)))

    def pixel_size(self, aspect_ratio: str | None, resolution: str | None) -> tuple[int, int]:
        width, height = _SIZES_1K.get(aspect_ratio or "1:1", _SIZES_1K["1:1"])
        scale = _RESOLUTION_SCALE.get(resolution or "1K", 1)
        return width * scale, height * scale
