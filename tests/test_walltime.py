from edgegov.host.walltime import WallClock, format_wall


def _boot(t, wall):
    return [1, t, 0, 0, "fw", b"", "dev", 0, [], wall, 1]


def test_latest_anchor_at_or_before_t_gives_wall_time():
    checkpoint = [5, 500, b"", b"", None, 0, [], b"", 2_000_000]
    clock = WallClock.from_records([_boot(0, 1_000_000), checkpoint])
    assert clock.at(0, 100) == 1_000_100
    assert clock.at(0, 700) == 2_000_200


def test_before_first_anchor_uses_first_anchor_after():
    clock = WallClock.from_records([(0, _boot(0, None)), (1, [7, 1000, 5_000_000])])
    assert clock.at(0, 400) == 4_999_400


def test_each_boot_has_its_own_anchors_and_unknown_is_none():
    clock = WallClock.from_records([_boot(0, 10_000), _boot(0, None)])
    assert clock.at(0, 5) == 10_005
    assert clock.at(1, 5) is None
    assert clock.at(2, 5) is None


def test_time_record_step_overrides_checkpoint_before_it():
    clock = WallClock.from_records([_boot(0, 0), [7, 100, 50_000]])
    assert clock.at(0, 99) == 99
    assert clock.at(0, 150) == 50_050


def test_format_wall_is_iso_utc_with_ms():
    assert format_wall(1796366000123) == "2026-12-04T06:33:20.123Z"
