#!/usr/bin/env python3
"""qapi-doc.py — generate the QMP reference (Markdown) from qapi-schema.json.

    python3 scripts/qapi-doc.py qapi-schema.json > docs/qmp-reference.md   (make docs)

The output depends only on the schema, so the committed docs/qmp-reference.md can be
checked for staleness by regenerating it (tests/functional/qmp-docs.sh does).
"""

import json
import sys


def type_link(t, named):
    if isinstance(t, list):
        return "list of %s" % type_link(t[0], named)
    if t in named:
        return "[`%s`](#%s)" % (t, anchor(t))
    return "`%s`" % t


def anchor(name):
    """GitHub's heading anchor for a heading that is just the name."""
    return name.lower()


def cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def members_table(out, members, named):
    if not members:
        out.append("No members.\n")
        return
    out.append("| Name | Type | Required | Description |")
    out.append("|---|---|---|---|")
    for m in members:
        out.append("| `%s` | %s | %s | %s |" % (
            m["name"], type_link(m["type"], named),
            "no" if m.get("optional") else "yes", cell(m["doc"])))
    out.append("")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "qapi-schema.json"
    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    defs = schema["definitions"]
    named = {}
    for d in defs:
        for meta in ("struct", "union", "enum"):
            if meta in d:
                named[d[meta]] = d

    out = []
    out.append("# vmad QMP reference")
    out.append("")
    out.append("<!-- Generated from qapi-schema.json by scripts/qapi-doc.py (make docs). "
               "Do not edit. -->")
    out.append("")
    out.append(schema["doc"])
    out.append("")
    out.append("Protocol: QEMU's QMP. On connect the server sends a greeting; the client "
               "sends `qmp_capabilities`; then commands `{\"execute\": NAME, \"arguments\": "
               "{...}, \"id\": ANY}` are answered in order with `{\"return\": ...}` or "
               "`{\"error\": {\"class\": ..., \"desc\": ...}}`, echoing `id`. Every message "
               "is one JSON object followed by CRLF. Events look like `{\"timestamp\": "
               "{\"seconds\": S, \"microseconds\": U}, \"event\": NAME, \"data\": {...}}`. "
               "Arguments are checked against this schema before the command runs: a "
               "missing, unknown or wrongly typed argument fails with `GenericError` and "
               "nothing happens.")
    out.append("")

    commands = [d for d in defs if "command" in d]
    events = [d for d in defs if "event" in d]
    types = [d for d in defs if any(k in d for k in ("struct", "union", "enum"))]

    out.append("## Contents")
    out.append("")
    out.append("* Commands: " + ", ".join("[`%s`](#%s)" % (c["command"], anchor(c["command"]))
                                          for c in commands))
    out.append("* Events: " + ", ".join("[`%s`](#%s)" % (e["event"], anchor(e["event"]))
                                        for e in events))
    out.append("* Types: " + ", ".join("[`%s`](#%s)" % (n, anchor(n))
                                       for n in (next(d[k] for k in ("struct", "union", "enum")
                                                      if k in d) for d in types)))
    out.append("")

    out.append("## Commands")
    out.append("")
    for c in commands:
        out.append("### %s" % c["command"])
        out.append("")
        out.append(c["doc"])
        out.append("")
        args = c.get("arguments")
        out.append("**Arguments:**")
        out.append("")
        if args is None:
            out.append("None.\n")
        elif isinstance(args, str):
            out.append("The members of %s.\n" % type_link(args, named))
        else:
            members_table(out, args, named)
        ret = c.get("returns")
        out.append("**Returns:** %s" % (
            "%s — %s" % (type_link(ret["type"], named), ret["doc"]) if ret else "`{}`"))
        out.append("")
        if c.get("example"):
            out.append("**Example:**")
            out.append("")
            out.append("```")
            out.extend(c["example"])
            out.append("```")
            out.append("")

    out.append("## Events")
    out.append("")
    for e in events:
        out.append("### %s" % e["event"])
        out.append("")
        out.append(e["doc"])
        out.append("")
        out.append("**Data:**")
        out.append("")
        members_table(out, e.get("data"), named)
        if e.get("example"):
            out.append("**Example:**")
            out.append("")
            out.append("```")
            out.extend(e["example"])
            out.append("```")
            out.append("")

    out.append("## Types")
    out.append("")
    for d in types:
        if "enum" in d:
            out.append("### %s" % d["enum"])
            out.append("")
            out.append("Enumeration. " + d["doc"])
            out.append("")
            out.append("| Value | Description |")
            out.append("|---|---|")
            for v in d["values"]:
                out.append("| `%s` | %s |" % (v["name"], cell(v["doc"])))
            out.append("")
        elif "struct" in d:
            out.append("### %s" % d["struct"])
            out.append("")
            out.append("Object. " + d["doc"])
            out.append("")
            members_table(out, d["members"], named)
        else:
            out.append("### %s" % d["union"])
            out.append("")
            out.append("Object, one of several shapes chosen by `%s`. %s" % (
                d["discriminator"], d["doc"]))
            out.append("")
            out.append("Members in every case:")
            out.append("")
            members_table(out, d["base"], named)
            out.append("Further members by `%s`:" % d["discriminator"])
            out.append("")
            out.append("| `%s` | Members of |" % d["discriminator"])
            out.append("|---|---|")
            for value, branch in d["branches"].items():
                out.append("| `%s` | %s |" % (value, type_link(branch, named)))
            out.append("")

    sys.stdout.write("\n".join(out).rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
