"""What every page must pass in the browser: axe-core finds nothing serious, and nothing scrolls sideways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.support import ROOT

AXE = ROOT / "tests" / "js" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SERIOUS = ("serious", "critical")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations of the page as it is now (rule, nodes' selectors)."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in found if v["impact"] in SERIOUS]


def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the viewport (0: no horizontal scroll)."""
    return int(page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth"))


def _overflowing(page: Page) -> list[str]:
    """The elements reaching past the viewport's right edge or overflowing their own box, for the message."""
    return list(page.evaluate("""() => Array.from(document.querySelectorAll('body *')).filter(e =>
          e.getBoundingClientRect().right > document.documentElement.clientWidth ||
          (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible'))
        .slice(0, 8).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                               (typeof e.className === 'string' && e.className ? '.' + e.className : ''))"""))


def check_page(page: Page, name: str, shots: Path) -> None:
    """At phone and desktop widths: a full-page screenshot, no horizontal scroll, no serious axe violation."""
    for label, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(shots / f"{name}-{label}.png"), full_page=True)
        assert horizontal_overflow(page) <= 0, (f"{name} scrolls sideways at {label} width by "
                                                f"{horizontal_overflow(page)} px: {_overflowing(page)}")
        violations = axe_violations(page)
        assert violations == [], f"{name} at {label} width: {violations}"
