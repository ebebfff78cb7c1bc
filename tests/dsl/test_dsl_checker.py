"""Checker rules, one by one; each test also proves the rule stays quiet on a
journey that obeys it."""

from __future__ import annotations

import pytest

from dsl import Registry, check, compile_source, max_messages, parse
from dsl.errors import JourneyError


def codes(
    body: str, registry: Registry | None = None, global_daily_limit: int | None = None, header: str = ""
) -> list[str]:
    source = f'journey "x"\n{header}' + "".join(f"  {line}\n" for line in body.strip("\n").split("\n"))
    return [d.code for d in check(parse(source), source, "x.journey", registry, global_daily_limit)]


def test_registry_unknown_names() -> None:
    registry = Registry(templates={"welcome"}, pools={"p10"}, events={"paid"}, channels={"sms", "wecom"})
    body = """
send sms "welcom"
send push "welcome"
coupon "p11"
wait for event payed up to 1d
if count clicked >= 1:
  pass
"""
    assert codes(body, registry) == ["E210", "E213", "E211", "E212", "E212"]
    assert codes('send sms "welcome"\ncoupon "p10"\nwait for event paid up to 1d', registry) == []
    assert codes('send sms "anything"') == []  # no registry: names unchecked


def test_did_you_mean() -> None:
    source = 'journey "x"\n  send sms "welcom"\n'
    [diag] = check(parse(source), source, registry=Registry(templates={"welcome"}))
    assert diag.hint == "did you mean 'welcome'?"


def test_goto_unknown_label_and_duplicates() -> None:
    assert codes("label a\nwait 1d\ngoto b") == ["E220"]
    assert codes("label a\nlabel a\nwait 1d\ngoto a") == ["E221"]
    assert codes("label a\nwait 1d\ngoto a") == []


def test_split_rules() -> None:
    assert codes("split:\n  50% A: pass\n  40% B: pass") == ["E223"]
    assert codes("split:\n  50% A: pass\n  50% A: pass") == ["E222"]
    assert codes("split:\n  33.5% A: pass\n  66.5% B: pass") == []
    assert codes('split:\n  90% A: pass\n  10% holdout: send sms "x"') == ["W305"]


def test_spin_loop_is_an_error_but_waiting_loops_are_fine() -> None:
    assert codes('label a\nsend sms "x"\ngoto a') == ["E224"]
    assert codes("label a\nwait until user.renewal\ngoto a") == ["E224"]  # passes at once when past
    assert codes('label a\nsend sms "x"\nwait 1d\ngoto a') == []
    assert codes('label a\nwait until 10:00\nsend sms "x"\ngoto a') == []
    assert codes("label a\nwait for event clicked up to 1d\ngoto a") == []


def test_unreachable_reported_once_per_run() -> None:
    assert codes('exit\nsend sms "a"\nsend sms "b"') == ["W301"]
    assert codes('goto end\nsend sms "a"\nlabel end\nsend sms "b"') == ["W301"]
    assert codes('if tag a:\n  exit\n  send sms "a"\nsend sms "b"') == ["W301"]


def test_wait_for_event_timeouts() -> None:
    assert codes("wait for event paid") == ["W302"]
    assert codes("wait for event paid:\n  on timeout: pass") == ["E229"]
    assert codes("wait for event paid up to 1d:\n  on timeout: pass") == []


def test_zero_durations_and_bad_values() -> None:
    assert codes("wait 0m") == ["E225"]
    assert codes("wait for event a up to 0s") == ["E225"]
    assert codes("pass", header="  reentry after 0d\n") == ["E225"]
    assert codes("pass", header="  limit 0 messages per 1d\n") == ["E230"]
    assert codes("wait until 24:00") == ["E227"]
    assert codes("pass", header="  quiet hours 22:00-22:00\n") == ["E227"]
    assert codes("pass", header="  quiet hours 22:00-08:60\n") == ["E227"]
    assert codes("pass", header='  timezone "Nowhere/City"\n') == ["E226"]
    assert codes("pass", header="  entry audience where tag a once at 2026-02-30 10:00\n") == ["E227"]
    assert codes("pass", header="  entry audience where tag a once at 2101-01-01 10:00\n") == ["E227"]
    assert codes("pass", header="  entry audience where tag a once at 2100-12-31 10:00\n") == []
    assert codes("if stage is sleeping:\n  pass") == ["E228"]
    assert codes("if stage in [new, paying]:\n  pass") == []


