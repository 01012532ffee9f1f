"""Rules with one home stay there: a new path that restates one fails here.

Each check reads the code, so it holds for every path, including ones no
behaviour test drives yet. Behaviour tests check what each rule does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from app.config import PROJECT_ROOT

SERVICE_CODE = [*(PROJECT_ROOT / "app").rglob("*.py"), *(PROJECT_ROOT / "consumers").rglob("*.py")]


def _calls_of(method: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for path in SERVICE_CODE:
        if "adapters" in path.parts:
            continue  # adapters implement the port method; they do not decide statuses
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method:
                relative = path.relative_to(PROJECT_ROOT).as_posix()
                found[relative] = found.get(relative, 0) + 1
    return found


def test_settle_is_the_only_writer_of_statuses_after_pending() -> None:
    assert set(_calls_of("record_statuses")) == {"app/services/settle.py"}
    # `pending` is written by the submit handler alone, overlapped with the send to the engine.
    assert set(_calls_of("start_recording")) == {"app/services/submit.py"}


def test_one_claim_of_an_idempotency_key() -> None:
    assert set(_calls_of("claim_idempotency_key")) == {"app/services/submit.py"}
    assert set(_calls_of("claim_key")) == {"app/services/submit.py"}


def test_the_idempotency_key_pattern_is_written_once() -> None:
    pattern = re.compile(re.escape("A-Za-z0-9_-]{1,64}"))
    homes = [p.relative_to(PROJECT_ROOT).as_posix() for p in SERVICE_CODE if pattern.search(p.read_text())]
    assert homes == ["app/domain/ids.py"]


def test_refusal_causes_and_ledger_agreement_live_in_the_domain() -> None:
    def defines(name: str) -> list[str]:
        found = []
        for path in SERVICE_CODE:
            for node in ast.walk(ast.parse(path.read_text())):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                if isinstance(node, ast.Assign | ast.AnnAssign) and any(
                    isinstance(t, ast.Name) and t.id == name for t in targets
                ):
                    found.append(Path(path).relative_to(PROJECT_ROOT).as_posix())
        return found

    assert defines("REFUSAL_CAUSES") == ["app/domain/ledger_answers.py"]
    assert defines("AGREEING_STATES") == ["app/domain/ledger_answers.py"]
