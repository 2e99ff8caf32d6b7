"""UI-graph workflows (what ComfyUI's "Save" writes) -> API prompts, with the host's live node
definitions; and the swap of model loaders for tiny random models (tests, ``--check``).

Widget values are mapped to input names the way the frontend stores them: in the order of
the node's widget inputs (required, then optional), with one extra value after every input
that has ``control_after_generate`` (the seed's "fixed"/"randomize"). A linked widget keeps
its stored value but the link wins.
"""

from __future__ import annotations

import json
from pathlib import Path

FRONTEND_ONLY = {"Note", "MarkdownNote"}
PASS_THROUGH = {"Reroute"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


class WorkflowError(ValueError):
    pass


def is_widget(spec) -> bool:
    typ = spec[0]
    opts = spec[1] if len(spec) > 1 else {}
    return (isinstance(typ, (list, tuple)) or str(typ) in WIDGET_TYPES) and not opts.get("forceInput")


def widget_inputs(cls):
    """[(name, spec)] of a node class's inputs in the frontend's order."""
    types = cls.INPUT_TYPES()
    return [(name, spec) for section in ("required", "optional") for name, spec in types.get(section, {}).items()]


def load(path) -> dict:
    return json.loads(Path(path).read_text())


def ui_to_api(workflow: dict, node_classes=None) -> dict:
    """Convert a UI-graph workflow to an API prompt using the running host's node classes, or
    ``node_classes`` (type -> object with ``INPUT_TYPES()``, e.g. a remote server's definitions)."""
    if node_classes is None:
        import nodes

        node_classes = nodes.NODE_CLASS_MAPPINGS
    by_id = {n["id"]: n for n in workflow["nodes"]}
    links = {}
    for link in workflow.get("links", []):
        link_id, src, src_slot, dst, dst_slot = link[:5]
        if src not in by_id or dst not in by_id:
            raise WorkflowError(f"link {link_id} joins node {src} to node {dst}, but one of them does not exist")
        links[link_id] = (src, src_slot)

    def source(link_id, where):
        if link_id not in links:
            raise WorkflowError(f"{where} uses link {link_id}, which is not in the workflow's links")
        src, slot = links[link_id]
        node = by_id[src]
        if node["type"] in PASS_THROUGH:
            up = [i.get("link") for i in node.get("inputs", []) if i.get("link") is not None]
            if not up:
                raise WorkflowError(f"Reroute node {src} feeding {where} has no input")
            return source(up[0], where)
        return [str(src), slot]

    prompt = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY or kind in PASS_THROUGH or node.get("mode", 0) in (2, 4):
            continue
        cls = node_classes.get(kind)
        if cls is None:
            raise WorkflowError(f"node {node['id']} is of type {kind!r}, which this ComfyUI does not have (missing custom node?)")
        linked = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs, vi = {}, 0
        for name, spec in widget_inputs(cls):
            value, has_value = None, False
            if is_widget(spec):
                if vi < len(values):
                    value, has_value = values[vi], True
                vi += 1
                if (spec[1] if len(spec) > 1 else {}).get("control_after_generate"):
                    vi += 1
            if name in linked:
                inputs[name] = source(linked[name], f"node {node['id']} ({kind}) input {name!r}")
            elif has_value:
                inputs[name] = value
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs, "_meta": {"title": node.get("title", kind)}}
    return prompt


def find(prompt: dict, class_type: str) -> list[str]:
    return [k for k, v in prompt.items() if v["class_type"] == class_type]
