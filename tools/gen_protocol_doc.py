#!/usr/bin/env python3
"""Prints the message tables of common/PROTOCOL.md from common/include/runnel/common/protocol.h.

Each struct's `Visit` lists its fields in wire order; this script reads the field types from the
struct body and the order from Visit, so the document cannot drift from the code:
    tools/gen_protocol_doc.py > /tmp/messages.md
"""
import re
import sys

src = open(sys.argv[1] if len(sys.argv) > 1 else "common/include/runnel/common/protocol.h").read()

WIRE = {
    "bool": "bool", "uint8_t": "u8", "int8_t": "i8", "uint16_t": "u16", "int16_t": "i16",
    "uint32_t": "u32", "int32_t": "i32", "int64_t": "i64", "std::string": "string",
    "std::optional<std::string>": "string?", "Payload": "bytes (record batches)",
    "ConfigEntries": "[string string]", "ItemError": "ItemError",
}
ENUMS = {"OffsetSpec": "u8", "StartKind": "u8", "GroupModeWire": "u8", "RecordStateWire": "u8",
         "PendingKindWire": "u8",
         "wire::ErrorCode": "u16"}

structs = {}
order = []
for m in re.finditer(r"struct (\w+) \{(.*?)\n\};", src, re.S):
    name, body = m.group(1), m.group(2)
    api = re.search(r"kApi = wire::Api::k(\w+)", body)
    fields = {}
    for f in re.finditer(r"^\s+([\w:<>, ]+?) (\w+)(?: = [^;]+)?;(?:[ \t]*//[ \t]*(.*))?$", body, re.M):
        typ, fname, comment = f.group(1).strip(), f.group(2), f.group(3) or ""
        if typ.startswith("static") or typ.startswith("return"):
            continue
        fields[fname] = (typ, comment)
    visit = re.search(r"void Visit\(V&(?: v)?\) \{\s*(?:v\((.*?)\);)?\s*\}", body, re.S)
    if not visit:
        continue  # not a message (a helper such as MinWireSizer)
    names = [n.strip() for n in visit.group(1).split(",")] if visit and visit.group(1) else []
    structs[name] = (api.group(1) if api else None, [(n, *fields.get(n, ("?", ""))) for n in names])
    order.append(name)

def wire_type(t):
    v = re.match(r"std::vector<(.+)>$", t)
    if v:
        return "[" + wire_type(v.group(1)) + "]"
    if t in WIRE:
        return WIRE[t]
    if t in ENUMS:
        return ENUMS[t] + " (" + t.split("::")[-1] + ")"
    if t.startswith("proto::"):
        return t[len("proto::"):]
    return t

for name in order:
    if name == "Payload":
        continue
    api, fields = structs[name]
    title = f"### {name}" + (f" (api `{api}`)" if api else "")
    print(title)
    print()
    if not fields:
        print("No fields.")
        print()
        continue
    print("| field | type | notes |")
    print("|---|---|---|")
    for fname, typ, comment in fields:
        print(f"| {fname} | {wire_type(typ)} | {comment} |")
    print()
