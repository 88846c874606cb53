"""Incidents in a dump, by the report's definition, from decoded rows written by hand."""

from __future__ import annotations

from edgegov.fleet.analyse import incidents_in


def _trip(t, code=1, rule="channels.axis.max"):
    return {"kind": "decision", "t_ms": t, "rule": rule,
            "events": [{"event": "trip", "arg": code}]}


def _ev(t, name):
    return {"kind": "event", "t_ms": t, "events": [{"event": name, "arg": 0}]}


BOOT3 = {"kind": "boot", "t_ms": 0, "boot_count": 3, "wall_ms": 1_000_000}
BOOT4 = {"kind": "boot", "t_ms": 0, "boot_count": 4, "wall_ms": 2_000_000}


def test_a_trip_while_tripped_is_a_retrip_and_a_reset_or_boot_ends_the_incident():
    rows = [BOOT3, _ev(5, "reset"), _trip(100), _trip(150, 2), _ev(200, "reset"),
            _trip(300, 2, "interlocks.door"), BOOT4, _trip(40)]
    found = incidents_in(rows, "d1")
    assert [i["id"] for i in found] == ["d1:3:100", "d1:3:300", "d1:4:40"]
    first, second, third = found
    assert (first["cause"], first["cause_code"], first["retrips"]) == ("above_max", 1, 1)
    assert first["trip_wall_ms"] == 1_000_100
    assert (second["rule"], second["retrips"]) == ("interlocks.door", 0)
    assert third["trip_wall_ms"] == 2_000_040 and third["boot"] == 4


def test_trips_before_the_first_surviving_boot_belong_to_the_boot_before_it():
    found = incidents_in([_trip(70), BOOT4, _trip(40)], "d1")
    assert [i["id"] for i in found] == ["d1:3:70", "d1:4:40"]


def test_a_dump_without_boot_records_uses_the_boot_the_device_reported():
    (inc,) = incidents_in([_trip(70)], "d1", current_boot=9)
    assert inc["id"] == "d1:9:70" and inc["trip_wall_ms"] is None
