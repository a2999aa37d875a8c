"""The verify reports: every verify row as JUnit XML (one testsuite per check, for CI) and JSON,
written 0600 with secrets redacted."""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

from osk8s_tasks.core import log
from osk8s_tasks.core.engine import Result
from osk8s_tasks.core.files import write_private


def report_rows(results: list[Result]) -> list[dict]:
    return [
        {
            "task": r.task,
            "check": r.step,
            "node": r.node,
            "outcome": r.outcome,
            "seconds": round(r.seconds, 3),
            "detail": log.redact(r.detail),
        }
        for r in results
        if r.task.startswith("verify.")
    ]


def write_json(path: str, results: list[Result], lab: str) -> None:
    rows = report_rows(results)
    doc = {
        "lab": lab,
        "passed": not any(r["outcome"] == "failed" for r in rows),
        "counts": {o: sum(r["outcome"] == o for r in rows) for o in ("ok", "changed", "failed", "skipped", "would-change")},
        "results": rows,
    }
    write_private(Path(path), json.dumps(doc, indent=2) + "\n")


def write_junit(path: str, results: list[Result], lab: str) -> None:
    """One testsuite per verify task, one testcase per row (steps and assertions)."""
    rows = report_rows(results)
    suites = ET.Element("testsuites", name=f"osk8s verify {lab}")
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=task,
            tests=str(len(mine)),
            failures=str(sum(r["outcome"] == "failed" for r in mine)),
            skipped=str(sum(r["outcome"] in ("skipped", "would-change") for r in mine)),
            time=f"{sum(r['seconds'] for r in mine):.3f}",
        )
        for r in mine:
            case = ET.SubElement(suite, "testcase", classname=task, name=r["check"], time=f"{r['seconds']:.3f}")
            if r["outcome"] == "failed":
                ET.SubElement(case, "failure", message=_xml_safe(r["detail"][:200])).text = _xml_safe(r["detail"])
            elif r["outcome"] in ("skipped", "would-change"):
                ET.SubElement(case, "skipped", message=_xml_safe(r["detail"][:200]))
            else:
                ET.SubElement(case, "system-out").text = _xml_safe(f"{r['outcome']}: {r['detail']}")
    ET.indent(suites)
    write_private(Path(path), ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")


def _xml_safe(text: str) -> str:
    return re.sub(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd]", "?", text)
