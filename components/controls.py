"""The generation form: model, prompt, references, settings, keys, buttons.

Everything a control offers comes from the catalog (models, settings, one key box per
service); `reshape` is the one place that turns a model into control updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from components.cards import pixel_size_words
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
    settings_box: gr.Group
    aspect_ratio: gr.Dropdown
    resolution: gr.Radio
    output_format: gr.Radio
    routing: gr.Radio
    pixel_size: gr.Markdown
    variants: gr.Slider
    generate: gr.Button
    stop: gr.Button
    running: gr.Markdown  # how many of the visitor's tasks run now, beside Generate
    left: gr.Markdown  # what is left on the studio's key for this visitor (the feed fills it)
    message: gr.Markdown  # what Generate said: started, or why not
    set_aside: gr.State  # references beyond the chosen model's cap, back when a model takes them
    set_aside_note: gr.Markdown
    parent: gr.State  # the job whose result the references hold (Edit this, Use as reference)
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


def _union(catalog: Catalog, setting: str) -> list[str]:
    """Every model's choices for `setting`, in catalog order. The controls start with all of
    them, so a value any model takes is never refused by the control itself (recall, a form
    restored from storage); `reshape` then shows the chosen model's."""
    seen: dict[str, None] = {}
    for spec in catalog.models.values():
        seen.update(dict.fromkeys(spec.choices(setting)))
    return list(seen)


def build_controls(catalog: Catalog) -> Controls:
    """The form, in the order the eye goes: what to make, how, Generate; then references and
    keys, which a first generation does not need."""
    spec = catalog.model(catalog.default_model)
    prompt = gr.Textbox(
        label="Prompt",
        lines=3,
        max_lines=10,
        placeholder="Describe the image. Ctrl+Enter (⌘+Enter) generates.",
        elem_id="prompt",
    )
    with gr.Row(equal_height=True):
        model = gr.Dropdown(
            choices=[(m.label, m.id) for m in catalog.models.values()],
            value=spec.id,
            label="Model",
            scale=3,
            elem_id="model",
        )
        variants = gr.Slider(
            1, VARIANTS_MAX, value=1, step=1, label="Variants", scale=2, elem_id="variants"
        )
    info = gr.Markdown(model_info(spec), elem_id="model-info")
    settings_box = gr.Group(visible=spec.takes_any_setting, elem_id="settings")
    with settings_box, gr.Row(equal_height=True):  # two rows of two: radios stay on one line
        aspect = gr.Dropdown(
            choices=_union(catalog, "aspect_ratio"),
            value=spec.defaults.aspect_ratio,
            label="Aspect ratio",
            visible=spec.takes("aspect_ratio"),
            allow_custom_value=True,  # the model's own check names a wrong value in a sentence
            min_width=110,
            elem_id="aspect-ratio",
        )
        resolution = gr.Radio(
            choices=_union(catalog, "resolution"),
            value=spec.defaults.resolution,
            label="Resolution",
            visible=spec.takes("resolution"),
            min_width=150,
            elem_id="resolution",
        )
    with settings_box, gr.Row(equal_height=True):
        output_format = gr.Radio(
            choices=_union(catalog, "output_format"),
            value=spec.defaults.output_format,
            label="Format",
            visible=spec.takes("output_format"),
            min_width=120,
            elem_id="output-format",
        )
        routing = gr.Radio(
            choices=_union(catalog, "routing"),
            value=spec.defaults.routing,
            label="Routing",
            visible=spec.takes("routing"),
            min_width=160,
            elem_id="routing",
        )
    pixel_size = gr.Markdown(pixel_size_words(spec, spec.defaults), elem_id="pixel-size")
    with gr.Row(equal_height=True, elem_id="actions"):
        generate = gr.Button("Generate", variant="primary", scale=3, elem_id="generate")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="stop")
    with gr.Row(elem_id="form-feedback"):
        running = gr.Markdown("", elem_id="running")
        left = gr.Markdown("", elem_id="left")
        message = gr.Markdown("", elem_id="form-message")
    references = gr.File(
        label=references_label(spec),
        file_count="multiple",
        file_types=["image", ".heic", ".heif"],
        allow_reordering=True,
        height=110,
        elem_id="references",
    )
    preview = gr.Gallery(
        label="Reference preview",
        columns=6,
        height=100,
        allow_preview=False,
        interactive=False,
        buttons=[],
        visible=False,
        elem_id="reference-preview",
    )
    aside_note = gr.Markdown("", elem_id="set-aside")
    with gr.Accordion("Reference links", open=False):
        urls = gr.Textbox(
            label="Reference image URLs (one http:// or https:// link per line)",
            lines=1,
            max_lines=5,
            elem_id="reference-urls",
        )
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
        model=model,
        model_info=info,
        prompt=prompt,
        references=references,
        reference_preview=preview,
        reference_urls=urls,
        settings_box=settings_box,
        aspect_ratio=aspect,
        resolution=resolution,
        output_format=output_format,
        routing=routing,
        pixel_size=pixel_size,
        variants=variants,
        generate=generate,
        stop=stop,
        running=running,
        left=left,
        message=message,
        set_aside=gr.State([]),
        set_aside_note=aside_note,
        parent=gr.State(None),
        keys=keys,
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
            gr.update(choices=list(spec.choices(name)), visible=True, value=value)
            if spec.takes(name)
            # Hidden, with its choices and value left alone: a setting the model does not take
            # is dropped when generating, and an emptied list would refuse a recalled value.
            else gr.update(visible=False)
            for name, value in kept.as_dict().items()
        ),
    )
