#!/usr/bin/env python3
"""Reference fire times for CronTests, computed with croniter.

Usage: croniter_table.py ROWS.json

ROWS.json is a list of {"expr": str, "tz": str, "start": epoch seconds,
"count": int}. Prints a JSON list with, per row, either the next `count` fire
instants after `start` as epoch seconds (croniter's get_next, chained from a
start datetime in the row's zone, via the standard library's zoneinfo) or
{"error": message} when croniter refuses the row.

Six-field expressions have seconds first (second_at_beginning=True), as in
the Swift CronExpression; croniter ignores the flag for five fields.
"""

import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter


def fires(row):
    zone = ZoneInfo(row["tz"])
    start = datetime.fromtimestamp(row["start"], zone)
    it = croniter(row["expr"], start, second_at_beginning=True)
    return [it.get_next(datetime).timestamp() for _ in range(row["count"])]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        rows = json.load(f)
    out = []
    for row in rows:
        try:
            out.append(fires(row))
        except Exception as e:  # one bad row must not hide the others' answers
            out.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
