"""What a user asked for, for one task: the value the runner records, checks and submits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from providers.capabilities import NO_SETTINGS, ImageSettings
from providers.catalog import Catalog
from providers.types import GenerationRequest
from studio.ledger import JobRow, NewJob


@dataclass(frozen=True)
class JobSpec:
    """What the user asked for, for one task (a variant is one more JobSpec)."""

    model: str
    prompt: str
    reference_urls: tuple[str, ...] = ()
    reference_hashes: tuple[str, ...] = ()
    settings: ImageSettings = NO_SETTINGS
    # The generation whose result this one edits (its references include that result): the
    # link that makes edit chains.
    parent: str | None = None
    # More params to record with the job (an experiment's id and the cell's coordinates); they
    # never replace the params the runner itself records, and a re-run does not carry them.
    extra_params: Mapping[str, object] = field(default_factory=dict, hash=False)

    @classmethod
    def from_row(cls, row: JobRow) -> JobSpec:
        """The spec a ledger row was recorded from (reference URLs are not kept: they expire)."""
        return cls(
            model=row.model,
            prompt=row.prompt,
            reference_hashes=tuple(row.reference_hashes),
            settings=ImageSettings.from_mapping(row.params),
            parent=str(row.params["parent"]) if row.params.get("parent") else None,
        )

    def problems(self, catalog: Catalog) -> list[str]:
        return catalog.request_problems(
            self.model,
            prompt=self.prompt,
            reference_count=len(self.reference_urls),
            settings=self.settings,
        )

    def request(self, callback_url: str | None = None) -> GenerationRequest:
        return GenerationRequest(
            model=self.model,
            prompt=self.prompt,
            reference_urls=self.reference_urls,
            settings=self.settings,
            callback_url=callback_url,
        )

    def params(self) -> dict[str, object]:
        return dict(self.settings.as_dict())

    def new_job(
        self,
        job_id: str,
        *,
        owner: str,
        service: str,
        variant: int,
        offline: bool,
        key_source: str,
        generation: str = "",
        variants: int = 1,
    ) -> NewJob:
        """The ledger row for variant `variant` of `variants`, all of one `generation` (the jobs
        one press of Generate started; the page shows them as one card)."""
        return NewJob(
            job_id=job_id,
            owner=owner,
            service=service,
            model=self.model,
            prompt=self.prompt,
            params={
                **self.extra_params,
                **self.params(),
                "variant": variant,
                "variants": variants,
                "generation": generation or job_id,
                **({"parent": self.parent} if self.parent else {}),
                "offline": offline,
                # Keys are never stored: a restart must know whose key the task needs.
                "key_source": key_source,
            },
            reference_hashes=self.reference_hashes,
        )
