"""MMMU-Pro: standard (10 options) + vision (MMMU/MMMU_Pro; benchmarks.md section 7).

Official scoring (`mmmu-pro/evaluate.py`): a unique option letter after the last "Answer:", else
MMMU's parser with the `X ` and `X.` tests (and its random fallback, here seeded per item).
Options can number up to 12, so letters come from the option count. Overall = mean of the two
settings' accuracies (not pooled). Item ids are `<id>:standard10` or `<id>:vision`.

The settings are loaded interleaved (standard item 1, vision item 1, standard item 2, ...), so the
first N items of a `--limit` run score both settings. The summary's `headline` says what `accuracy`
is: `mean_of_settings` when both settings were scored, else the one setting's name (`standard10` or
`vision`): a one-setting number is never called the two-setting mean.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from prcli.eval.base import LETTERS, Benchmark, Hub, Sample, accuracy_table, literal_list, pct
from prcli.eval.mmmu import DISCIPLINE, score_mmmu_style

SETTINGS = {"standard (10 options)": "standard10", "vision": "vision"}
COT_SUFFIX = (
    "Answer the preceding multiple choice question. The last line of your response should be of the following "
    "format: 'Answer: $LETTER' (without quotes) where LETTER is one of options. Think step by step before answering."
)
VISION_COT = (
    "Write out the multiple-choice question in the image and then solve it. The last line of your response should "
    "be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of options. Think step by "
    "step before answering."
)


@Benchmark.register
class MMMUPro(Benchmark):
    name = "mmmu_pro"
    id_field = "id"
    title = "MMMU-Pro (standard 10 options + vision)"
    hub = Hub(
        "MMMU/MMMU_Pro", tuple(SETTINGS), "test", ("image", *(f"image_{i}" for i in range(1, 8))), items=3460
    )
    breakdown_fields: ClassVar[tuple[str, ...]] = ("setting", "discipline", "subject", "topic_difficulty")
    placeholder = r"<image (\d+)>"

    def load(self, data: Path | None = None, *, decode_images: bool = True) -> Iterator[Sample]:
        if data is None:
            streams = [self._load_hub_config(config, decode_images) for config in self.hub.configs]
        else:  # a local file may hold both settings in any order: one pass over it per setting
            streams = [self._local_setting(data, s, decode_images) for s in SETTINGS.values()]
        for group in itertools.zip_longest(*streams):
            yield from (sample for sample in group if sample is not None)

    def _local_setting(self, data: Path, setting: str, decode_images: bool) -> Iterator[Sample]:
        return (s for s in super().load(data, decode_images=decode_images) if s.raw["setting"] == setting)

    def from_row(self, row: dict[str, Any], config: str | None = None) -> Sample:
        setting = SETTINGS.get(config or "") or (config if config in SETTINGS.values() else None)
        if setting is None:
            setting = row.get("setting") or (
                "vision" if "image" in row and "question" not in row else "standard10"
            )
        options = [str(o) for o in literal_list(row.get("options"))]
        images = [row.get("image")] if setting == "vision" else [row.get(f"image_{i}") for i in range(1, 8)]
        subject = row.get("subject") or ""
        return Sample(
            id=f"{row['id']}:{setting}",
            question=row.get("question", ""),
            images=images,
            answer=str(row["answer"]),
            choices=options,
            fields={
                "setting": setting,
                "subject": subject,
                "discipline": DISCIPLINE.get(subject.replace(" ", "_")),
                "topic_difficulty": row.get("topic_difficulty"),
                "native_id": str(row["id"]),
            },
            raw={"question_type": "multiple-choice", "setting": setting},
        )

    def question_text(self, sample: Sample) -> str:
        if sample.raw["setting"] == "vision":
            return "Answer the multiple-choice question shown in the image."
        options = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(sample.choices or []))
        return f"{sample.question}\n{options}"

    def official_prompt(self, sample: Sample) -> str:
        if sample.raw["setting"] == "vision":
            return VISION_COT
        return f"{self.question_text(sample)}\n{COT_SUFFIX}"

    def score_input(self, sample: Sample) -> dict[str, Any]:
        return {"id": sample.id, "answer": sample.answer, "choices": sample.choices, **sample.raw}

    @staticmethod
    def score(task: dict[str, Any], response: str) -> dict[str, Any]:
        return score_mmmu_style(task, response if isinstance(response, str) else "", pro=True)

    def aggregate(self, items: Any) -> dict[str, Any]:
        items = list(items)
        summary = super().aggregate(items)
        settings = summary["breakdown"].get("setting", {})
        if settings:  # MMMU-Pro (overall) is the mean of the settings, not the pooled accuracy
            summary["accuracy"] = round(sum(v["accuracy"] for v in settings.values()) / len(settings), 2)
            summary["headline"] = (
                "mean_of_settings" if len(settings) == len(SETTINGS) else next(iter(settings))
            )
            summary["settings"] = {k: v["accuracy"] for k, v in settings.items()}
            summary["pooled_accuracy"] = pct(*accuracy_table(items, ())[:2])
        return summary
