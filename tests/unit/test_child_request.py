"""The request of the runner's child processes (runner.child_protocol): round trip and bad requests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.exceptions import UsageError
from core.intervals import Interval
from runner.child_protocol import Cascade, ChildRequest, Work, child_argv, is_child_command, parse_request

D1, D2, D3 = (datetime(2025, 3, d, tzinfo=UTC) for d in (1, 2, 3))


def test_a_request_survives_its_json_line_and_labels_the_command_line() -> None:
    runs = ChildRequest("runs", "upstream", work=(Work("raw", (Interval(D1, D2), Interval(D2, D3))),
                                                  Work("daily", (Interval(D1, D2),))), downstream=False)
    fire = ChildRequest("fire", "scheduler", "raw", D2)
    cascade = ChildRequest("cascade", "upstream", cascade=Cascade(
        ("daily", "total"), D3, {"raw": [Interval(D1, D2), Interval(D2, D3)], "daily": [Interval(D1, D2)]},
        {("raw", Interval(D1, D2)), ("daily", Interval(D1, D2)), ("daily", Interval(D2, D3))},
        {"daily": [Interval(D2, D3)]}, stopped=True))
    for request in (runs, fire, cascade, ChildRequest("worker", "backfill")):
        line = request.to_json()
        assert "\n" not in line and parse_request(line) == request
    # a fire time without a zone is UTC; with one, it is converted
    assert parse_request('{"kind": "fire", "pipeline": "raw", "fired_at": "2025-03-02T05:00"}').fired_at == \
        datetime(2025, 3, 2, 5, tzinfo=UTC)
    assert parse_request('{"kind": "fire", "pipeline": "raw", "fired_at": "2025-03-02T06:00+01:00"}').fired_at == \
        datetime(2025, 3, 2, 5, tzinfo=UTC)
    argv = child_argv(fire)
    assert argv[1:] == ["-m", "runner.child", "fire", "raw"] and is_child_command(argv)
    assert not is_child_command(["python", "main.py", "cron_run", "raw"])


@pytest.mark.parametrize(("line", "message"), [
    ("", "not JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"kind": "dance"}', "kind must be one of fire, runs, worker, cascade, got 'dance'"),
    ('{"kind": "cascade"}', "a cascade needs its order, a list of pipeline names"),
    ('{"kind": "cascade", "cascade": {"order": ["daily"]}}', "cascade.now must be an ISO date-time string"),
    ('{"kind": "cascade", "cascade": {"order": ["daily"], "now": "2025-03-02", "failed": {}}}',
     "cascade.failed must be a list of [pipeline, start, end]"),
    ('{"kind": "cascade", "cascade": {"order": ["daily"], "now": "2025-03-02", "decided": [["daily", "x"]]}}',
     "cascade.decided[0] must be [pipeline, start, end], got ['daily', 'x']"),
    ('{"kind": "cascade", "cascade": {"order": ["daily"], "now": "2025-03-02", '
     '"touched": [["raw", "2025-03-02", "2025-03-01"]]}}', "cascade.touched[0] ends at or before its start"),
    ('{"kind": "runs", "trigger": "cosmic", "work": []}', "trigger must be one of"),
    ('{"kind": "fire", "fired_at": "2025-03-02T05:00"}', "a fire needs the pipeline's name"),
    ('{"kind": "fire", "pipeline": "raw"}', "fired_at must be an ISO date-time string, got None"),
    ('{"kind": "fire", "pipeline": "raw", "fired_at": "tuesday"}',
     "fired_at must be an ISO date or date-time like 2026-01-31T00:00, got 'tuesday'"),
    ('{"kind": "runs"}', "runs need a non-empty work list"),
    ('{"kind": "runs", "work": [{"intervals": []}]}', "work[0] needs a pipeline name"),
    ('{"kind": "runs", "work": [{"pipeline": "raw", "intervals": []}]}', "work[0] (raw) needs a list of"),
    ('{"kind": "runs", "work": [{"pipeline": "raw", "intervals": [["2025-03-01"]]}]}',
     "work[0].intervals[0] must be [start, end], got ['2025-03-01']"),
    ('{"kind": "runs", "work": [{"pipeline": "raw", "intervals": [["2025-03-02", "2025-03-01"]]}]}',
     "work[0].intervals[0] ends at or before its start (2025-03-02 .. 2025-03-01)"),
    ('{"kind": "worker", "downstream": "no"}', "downstream must be true or false, got 'no'"),
])
def test_a_bad_request_is_one_line_saying_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_request(line)
    text = str(raised.value)
    assert text.startswith("bad child request: ") and message in text and "\n" not in text
    assert raised.value.exit_code == 2
