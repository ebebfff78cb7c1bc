"""Random structured edits on the example journeys, checked against a model.

For a random sequence of edits on each of ``journeys/*.journey``:

- the new text parses, and what it parses to is what the same edit made on
  the IR predicts (``_predict``, a plain model of each operation written
  here, ids included) — and it checks with the diagnostics that IR has;
- the lines an edit has no business with are byte-identical and in order;
- steps the edit did not touch keep their ids;
- the inverse gives back the exact bytes, and undoing the whole sequence
  returns the original file.

No timings: ``deadline=None``.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dsl import check, format_journey, parse
from dsl.edits import EDIT, EditError, apply_edit
from dsl.errors import JourneyError
from dsl.ids import assign_ids, base_id
from dsl.ir import Journey, Step, _strip_spans, iter_steps

from .support import EXAMPLES

SOURCES = {p.name: p.read_bytes().decode("utf-8") for p in EXAMPLES}

NEW_STEPS = [
    'send sms "新消息"',
    'send best of push, wecom "提醒"',
    "wait 2h",
    "wait until 10:00",
    "tag add 测试, vip",
    "tag remove 测试",
    'coupon "券"\n  on out_of_stock: pass',
    'if tag 甲:\n  send sms "x"\nelse:\n  pass',
    "split:\n  50% A: pass\n  50% B",
    "wait for event 点击 up to 1d:\n  on event: tag add 点过\n  on timeout: pass",
    "exit",
    "pass",
]
HEADER_VALUES: list[tuple[str, Any]] = [
    ("name", "改过的名字"),
    ("description", "新的描述 → 测试"),
    ("description", None),
    ("goal", None),
    ("goal", {"event": "order_paid", "within_seconds": 86400}),
    ("exits", []),
    ("exits", [{"event": "退订"}]),
    ("timezone", "Asia/Tokyo"),
    ("quiet_hours", {"start": "21:00", "end": "09:00"}),
    ("quiet_hours", None),
    ("message_limit", {"count": 2, "window_seconds": 86400}),
    ("message_limit", None),
    ("reentry", {"mode": "always"}),
    ("entry", {"kind": "api"}),
    ("when_capped", {"mode": "skip"}),
    ("priority", 3),
    ("priority", None),
]
# refusals a random edit may meet; anything else (bad_edit, would_not_parse
# where the IR model formats fine) is a bug
EXPECTED_REFUSALS = {"exists", "last_branch", "bad_position", "bad_branch", "unknown_block"}


# ---------------------------------------------------------------- the IR model


def _blocks(step: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A step's blocks by the names edits use (as ``dsl._edit_layout.step_blocks``)."""
    kind = step["kind"]
    if kind == "wait_event":
        return {k: step[k] for k in ("on_event", "on_timeout") if step[k]}
    if kind == "coupon":
        return {"out_of_stock": step["out_of_stock"]} if step["out_of_stock"] is not None else {}
    if kind == "if":
        out = {f"branch:{i}": b["steps"] for i, b in enumerate(step["branches"])}
        if step["else_steps"] is not None:
            out["else"] = step["else_steps"]
        return out
    if kind == "split":
        return {f"variant:{v['name']}": v["steps"] for v in step["variants"]}
    return {}


def _all_blocks(step: dict[str, Any]) -> list[list[dict[str, Any]]]:
    kind = step["kind"]
    if kind == "wait_event":
        return [step["on_event"], step["on_timeout"]]
    if kind == "split":
        return [v["steps"] for v in step["variants"]]
    return list(_blocks(step).values())


