"""The salon page's numbers of the last days as a plain SVG line chart: geometry only, no script, no build."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

# (stats field, label, colour): colours keep 4.5:1 against white for the legend's text.
SERIES = (
    ("sent", "Отправлено", "#1d4ed8"),
    ("delivered", "Доставлено", "#0f766e"),
    ("read", "Прочитано", "#167a3f"),
    ("confirmed", "Подтвердили", "#6d28d9"),
    ("cancelled", "Отменили", "#b42318"),
)
WIDTH, HEIGHT, PAD = 600, 160, 8


def chart(stats: dict[str, Any], today: date) -> dict[str, Any]:
    """Polylines of each series over ``stats["days"]`` days ending ``today`` (missing days are zero)."""
    days = int(stats["days"])
    dates = [today - timedelta(days=days - 1 - n) for n in range(days)]
    by_date = {row["date"]: row for row in stats["per_day"]}
    peak = max([1, *(int(row.get(name, 0)) for row in stats["per_day"] for name, _label, _colour in SERIES)])
    step = (WIDTH - 2 * PAD) / max(days - 1, 1)

    def y(value: int) -> float:
        return round(HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / peak, 1)

    series = []
    for name, label, colour in SERIES:
        values = [int(by_date.get(d.isoformat(), {}).get(name, 0)) for d in dates]
        points = " ".join(f"{round(PAD + n * step, 1)},{y(v)}" for n, v in enumerate(values))
        series.append({"name": name, "label": label, "colour": colour, "points": points,
                       "total": int(stats["totals"].get(name, 0))})
    return {"width": WIDTH, "height": HEIGHT, "peak": peak, "series": series, "first": dates[0], "last": dates[-1],
            "rate": stats.get("confirmation_rate")}
