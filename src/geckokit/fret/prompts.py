"""Versioned prompt templates (TOML files) for the FRet stages."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from geckokit.llm.base import Message


@dataclass(frozen=True)
class TaskType:
    name: str
    hint: str


@dataclass(frozen=True)
class Example:
    task_type: str
    title: str
    passage: str
    task: str
    query: str


@dataclass(frozen=True)
class GeneratePrompt:
    """The FRet step 1 prompt: a system message, few-shot turns and the per-passage turn."""

    version: str
    system: str
    user: str
    task_types: tuple[TaskType, ...]
    examples: tuple[Example, ...]
    sha256: str
    source: str

    def task_type(self, name: str) -> TaskType:
        for t in self.task_types:
            if t.name == name:
                return t
        raise ValueError(
            f"unknown task type {name!r}; the prompt defines: {', '.join(t.name for t in self.task_types)}"
        )

    def _user_turn(self, task_type: str, title: str, passage: str) -> str:
        t = self.task_type(task_type)
        return self.user.format(
            task_type=t.name, task_type_hint=t.hint, title=title or "none", passage=passage
        )

    def messages(self, task_type: str, title: str, passage: str) -> list[Message]:
        """The chat for one passage. Everything before the last turn is shared by all passages."""
        import json

        chat: list[Message] = [{"role": "system", "content": self.system}]
        for ex in self.examples:
            chat.append(
                {"role": "user", "content": self._user_turn(ex.task_type, ex.title, ex.passage)}
            )
            chat.append(
                {"role": "assistant", "content": json.dumps({"task": ex.task, "query": ex.query})}
            )
        chat.append({"role": "user", "content": self._user_turn(task_type, title, passage)})
        return chat


#: step-1 templates shipped with geckokit, by the name ``--prompt`` takes
BUNDLED_PROMPTS = {
    "default": "generate_v1.toml",
    "science-claims": "science_claims_v1.toml",
}


def load_generate_prompt(path: str | Path | None = None) -> GeneratePrompt:
    """Read a step-1 template: a TOML file, or a bundled one by name (``"default"``, the
    general ``generate_v1.toml``; ``"science-claims"``, claims for scientific abstracts).
    None gives the default."""
    name = "default" if path is None else str(path)
    if name in BUNDLED_PROMPTS and not Path(name).is_file():
        data = resources.files("geckokit.prompts").joinpath(BUNDLED_PROMPTS[name]).read_bytes()
        source = f"geckokit:prompts/{BUNDLED_PROMPTS[name]}"
    else:
        try:
            data = Path(path).read_bytes()  # type: ignore[arg-type]
        except OSError as exc:
            raise ValueError(
                f"prompt {str(path)!r}: neither a readable file nor a bundled prompt "
                f"({', '.join(BUNDLED_PROMPTS)}): {exc.strerror}"
            ) from None
        source = str(path)
    try:
        raw = tomllib.loads(data.decode("utf-8"))
        prompt = GeneratePrompt(
            version=str(raw["version"]),
            system=str(raw["system"]).strip(),
            user=str(raw["user"]).strip(),
            task_types=tuple(TaskType(str(t["name"]), str(t["hint"])) for t in raw["task_types"]),
            examples=tuple(
                Example(**{k: str(v) for k, v in e.items()}) for e in raw.get("examples", [])
            ),
            sha256=hashlib.sha256(data).hexdigest(),
            source=source,
        )
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(
            f"{source}: not a valid generate prompt template ({exc!r}); see the bundled generate_v1.toml"
        ) from exc
    if not prompt.task_types:
        raise ValueError(f"{source}: defines no task types")
    for ex in prompt.examples:
        prompt.task_type(ex.task_type)
    return prompt