def test_message_bound_against_journey_limit() -> None:
    header = "  limit 2 messages per 1d\n"
    assert codes('send sms "a"\nsend sms "b"\nsend sms "c"', header=header) == ["W303"]
    assert codes('send sms "a"\nsend sms "b"\nwait 1d\nsend sms "c"', header=header) == []
    assert codes('send sms "a"\nsend sms "b"\nwait 23h\nsend sms "c"', header=header) == ["W303"]
    # exclusive branches do not add up
    assert codes('send sms "a"\nif tag x:\n  send sms "b"\nelse:\n  send sms "c"', header=header) == []


def test_message_bound_loops() -> None:
    header = "  limit 2 messages per 1d\n"
    daily = 'label a\nwait until 10:00\nsend sms "x"\ngoto a'
    assert codes(daily, header=header) == []
    hourly = 'label a\nwait 1h\nsend sms "x"\ngoto a'
    assert codes(hourly, header=header) == ["W303"]
    event_driven = 'label a\nwait for event clicked up to 3d\nsend sms "x"\ngoto a'
    assert codes(event_driven, header=header) == ["W303"]


def test_message_bound_against_global_limit() -> None:
    body = 'send sms "a"\nsend sms "b"\nwait 12h\nsend sms "c"'
    assert codes(body, global_daily_limit=3) == []
    assert codes(body, global_daily_limit=2) == ["W304"]


def test_max_messages_counts_exactly() -> None:
    journey = parse('journey "x"\n  send sms "a"\n  wait 1h\n  send sms "b"\n  wait 1d\n  send sms "c"\n')
    assert max_messages(journey, 86400, 10)[0] == 2
    assert max_messages(journey, 2 * 86400, 10)[0] == 3
    assert max_messages(journey, 60, 10)[0] == 1
    daily = parse('journey "x"\n  label a\n  send sms "a"\n  wait until 10:00\n  goto a\n')
    assert max_messages(daily, 86400, 10)[0] == 2  # once before the first 10:00, once after
    assert max_messages(daily, 7 * 86400, 50)[0] == 8


def test_compile_source_raises_on_errors_and_returns_warnings() -> None:
    with pytest.raises(JourneyError) as info:
        compile_source('journey "x"\n  goto nowhere\n', "x.journey")
    assert [d.code for d in info.value.diagnostics] == ["E220"]
    warnings: list = []
    journey = compile_source('journey "x"\n  wait for event a\n', "x.journey", warnings=warnings)
    assert journey.steps and [w.code for w in warnings] == ["W302"]


def test_diagnostic_positions() -> None:
    source = 'journey "x"\n  label a\n  send sms "上海"\n  goto b\n'
    [diag] = check(parse(source), source, "x.journey")
    assert (diag.code, diag.line, diag.column) == ("E220", 4, 3)
    assert (
        diag.render(source, "x.journey").splitlines()[0]
        == "x.journey:4:3: error[E220]: goto 'b': there is no such label"
    )


def test_wait_until_event_field_needs_an_event_in_scope() -> None:
    assert codes("wait until event.live_at - 2h") == ["W306"]
    assert codes("wait until event.live_at - 2h", header="  entry event registered\n") == []
    after_an_event = "wait for event registered up to 1d\nwait until event.live_at"
    assert codes(after_an_event) == []  # the event may have arrived on the way
    only_timeout = "wait for event registered up to 1d:\n  on event: exit\n  on timeout: wait until event.live_at"
    assert codes(only_timeout) == ["W306"]
    assert codes("wait until event.live_at at 24:00", header="  entry event registered\n") == ["E227"]


def test_iter_conds_walks_every_operand_in_order() -> None:
    from dsl.ir import iter_conds

    step = parse('journey "x"\n  if tag a and not (tag b or tag c):\n    pass\n').steps[0]
    cond = step.branches[0].cond
    assert [c.kind for c in iter_conds(cond)] == ["and", "tag", "not", "or", "tag", "tag"]
    assert [c.tag for c in iter_conds(cond) if c.kind == "tag"] == ["a", "b", "c"]
    assert list(iter_conds(None)) == []