def _walk(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in steps:
        out.append(s)
        for block in _all_blocks(s):
            out.extend(_walk(block))
    return out


def _where(steps: list[dict[str, Any]], node: str) -> tuple[list[dict[str, Any]], int]:
    """The list holding step ``node`` and its index there."""
    for i, s in enumerate(steps):
        if s["id"] == node:
            return steps, i
        for block in _all_blocks(s):
            try:
                return _where(block, node)
            except KeyError:
                pass
    raise KeyError(node)


def _by_id(data: dict[str, Any], node: str) -> dict[str, Any]:
    block, i = _where(data["steps"], node)
    return block[i]


def _pass() -> dict[str, Any]:
    return {"id": "", "kind": "pass"}


def _put(block: list[dict[str, Any]], index: int, new: dict[str, Any]) -> None:
    """Insert, a lone ``pass`` giving its place (as the text edits do)."""
    if len(block) == 1 and block[0]["kind"] == "pass":
        block[0] = new
    else:
        block.insert(index, new)


def _cut(data: dict[str, Any], node: str) -> dict[str, Any]:
    block, i = _where(data["steps"], node)
    step = block[i]
    if len(block) == 1:
        block[0] = _pass()
    else:
        del block[i]
    return step


def _target(data: dict[str, Any], position: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    if position.get("after"):
        block, i = _where(data["steps"], position["after"])
        return block, i + 1
    if position.get("parent") is None:
        return data["steps"], 0
    return _blocks(_by_id(data, position["parent"]))[position["block"]], 0


def _shape(step: dict[str, Any]) -> tuple[object, ...]:
    kind = step["kind"]
    if kind == "if":
        return (len(step["branches"]), step["else_steps"] is not None)
    if kind == "split":
        return tuple(bool(v["steps"]) for v in step["variants"])
    if kind == "wait_event":
        return (bool(step["on_event"]), bool(step["on_timeout"]))
    if kind == "coupon":
        return (step["out_of_stock"] is not None,)
    return ()


def _adds_up(variants: list[dict[str, Any]]) -> bool:
    return abs(sum(v["percent"] for v in variants) - 100) < 1e-9


def _predict(journey: Journey, raw: dict[str, Any], new_step: dict[str, Any] | None) -> Journey:
    """The journey the edit ``raw`` makes, made on the IR."""
    data = _strip_spans(journey.model_dump(mode="json"))
    assert isinstance(data, dict)
    op = raw["op"]
    if op == "replace_step":
        assert new_step is not None
        block, i = _where(data["steps"], raw["node"])
        old = block[i]
        if old["kind"] == new_step["kind"] and _shape(old) == _shape(new_step) and _shape(old):
            keep = copy.deepcopy(new_step)
            if old["kind"] == "if":
                for b_new, b_old in zip(keep["branches"], old["branches"], strict=True):
                    b_new["steps"] = b_old["steps"]
                keep["else_steps"] = old["else_steps"]
            elif old["kind"] == "split":
                for v_new, v_old in zip(keep["variants"], old["variants"], strict=True):
                    v_new["steps"] = v_old["steps"]
            elif old["kind"] == "wait_event":
                keep["on_event"], keep["on_timeout"] = old["on_event"], old["on_timeout"]
            else:
                keep["out_of_stock"] = old["out_of_stock"]
            block[i] = keep
        else:
            block[i] = new_step
            if old["kind"] == "label" and new_step["kind"] == "label" and old["name"] != new_step["name"]:
                for s in _walk(data["steps"]):
                    if s["kind"] == "goto" and s["label"] == old["name"]:
                        s["label"] = new_step["name"]
    elif op == "insert_step":
        assert new_step is not None
        block, i = _target(data, raw["position"])
        _put(block, i, new_step)
    elif op == "delete_step":
        _cut(data, raw["node"])
    elif op == "move_step":
        anchor = raw["position"].get("after") or raw["position"].get("parent")
        anchor_step = _by_id(data, anchor) if anchor else None
        moved = _cut(data, raw["node"])
        if anchor_step is None:
            _put(data["steps"], 0, moved)
        else:  # found again by identity: cutting may renumber twins' ids
            anchor_step["id"] = "\0anchor"
            position = dict(raw["position"])
            position["after" if position.get("after") else "parent"] = "\0anchor"
            block, i = _target(data, position)
            _put(block, i, moved)
    elif op == "add_branch":
        step = _by_id(data, raw["node"])
        branch = raw["branch"]
        if branch == "else":
            step["else_steps"] = [_pass()]
        elif branch == "else_if":
            cond = parse(f'journey "x"\n  if {raw["cond"]}: pass\n').steps[0].branches[0].cond  # type: ignore[union-attr]
            step["branches"].append({"cond": _strip_spans(cond.model_dump(mode="json")), "steps": [_pass()]})
        elif branch == "variant":
            if _adds_up(step["variants"]):
                donor = max(step["variants"], key=lambda v: v["percent"])
                donor["percent"] -= raw["percent"]
            step["variants"].append(
                {"name": raw["name"], "percent": raw["percent"], "steps": [], "holdout": raw["name"] == "holdout"}
            )
        elif branch == "out_of_stock":
            step["out_of_stock"] = [_pass()]
        else:
            step[branch] = [_pass()]
    elif op == "delete_branch":
        step = _by_id(data, raw["node"])
        name = raw["block"]
        if name.startswith("branch:"):
            del step["branches"][int(name.split(":")[1])]
        elif name == "else":
            step["else_steps"] = None
        elif name.startswith("variant:"):
            gone = next(v for v in step["variants"] if f"variant:{v['name']}" == name)
            rest = [v for v in step["variants"] if v is not gone]
            if _adds_up(step["variants"]):
                max(rest, key=lambda v: v["percent"])["percent"] += gone["percent"]
            step["variants"] = rest
        elif name == "out_of_stock":
            step["out_of_stock"] = None
        else:
            step[name] = []
    elif op == "set_header":
        data[raw["field"]] = raw["value"] if raw["value"] is not None or raw["field"] != "exits" else []
    predicted = Journey.model_validate(data)
    assign_ids(predicted)
    return predicted


def _content(journey: Journey) -> Any:
    return _strip_spans(journey.model_dump(mode="json"))


# ---------------------------------------------------------------- drawing edits


def _one_step(text: str) -> dict[str, Any]:
    body = "\n".join("  " + line for line in text.split("\n"))
    step = parse(f'journey "x"\n{body}\n').steps[0]
    data = _strip_spans(step.model_dump(mode="json"))
    assert isinstance(data, dict)
    return data


def _tweak(draw: st.DrawFn, step: Step, labels: list[str]) -> dict[str, Any]:
    """The step with one field changed, as the diagram's forms send it."""
    data = _strip_spans(step.model_dump(mode="json"))
    assert isinstance(data, dict)
    kind = data["kind"]
    if kind == "wait":
        data["seconds"] = draw(st.sampled_from([60, 3600, 7200, 86400, 3 * 86400]))
    elif kind == "send":
        data["template"] = draw(st.sampled_from(["改过", "tpl_x", "第二封"]))
    elif kind == "tag":
        data["tags"] = draw(st.sampled_from([["甲"], ["a", "b"]]))
    elif kind == "coupon":
        data["pool"] = "新券池"
    elif kind == "label":
        data["name"] = draw(st.sampled_from(["新标签", "again"]))
    elif kind == "goto" and labels:
        data["label"] = draw(st.sampled_from(labels))
    elif kind == "wait_event":
        data["timeout_seconds"] = draw(st.sampled_from([None, 3600, 86400]))
        data["event"] = draw(st.sampled_from([data["event"], "换了事件"]))
    elif kind == "if":
        i = draw(st.integers(0, len(data["branches"]) - 1))
        data["branches"][i]["cond"] = {"kind": "tag", "tag": "新条件"}
    elif kind == "split":
        n = len(data["variants"])
        first = draw(st.integers(1, 100 - (n - 1)))
        rest = 100 - first
        for j, v in enumerate(data["variants"]):
            v["percent"] = first if j == 0 else (rest // (n - 1) + (rest % (n - 1) if j == 1 else 0))
    elif kind == "wait_until":
        data["time"] = "07:15"
    return data


@st.composite
def _edit(draw: st.DrawFn, journey: Journey) -> tuple[dict[str, Any], dict[str, Any] | None]:
    steps = list(iter_steps(journey.steps))
    ids = [s.id for s in steps]
    compounds = [s for s in steps if s.kind in ("if", "split", "wait_event", "coupon")]
    labels = [s.name for s in steps if s.kind == "label"]  # type: ignore[attr-defined]
    ops = ["replace_step", "replace_step", "insert_step", "insert_step", "delete_step", "move_step", "set_header"]
    if compounds:
        ops += ["add_branch", "delete_branch"]
    op = draw(st.sampled_from(ops))

    def position() -> dict[str, Any]:
        where = draw(st.sampled_from(["after", "start"] if compounds else ["after", "top"]))
        if where == "after":
            return {"after": draw(st.sampled_from(ids))}
        if where == "top" or draw(st.booleans()):
            return {"parent": None, "block": "steps"}
        from dsl._edit_layout import step_blocks

        owner = draw(st.sampled_from(compounds))
        names = list(step_blocks(owner))
        if not names:
            return {"parent": None, "block": "steps"}
        return {"parent": owner.id, "block": draw(st.sampled_from(names))}

    if op == "replace_step":
        step = draw(st.sampled_from(steps))
        if draw(st.booleans()):
            new = _tweak(draw, step, labels)
        else:
            new = _one_step(draw(st.sampled_from(NEW_STEPS)))
        return {"op": op, "node": step.id, "step": new, "force": True}, new
    if op == "insert_step":
        new = _one_step(draw(st.sampled_from(NEW_STEPS)))
        return {"op": op, "position": position(), "step": new}, new
    if op == "delete_step":
        return {"op": op, "node": draw(st.sampled_from(ids)), "force": True}, None
    if op == "move_step":
        return {"op": op, "node": draw(st.sampled_from(ids)), "position": position()}, None
    if op == "set_header":
        field, value = draw(st.sampled_from(HEADER_VALUES))
        return {"op": op, "field": field, "value": value}, None
    from dsl._edit_layout import step_blocks

    owner = draw(st.sampled_from(compounds))
    if op == "delete_branch":
        names = list(step_blocks(owner)) or ["else"]
        return {"op": op, "node": owner.id, "block": draw(st.sampled_from(names)), "force": True}, None
    branch = {
        "if": draw(st.sampled_from(["else", "else_if"])),
        "split": "variant",
        "coupon": "out_of_stock",
        "wait_event": draw(st.sampled_from(["on_event", "on_timeout"])),
    }[owner.kind]
    raw: dict[str, Any] = {"op": op, "node": owner.id, "branch": branch}
    if branch == "else_if":
        raw["cond"] = draw(st.sampled_from(["tag 新客", 'user.city == "上海"']))
    if branch == "variant":
        raw["name"], raw["percent"] = draw(st.sampled_from(["丙", "C"])), draw(st.sampled_from([5, 10, 20]))
    return raw, None


# ---------------------------------------------------------------- what may change


def _touched_lines(source: str, journey: Journey, raw: dict[str, Any]) -> set[int]:
    """0-based lines of ``source`` the edit may rewrite or remove."""
    lines = source.split("\n")

    def head(step: Any) -> int:
        return step.span.line - 1

    def subtree(node: str) -> set[int]:
        step = next(s for s in iter_steps(journey.steps) if s.id == node)
        inner = [head(s) for s in iter_steps([step])]
        if step.kind == "split" or any(s.kind == "split" for s in iter_steps([step])):
            inner += [v.span.line - 1 for s in iter_steps([step]) if s.kind == "split" for v in s.variants]
        first = head(step)
        while first > 0 and lines[first - 1].strip().startswith("#"):
            first -= 1
        return set(range(first, max(inner) + 1))

    def block_anchor(position: dict[str, Any]) -> set[int]:
        """An inline head the insert may open up, a lone pass, an empty variant."""
        out: set[int] = set()
        for s in iter_steps(journey.steps):
            if s.id in (position.get("after"), position.get("parent")):
                out |= {head(s)}
                for nested in s.blocks():
                    out |= {head(n) for n in nested}
                if s.kind == "split":
                    out |= {v.span.line - 1 for v in s.variants}  # type: ignore[attr-defined]
                for parent in iter_steps(journey.steps):
                    for nested in parent.blocks():
                        if s in nested:
                            out |= {head(n) for n in nested if n.kind == "pass"} | {head(parent)}
        if position.get("parent") is None and not position.get("after"):
            out |= {head(s) for s in journey.steps[:1]}
        return out

    op = raw["op"]
    if op == "replace_step" and raw["step"]["kind"] == "label":  # gotos follow a renamed label
        return subtree(raw["node"]) | {head(s) for s in iter_steps(journey.steps) if s.kind == "goto"}
    if op in ("replace_step", "delete_step", "add_branch", "delete_branch"):
        return subtree(raw["node"])
    if op == "insert_step":
        return block_anchor(raw["position"])
    if op == "move_step":
        return subtree(raw["node"]) | block_anchor(raw["position"])
    first_step = head(journey.steps[0])
    return set(range(first_step))


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(any(line == other for other in it) for line in short)


def _codes(journey: Journey, source: str) -> list[str]:
    return sorted(d.code for d in check(journey, source))


# ---------------------------------------------------------------- the property


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SOURCES)), data=st.data())
def test_random_edits_follow_the_ir_model_and_undo(name: str, data: st.DataObject) -> None:
    original = SOURCES[name]
    source = original
    undo: list[Any] = []
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        journey = parse(source)
        raw, new_step = data.draw(_edit(journey), label="edit")
        try:
            predicted: Journey | None = _predict(journey, raw, new_step)
        except (KeyError, IndexError, ValueError):
            predicted = None  # the model cannot make it either (a missing block, the only branch…)
        try:
            result = apply_edit(source, EDIT.validate_python(raw))
        except EditError as exc:
            event(f"{raw['op']} refused: {exc.code}")
            if exc.code == "would_not_parse" and predicted is not None:
                # the IR the edit makes would not survive as text either
                try:
                    parse(format_journey(predicted))
                except JourneyError:
                    continue
            assert exc.code in EXPECTED_REFUSALS, (raw, exc.code, exc.message)
            continue
        assert predicted is not None, raw
        event(f"{raw['op']} made")

        new = parse(result.source)
        assert _content(new) == _content(predicted), raw
        assert _codes(new, result.source) == _codes(predicted, format_journey(predicted)), raw

        # lines the edit has no business with are byte-identical, in order
        old_lines, new_lines = source.split("\n"), result.source.split("\n")
        touched = _touched_lines(source, journey, raw)
        untouched = [line for i, line in enumerate(old_lines) if i not in touched]
        assert _is_subsequence(untouched, new_lines), raw

        # steps outside the edit keep their ids; only twins (``-2``…) of a
        # step that came or went may renumber
        affected = _affected(journey, raw)
        old_bases = Counter(base_id(s) for s in iter_steps(journey.steps))
        new_by_id = {s.id: s for s in iter_steps(new.steps)}
        new_bases = Counter(base_id(s) for s in new_by_id.values())
        for step in iter_steps(journey.steps):
            base = base_id(step)
            if step.id not in affected and old_bases[base] == 1 and new_bases[base] == 1:
                assert step.id in new_by_id and new_by_id[step.id].kind == step.kind, (raw, step.id)

        assert apply_edit(result.source, result.inverse).source.encode() == source.encode()
        undo.append(result.inverse)
        source = result.source
    for inverse in reversed(undo):
        source = apply_edit(source, inverse).source
    assert source.encode() == original.encode()


def _affected(journey: Journey, raw: dict[str, Any]) -> set[str]:
    """Ids the edit may change: the step it rewrites (with what it drops),
    the owner of a block that comes or goes, gotos that follow a label."""
    op = raw["op"]
    if op not in ("replace_step", "delete_step", "add_branch", "delete_branch"):
        return set()
    step = next(s for s in iter_steps(journey.steps) if s.id == raw["node"])
    if op == "replace_step":
        out = {s.id for s in iter_steps([step])}
        if step.kind == "label":
            out |= {s.id for s in iter_steps(journey.steps) if s.kind == "goto"}
        return out
    if op == "delete_step":
        return {s.id for s in iter_steps([step])}
    return {s.id for s in iter_steps([step])} if op == "delete_branch" else {step.id}
