"""The generation form: model, prompt, references, settings, keys, buttons.

Everything a control offers comes from the catalog (models, settings, one key box per
service); `reshape` is the one place that turns a model into control updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from providers.capabilities import ImageSettings, ModelSpec
from providers.catalog import Catalog, ServiceDescriptor

VARIANTS_MAX = 4


@dataclass(frozen=True)
class Controls:
    model: gr.Dropdown
    model_info: gr.Markdown
    prompt: gr.Textbox
    references: gr.File
    reference_preview: gr.Gallery
    reference_urls: gr.Textbox
    settings_box: gr.Column
    aspect_ratio: gr.Dropdown
    resolution: gr.Radio
    output_format: gr.Radio
    routing: gr.Radio
    variants: gr.Slider
    generate: gr.Button
    stop: gr.Button
    keys: dict[str, gr.Textbox]  # by service id

    @property
    def setting_boxes(self) -> list[gr.components.Component]:
        return [self.aspect_ratio, self.resolution, self.output_format, self.routing]

    @property
    def key_boxes(self) -> list[gr.Textbox]:
        return list(self.keys.values())


def references_label(spec: ModelSpec) -> str:
    return f"Reference images (up to {spec.max_references})"


def model_info(spec: ModelSpec) -> str:
    return f"*{spec.description}*"


def key_label(service: ServiceDescriptor) -> str:
    models = ", ".join(m.label for m in service.models)
    return f"{service.vendor} key ({models})"


def build_controls(catalog: Catalog) -> Controls:
    spec = catalog.model(catalog.default_model)
    model = gr.Dropdown(
        choices=[(m.label, m.id) for m in catalog.models.values()],
        value=spec.id,
        label="Model",
        elem_id="model",
    )
    info = gr.Markdown(model_info(spec), elem_id="model-info")
    prompt = gr.Textbox(
        label="Prompt",
        lines=4,
        max_lines=12,
        placeholder="Describe the image. Ctrl+Enter (⌘+Enter) generates.",
        elem_id="prompt",
    )
    references = gr.File(
        label=references_label(spec),
        file_count="multiple",
        file_types=["image", ".heic", ".heif"],
        allow_reordering=True,
        height=140,
        elem_id="references",
    )
    preview = gr.Gallery(
        label="Reference preview",
        columns=5,
        height=120,
        allow_preview=False,
        interactive=False,
        buttons=[],
        elem_id="reference-preview",
    )
    urls = gr.Textbox(
        label="Reference image URLs (optional, one https URL per line)",
        lines=1,
        max_lines=5,
        elem_id="reference-urls",
    )
    settings_box = gr.Column(visible=spec.takes_any_setting, elem_id="settings")
    with settings_box, gr.Row():
        aspect = gr.Dropdown(
            choices=list(spec.aspect_ratios),
            value=spec.defaults.aspect_ratio,
            label="Aspect ratio",
            visible=spec.takes("aspect_ratio"),
            elem_id="aspect-ratio",
        )
        resolution = gr.Radio(
            choices=list(spec.resolutions),
            value=spec.defaults.resolution,
            label="Resolution",
            visible=spec.takes("resolution"),
            elem_id="resolution",
        )
    with settings_box, gr.Row():
        output_format = gr.Radio(
            choices=list(spec.output_formats),
            value=spec.defaults.output_format,
            label="Output format",
            visible=spec.takes("output_format"),
            elem_id="output-format",
        )
        routing = gr.Radio(
            choices=list(spec.routings),
            value=spec.defaults.routing,
            label="Routing",
            info="Which provider runs the task: auto, the cheaper one (value) or the official one",
            visible=spec.takes("routing"),
            elem_id="routing",
        )
    variants = gr.Slider(1, VARIANTS_MAX, value=1, step=1, label="Variants", elem_id="variants")
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", elem_id="generate")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
    with gr.Accordion("Service keys", open=False):
        gr.Markdown(
            "Keys stay in this browser and are sent only with a generation. "
            "Without a key, a service runs as an offline preview."
        )
        keys = {
            service.id: gr.Textbox(
                label=key_label(service),
                type="password",
                placeholder=f"set {service.key_env} or paste a key ({service.key_hint})"
                if service.key_hint
                else f"set {service.key_env} or paste a key",
                elem_id=service.key_field.replace("_", "-"),
            )
            for service in catalog.services
        }
    return Controls(
        model,
        info,
        prompt,
        references,
        preview,
        urls,
        settings_box,
        aspect,
        resolution,
        output_format,
        routing,
        variants,
        generate,
        stop,
        keys,
    )


def settings_visibility(spec: ModelSpec) -> dict:
    """Hide the settings box when the model takes none (it would leave an empty gap)."""
    return gr.update(visible=spec.takes_any_setting)


def reshape(spec: ModelSpec, current: ImageSettings) -> tuple[dict, ...]:
    """Control updates for `spec`: what it cannot take is hidden, what it takes keeps the
    current value where allowed, else its default."""
    kept = spec.settings_for(current)
    return (
        gr.update(value=model_info(spec)),
        gr.update(label=references_label(spec)),
        *(
            gr.update(choices=list(spec.choices(name)), visible=spec.takes(name), value=value)
            for name, value in kept.as_dict().items()
        ),
    )
