#!/usr/bin/env python3
"""Generates runnel/kafka/messages.{h,cc} from the Kafka schema files in broker/kafka/schema/.

Usage: codegen.py --out-dir DIR SCHEMA.ks...

The schema format is described in broker/kafka/README.md. A malformed schema file is reported
as `file:line: what` on stderr with exit status 1. Standard library only.
"""

import argparse
import os
import re
import sys

# ---- Schema model ----

PRIMITIVES = {
    # name: (C++ type, fixed wire size or None, default literal)
    "bool": ("bool", 1, "false"),
    "int8": ("int8_t", 1, "0"),
    "int16": ("int16_t", 2, "0"),
    "int32": ("int32_t", 4, "0"),
    "int64": ("int64_t", 8, "0"),
    "uint16": ("uint16_t", 2, "0"),
    "float64": ("double", 8, "0"),
    "uuid": ("Uuid", 16, None),
    "string": ("std::string", None, None),
    "bytes": ("std::string", None, None),
    "records": ("std::optional<std::string>", None, None),
}
INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint16": (0, (1 << 16) - 1),
}
NULLABLE_PRIMITIVES = {"string", "bytes", "records"}
MAX_VERSION = 0x7FFF
NEVER_FLEXIBLE = 0x7FFF

# Names that would collide with the generated code's own identifiers.
CPP_KEYWORDS = set(
    """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t
    char16_t char32_t class compl concept const consteval constexpr constinit const_cast continue
    co_await co_return co_yield decltype default delete do double dynamic_cast else enum explicit
    export extern false float for friend goto if inline int long mutable namespace new noexcept
    not not_eq nullptr operator or or_eq private protected public register reinterpret_cast
    requires return short signed sizeof static static_assert static_cast struct switch template
    this thread_local throw true try typedef typeid typename union unsigned using virtual void
    volatile wchar_t while xor xor_eq""".split())
RESERVED_FIELDS = CPP_KEYWORDS | {"r", "w", "v", "version", "flexible", "visit", "n", "i"}
RESERVED_STRUCTS = {"Status", "Reader", "Writer", "ApiInfo", "Uuid", "TypeList", "Request",
                    "Response"}

FIELD_RE = re.compile(r"^[a-z][a-z0-9_]*$")
STRUCT_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
API_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
RANGE_RE = re.compile(r"^(\d+)(\+|-(\d+))?$")
TYPE_RE = re.compile(r"^(\[)?([A-Za-z][A-Za-z0-9]*)(\])?(\?([0-9+-]*))?$")


class SchemaError(Exception):
    def __init__(self, path, line, what):
        super().__init__(f"{path}:{line}: {what}")


class Field:
    def __init__(self, line):
        self.line = line
        self.name = ""
        self.is_array = False
        self.elem = ""  # primitive name or struct name
        self.struct = None  # Struct for arrays of structs
        self.versions = None  # (lo, hi) clipped to the enclosing range
        self.nullable = None  # (lo, hi) clipped to self.versions, or None
        self.has_nullable = False  # the C++ type is optional
        self.default = None  # C++ literal
        self.path = ""  # dotted path from the message, for error messages

    @property
    def is_struct_array(self):
        return self.struct is not None


class Struct:
    def __init__(self, name, line, versions):
        self.name = name
        self.line = line
        self.versions = versions  # (lo, hi) where the struct is present
        self.fields = []
        self.cpp_name = ""  # qualified C++ name


class Message:
    def __init__(self, name, line):
        self.name = name  # e.g. ProduceRequest
        self.line = line
        self.root = None  # Struct holding the top-level fields
        self.structs = []  # nested structs, children before parents


class Api:
    def __init__(self, path):
        self.path = path
        self.key = 0
        self.name = ""
        self.min = 0
        self.max = 0
        self.first_flexible = NEVER_FLEXIBLE
        self.comment = []
        self.request = None
        self.response = None


def snake_case(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def parse_range(text, path, line, what):
    m = RANGE_RE.match(text)
    if not m:
        raise SchemaError(path, line, f"bad {what} '{text}' (expected N, N+ or N-M)")
    lo = int(m.group(1))
    if m.group(2) is None:
        hi = lo
    elif m.group(2) == "+":
        hi = MAX_VERSION
    else:
        hi = int(m.group(3))
    if lo > MAX_VERSION or hi > MAX_VERSION:
        raise SchemaError(path, line, f"{what} '{text}' is beyond {MAX_VERSION}")
    if lo > hi:
        raise SchemaError(path, line, f"empty {what} '{text}'")
    return lo, hi


def intersect(a, b):
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


def parse_default(text, elem, path, line):
    if elem == "bool":
        if text not in ("true", "false"):
            raise SchemaError(path, line, f"default '{text}' of a bool must be true or false")
        return text
    if elem in INT_RANGES:
        try:
            value = int(text, 0)
        except ValueError:
            raise SchemaError(path, line, f"default '{text}' is not an integer")
        lo, hi = INT_RANGES[elem]
        if not lo <= value <= hi:
            raise SchemaError(path, line, f"default {text} does not fit in {elem}")
        cpp = PRIMITIVES[elem][0]
        if value == lo and lo < 0:
            return f"std::numeric_limits<{cpp}>::min()"
        return str(value)
    if elem == "float64":
        try:
            float(text)
        except ValueError:
            raise SchemaError(path, line, f"default '{text}' is not a number")
        return text if any(c in text for c in ".eE") else text + ".0"
    raise SchemaError(path, line, f"a default is allowed only on bool, integer and float64 "
                                  f"fields, not on {elem}")


def parse_file(path):
    api = Api(path)
    with open(path, encoding="utf-8") as f:
        raw_lines = f.read().split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()

    header_seen = False
    section = None  # current Message
    # Indentation stack of (indent of the children, Struct); [0] is the message's root.
    stack = []
    last_field = None  # (indent, Field) of the previous field line
    struct_names = {}
    in_leading_comment = True

    def finish_message(msg):
        if msg is None:
            return
        check_structs(msg.root, path)
        collect_structs(msg, msg.root)

    for lineno, raw in enumerate(raw_lines, start=1):
        if "\t" in raw:
            raise SchemaError(path, lineno, "tab character (indent with spaces)")
        stripped = raw.strip()
        if stripped.startswith("#"):
            if in_leading_comment:
                api.comment.append(stripped[1:].strip())
            continue
        if "#" in stripped:
            stripped = stripped[:stripped.index("#")].rstrip()
        if not stripped:
            continue
        in_leading_comment = False
        indent = len(raw) - len(raw.lstrip(" "))
        tokens = stripped.split()

        if not header_seen:
            parse_api_line(api, tokens, path, lineno)
            header_seen = True
            continue

        if indent == 0:
            if tokens[0] not in ("request", "response") or len(tokens) != 1:
                raise SchemaError(path, lineno, f"expected 'request' or 'response', got "
                                                f"'{stripped}'")
            kind = tokens[0]
            if kind == "request" and (api.request or api.response):
                raise SchemaError(path, lineno, "'request' must come first, once")
            if kind == "response" and (api.response or not api.request):
                raise SchemaError(path, lineno, "'response' must follow 'request', once")
            finish_message(section)
            section = Message(api.name + kind.capitalize(), lineno)
            section.root = Struct(section.name, lineno, (api.min, api.max))
            section.root.cpp_name = section.name
            if kind == "request":
                api.request = section
            else:
                api.response = section
            stack = [(None, section.root)]
            last_field = None
            struct_names = {}
            continue

        if section is None:
            raise SchemaError(path, lineno, "field before 'request'")

        # Find the struct this field belongs to.
        child_indent, parent = stack[-1]
        if last_field is not None and indent > last_field[0]:
            prev = last_field[1]
            if not prev.is_struct_array:
                raise SchemaError(path, lineno, f"only a [Struct] field can have fields "
                                                f"indented under it ('{prev.name}' is not one)")
            parent = prev.struct
            stack.append((indent, parent))
        else:
            while stack and stack[-1][0] is not None and indent < stack[-1][0]:
                stack.pop()
            child_indent, parent = stack[-1]
            if child_indent is None:
                stack[-1] = (indent, parent)
            elif indent != child_indent:
                raise SchemaError(path, lineno, f"indentation {indent} matches no enclosing "
                                                f"level (expected {child_indent})")
        field = parse_field(tokens, parent, section, struct_names, api, path, lineno)
        parent.fields.append(field)
        last_field = (indent, field)

    finish_message(section)
    if not header_seen:
        raise SchemaError(path, max(1, len(raw_lines)), "no 'api' line")
    if api.request is None:
        raise SchemaError(path, max(1, len(raw_lines)), "no 'request' section")
    if api.response is None:
        raise SchemaError(path, max(1, len(raw_lines)), "no 'response' section")
    expected = snake_case(api.name) + ".ks"
    if os.path.basename(path) != expected:
        raise SchemaError(path, api.line, f"the file for api {api.name} must be named {expected}")
    return api


def parse_api_line(api, tokens, path, lineno):
    # api <key> <Name> versions <range> [flexible <N>+|none]
    api.line = lineno
    if len(tokens) not in (5, 7) or tokens[0] != "api" or tokens[3] != "versions":
        raise SchemaError(path, lineno, "expected 'api <key> <Name> versions <N-M> "
                                        "[flexible <N>+|none]'")
    if not tokens[1].isdigit() or int(tokens[1]) > 0x7FFF:
        raise SchemaError(path, lineno, f"bad api key '{tokens[1]}'")
    api.key = int(tokens[1])
    if not API_RE.match(tokens[2]) or tokens[2] in RESERVED_STRUCTS:
        raise SchemaError(path, lineno, f"bad api name '{tokens[2]}' (PascalCase)")
    api.name = tokens[2]
    lo, hi = parse_range(tokens[4], path, lineno, "version range")
    if hi == MAX_VERSION and tokens[4].endswith("+"):
        raise SchemaError(path, lineno, "the api's versions must be closed (N-M or N)")
    api.min, api.max = lo, hi
    if len(tokens) == 7:
        if tokens[5] != "flexible":
            raise SchemaError(path, lineno, f"expected 'flexible', got '{tokens[5]}'")
        if tokens[6] == "none":
            api.first_flexible = NEVER_FLEXIBLE
        else:
            m = re.match(r"^(\d+)\+$", tokens[6])
            if not m or int(m.group(1)) >= NEVER_FLEXIBLE:
                raise SchemaError(path, lineno, f"bad flexible version '{tokens[6]}' "
                                                f"(expected N+ or none)")
            api.first_flexible = int(m.group(1))


def parse_field(tokens, parent, msg, struct_names, api, path, lineno):
    field = Field(lineno)
    if len(tokens) < 2:
        raise SchemaError(path, lineno, "a field needs a name and a type")
    name = tokens[0]
    if not FIELD_RE.match(name):
        raise SchemaError(path, lineno, f"bad field name '{name}' (snake_case)")
    if name in RESERVED_FIELDS:
        raise SchemaError(path, lineno, f"field name '{name}' is reserved")
    if any(f.name == name for f in parent.fields):
        raise SchemaError(path, lineno, f"duplicate field '{name}' in {parent.name}")
    field.name = name
    field.path = name if parent is msg.root else f"{parent_path(msg, parent)}.{name}"

    m = TYPE_RE.match(tokens[1])
    if not m or bool(m.group(1)) != bool(m.group(3)):
        raise SchemaError(path, lineno, f"bad type '{tokens[1]}'")
    field.is_array = bool(m.group(1))
    field.elem = m.group(2)
    nullable_text = m.group(4)

    # Optional trailing tokens: a version range, '= default', 'tag N'.
    rest = tokens[2:]
    versions_text = None
    default_text = None
    while rest:
        tok = rest[0]
        if tok == "=":
            if len(rest) < 2:
                raise SchemaError(path, lineno, "'=' needs a value")
            if default_text is not None:
                raise SchemaError(path, lineno, "two defaults")
            default_text = rest[1]
            rest = rest[2:]
        elif tok == "tag":
            raise SchemaError(path, lineno, "tagged fields are not supported by this generator "
                                            "(leave them out: decoding skips unknown tags)")
        elif RANGE_RE.match(tok):
            if versions_text is not None:
                raise SchemaError(path, lineno, "two version ranges")
            if default_text is not None:
                raise SchemaError(path, lineno, "the version range goes before '= default'")
            versions_text = tok
            rest = rest[1:]
        else:
            raise SchemaError(path, lineno, f"unexpected '{tok}'")

    declared = (0, MAX_VERSION)
    if versions_text is not None:
        declared = parse_range(versions_text, path, lineno, "version range")
    field.versions = intersect(declared, parent.versions)
    if field.versions is None:
        raise SchemaError(path, lineno, f"field '{name}' is in no version of "
                                        f"{fmt_range(parent.versions)}")

    if field.is_array:
        if field.elem in PRIMITIVES:
            if field.elem == "records":
                raise SchemaError(path, lineno, "an array of records is not a Kafka type")
        else:
            if not STRUCT_RE.match(field.elem):
                raise SchemaError(path, lineno, f"bad struct name '{field.elem}' (PascalCase)")
            if field.elem in RESERVED_STRUCTS or field.elem.endswith(("Request", "Response")) \
                    and field.elem in (api.name + "Request", api.name + "Response"):
                raise SchemaError(path, lineno, f"struct name '{field.elem}' is reserved")
            if field.elem in struct_names:
                raise SchemaError(path, lineno, f"struct {field.elem} is already declared at "
                                                f"line {struct_names[field.elem]}")
            struct_names[field.elem] = lineno
            field.struct = Struct(field.elem, lineno, field.versions)
            field.struct.cpp_name = f"{msg.name}::{field.elem}"
    elif field.elem not in PRIMITIVES:
        raise SchemaError(path, lineno, f"unknown type '{field.elem}' (a struct must be an "
                                        f"array: [{field.elem}])")

    if nullable_text is not None:
        if not field.is_array and field.elem not in NULLABLE_PRIMITIVES:
            raise SchemaError(path, lineno, f"{field.elem} cannot be nullable")
        field.has_nullable = True
        spec = nullable_text[1:]
        nullable = (0, MAX_VERSION) if spec == "" else parse_range(spec, path, lineno,
                                                                  "nullable version range")
        field.nullable = intersect(nullable, field.versions)
        if field.nullable is None:
            raise SchemaError(path, lineno, f"nullable versions {spec} lie outside the field's "
                                            f"versions {fmt_range(field.versions)}")
    if field.elem == "records":
        field.has_nullable = True  # records are always std::optional<std::string>
    if default_text is not None:
        if field.is_array:
            raise SchemaError(path, lineno, "an array cannot have a default")
        field.default = parse_default(default_text, field.elem, path, lineno)
    return field


def parent_path(msg, struct):
    def walk(s, prefix):
        for f in s.fields:
            p = f.name if not prefix else f"{prefix}.{f.name}"
            if f.struct is struct:
                return p
            if f.struct is not None:
                found = walk(f.struct, p)
                if found:
                    return found
        return None
    return walk(msg.root, "")


def fmt_range(r):
    lo, hi = r
    if hi == MAX_VERSION:
        return f"{lo}+"
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def check_structs(struct, path):
    for f in struct.fields:
        if f.struct is not None:
            if not f.struct.fields:
                raise SchemaError(path, f.line, f"[{f.elem}] needs fields indented under it")
            # An element that takes no bytes would let a huge declared count through.
            for version in range(f.versions[0], f.versions[1] + 1):
                if not any(c.versions[0] <= version <= c.versions[1] for c in f.struct.fields):
                    raise SchemaError(path, f.line, f"{f.elem} has no field in version {version}"
                                                    f" (an element would take no bytes)")
            check_structs(f.struct, path)


def collect_structs(msg, struct):
    for f in struct.fields:
        if f.struct is not None:
            collect_structs(msg, f.struct)
            msg.structs.append(f.struct)


# ---- C++ generation ----

def cpp_type(f):
    if f.struct is not None:
        base = f"std::vector<{f.struct.name}>"
        return f"std::optional<{base}>" if f.has_nullable else base
    prim = PRIMITIVES[f.elem][0]
    if f.is_array:
        base = f"std::vector<{prim}>"
        return f"std::optional<{base}>" if f.has_nullable else base
    if f.has_nullable and f.elem != "records":
        return f"std::optional<{prim}>"
    return prim


def cpp_default(f):
    if f.is_array or f.has_nullable:
        return None
    if f.default is not None:
        return f.default
    return PRIMITIVES[f.elem][2]


def version_cond(inner, outer):
    """A C++ condition that `version` lies in `inner`, knowing it lies in `outer`."""
    parts = []
    if inner[0] > outer[0]:
        parts.append(f"version >= {inner[0]}")
    if inner[1] < outer[1]:
        parts.append(f"version <= {inner[1]}")
    return " && ".join(parts)


def nullable_expr(f):
    if f.nullable is None:
        return "false"
    cond = version_cond(f.nullable, f.versions)
    return f"({cond})" if cond else "true"


def field_comment(f):
    notes = [f"v{fmt_range(f.versions)}"]
    if f.nullable is not None:
        if f.nullable == f.versions:
            notes.append("nullable")
        else:
            notes.append(f"nullable v{fmt_range(f.nullable)}")
    return ", ".join(notes)


class Out:
    def __init__(self):
        self.lines = []

    def __call__(self, text=""):
        self.lines.append(text)

    def text(self):
        return "\n".join(self.lines) + "\n"


def emit_struct_decl(out, s, indent):
    pad = " " * indent
    out(f"{pad}struct {s.name} {{")
    for f in s.fields:
        d = cpp_default(f)
        init = f" = {d}" if d is not None else ""
        decl = f"{pad}  {cpp_type(f)} {f.name}{init};"
        out(f"{decl}  // {field_comment(f)}")
    out(f"{pad}  bool operator==(const {s.name}&) const = default;")
    out(f"{pad}}};")


def emit_header(apis):
    out = Out()
    out("// Generated by broker/kafka/codegen.py from broker/kafka/schema/*.ks. DO NOT EDIT.")
    out("// One struct per Kafka request and response; see broker/kafka/README.md.")
    out("#pragma once")
    out()
    out("#include <array>")
    out("#include <cstdint>")
    out("#include <limits>")
    out("#include <optional>")
    out("#include <span>")
    out("#include <string>")
    out("#include <string_view>")
    out("#include <vector>")
    out()
    out('#include "runnel/common/status.h"')
    out('#include "runnel/kafka/codec.h"')
    out()
    out("namespace runnel::kafka {")
    out()
    out("// One API the codec covers: its key, name, the versions it decodes and encodes, and the")
    out("// first flexible version (kNeverFlexible if none).")
    out("struct ApiInfo {")
    out("  int16_t key;")
    out("  std::string_view name;")
    out("  int16_t min_version, max_version, first_flexible;")
    out("};")
    out()
    out("// The API with this key, or nullptr.")
    out("const ApiInfo* FindApi(int16_t key);")
    out("// Every API, by key.")
    out("std::span<const ApiInfo> AllApis();")
    out()
    out("// A list of types, for code that handles every message (tests, fuzzing).")
    out("template <class... T>")
    out("struct TypeList {};")
    out()
    for api in apis:
        out(f"struct {api.name}Request;")
        out(f"struct {api.name}Response;")
    out()
    out("// Every message struct below has kApiKey, kMinVersion, kMaxVersion, kFirstFlexible, and:")
    out("//   Status Decode(Reader& r, int16_t version): the body only (after the request header).")
    out("//     Resets *this first; fields absent in `version` keep their defaults. Returns")
    out("//     Corruption naming the message, version and field for truncated or invalid input,")
    out("//     InvalidArgument for a version outside [kMinVersion, kMaxVersion]. Trailing bytes")
    out("//     are left in `r` for the caller to judge.")
    out("//   void Encode(Writer& w, int16_t version): writes the fields present in `version`. May")
    out("//     MOVE OUT bytes/records values of kZeroCopyBytes or more (zero copy), so encode a")
    out("//     message once. A version outside the range is a programming error (assert). A null")
    out("//     in a version where the field is not nullable is written as empty (the safe value).")
    out()
    for api in apis:
        for msg, other, kind in ((api.request, api.response, "Response"),
                                 (api.response, api.request, "Request")):
            for c in api.comment:
                out(f"// {c}".rstrip())
            out(f"struct {msg.name} {{")
            out(f"  static constexpr int16_t kApiKey = {api.key};")
            out(f"  static constexpr int16_t kMinVersion = {api.min}, kMaxVersion = {api.max}, "
                f"kFirstFlexible = {api.first_flexible};")
            out(f'  static constexpr std::string_view kName = "{msg.name}";')
            out(f"  using {kind} = {other.name};")
            out()
            for s in msg.structs:
                emit_struct_decl(out, s, 2)
                out()
            for f in msg.root.fields:
                d = cpp_default(f)
                init = f" = {d}" if d is not None else ""
                out(f"  {cpp_type(f)} {f.name}{init};  // {field_comment(f)}")
            if msg.root.fields:
                out()
            out("  Status Decode(Reader& r, int16_t version);")
            out("  void Encode(Writer& w, int16_t version);")
            out(f"  bool operator==(const {msg.name}&) const = default;")
            out("};")
            out()
    out("using AllRequestTypes = TypeList<" +
        ", ".join(f"{a.name}Request" for a in apis) + ">;")
    out("using AllResponseTypes = TypeList<" +
        ", ".join(f"{a.name}Response" for a in apis) + ">;")
    out()
    out("// ForEachField(m, visit) calls visit(std::string_view name, field&) for every field of m")
    out("// in declaration order, whatever the version (reflection for tests, fuzzing, logging).")
    out("// A visitor recurses into struct elements by calling ForEachField on them.")
    for api in apis:
        for msg in (api.request, api.response):
            for s in msg.structs + [msg.root]:
                for const in ("", "const "):
                    out(f"template <class V>")
                    out(f"void ForEachField({const}{s.cpp_name}& m, [[maybe_unused]] V&& visit) {{")
                    for f in s.fields:
                        out(f'  visit(std::string_view("{f.name}"), m.{f.name});')
                    if not s.fields:
                        out("  static_cast<void>(m);")
                    out("}")
    out()
    out("}  // namespace runnel::kafka")
    return out.text()


def emit_decode_field(out, f, outer, msg):
    cond = version_cond(f.versions, outer)
    ind = "  "
    if cond:
        out(f"  if ({cond}) {{")
        ind = "    "
    elif f.is_array:
        out("  {")  # a scope for the count
        ind = "    "
    fail = f'return r.Fail("{msg.name}", version, "{f.path}");'
    if f.is_array:
        if f.struct is not None:
            min_bytes = f"MinWireBytes(version, flexible, static_cast<const {f.struct.cpp_name}*>(nullptr))"
        else:
            min_bytes = min_wire_bytes(f.elem)
        nullable = nullable_expr(f) if f.has_nullable else "false"
        out(f"{ind}int32_t n = 0;")
        out(f"{ind}if (!r.ReadArrayLength(flexible, {nullable}, {min_bytes}, &n)) {fail}")
        target = f"v.{f.name}"
        body = ind
        if f.has_nullable:
            out(f"{ind}if (n >= 0) {{")
            out(f"{ind}  auto& a = v.{f.name}.emplace();")
            target = "a"
            body = ind + "  "
        out(f"{body}ReserveBounded({target}, n, r);")
        out(f"{body}for (int32_t i = 0; i < n; ++i) {{")
        if f.struct is not None:
            out(f"{body}  RUNNEL_RETURN_IF_ERROR(DecodeStruct(r, version, flexible, "
                f"{target}.emplace_back()));")
        else:
            out(f"{body}  auto& e = {target}.emplace_back();")
            out(f"{body}  if (!{read_call(f.elem, 'e', 'false')}) {fail}")
        out(f"{body}}}")
        if f.has_nullable:
            out(f"{ind}}}")
    else:
        target = f"v.{f.name}"
        nullable = nullable_expr(f) if f.has_nullable else "false"
        out(f"{ind}if (!{read_call(f.elem, target, nullable, f.has_nullable)}) {fail}")
    if cond or f.is_array:
        out("  }")


def read_call(elem, target, nullable, optional=False):
    if elem == "string":
        if optional:
            return f"r.ReadNullableString(flexible, {nullable}, &{target})"
        return f"r.ReadString(flexible, &{target})"
    if elem == "bytes":
        if optional:
            return f"r.ReadNullableBytes(flexible, {nullable}, &{target})"
        return f"r.ReadBytes(flexible, &{target})"
    if elem == "records":
        return f"r.ReadNullableBytes(flexible, {nullable}, &{target})"
    fn = {"bool": "ReadBool", "int8": "ReadInt8", "int16": "ReadInt16", "int32": "ReadInt32",
          "int64": "ReadInt64", "uint16": "ReadUint16", "float64": "ReadFloat64",
          "uuid": "ReadUuid"}[elem]
    return f"r.{fn}(&{target})"


def write_call(elem, target, nullable, optional=False):
    if elem == "string":
        if optional:
            return f"w.WriteNullableString(flexible, {nullable}, {target})"
        return f"w.WriteString(flexible, {target})"
    if elem == "bytes":
        if optional:
            return f"w.TakeNullableBytes(flexible, {nullable}, std::move({target}))"
        return f"w.TakeBytes(flexible, std::move({target}))"
    if elem == "records":
        return f"w.TakeNullableBytes(flexible, {nullable}, std::move({target}))"
    fn = {"bool": "WriteBool", "int8": "WriteInt8", "int16": "WriteInt16", "int32": "WriteInt32",
          "int64": "WriteInt64", "uint16": "WriteUint16", "float64": "WriteFloat64",
          "uuid": "WriteUuid"}[elem]
    return f"w.{fn}({target})"


def emit_encode_field(out, f, outer):
    cond = version_cond(f.versions, outer)
    ind = "  "
    if cond:
        out(f"  if ({cond}) {{")
        ind = "    "
    if f.is_array:
        src = f"v.{f.name}"
        body = ind
        if f.has_nullable:
            out(f"{ind}if (!v.{f.name}.has_value()) {{")
            out(f"{ind}  w.WriteArrayLength(flexible, {nullable_expr(f)} ? -1 : 0);")
            out(f"{ind}}} else {{")
            src = f"(*v.{f.name})"
            body = ind + "  "
        out(f"{body}w.WriteArrayLength(flexible, static_cast<int32_t>({src}.size()));")
        out(f"{body}for (auto& e : {src}) {{")
        if f.struct is not None:
            out(f"{body}  EncodeStruct(w, version, flexible, e);")
        else:
            out(f"{body}  {write_call(f.elem, 'e', 'false')};")
        out(f"{body}}}")
        if f.has_nullable:
            out(f"{ind}}}")
    else:
        nullable = nullable_expr(f) if f.has_nullable else "false"
        out(f"{ind}{write_call(f.elem, 'v.' + f.name, nullable, f.has_nullable)};")
    if cond:
        out("  }")


def min_wire_bytes(elem):
    """A C++ expression: the fewest bytes one `elem` value takes (its length prefix when it has
    one; a null string, bytes or records is its prefix alone)."""
    size = PRIMITIVES[elem][1]
    if size is not None:
        return str(size)
    return "(flexible ? 1 : 2)" if elem == "string" else "(flexible ? 1 : 4)"


def emit_struct_codec(out, s, msg):
    # The fewest bytes one element of this struct takes in `version`: the array count bound of
    # its arrays (Reader::ReadArrayLength), so a count the remaining bytes cannot hold is refused
    # before anything is allocated.
    out(f"[[maybe_unused]] size_t MinWireBytes([[maybe_unused]] int16_t version, bool flexible,")
    out(f"                                     const {s.cpp_name}*) {{")
    out("  size_t n = flexible ? 1 : 0;  // the tagged-field count")
    for f in s.fields:
        cond = version_cond(f.versions, s.versions)
        m = "(flexible ? 1 : 4)" if f.is_array else min_wire_bytes(f.elem)
        out(f"  if ({cond}) n += {m};" if cond else f"  n += {m};")
    out("  return n;")
    out("}")
    out()
    out(f"Status DecodeStruct(Reader& r, [[maybe_unused]] int16_t version, "
        f"[[maybe_unused]] bool flexible,")
    out(f"                    {s.cpp_name}& v) {{")
    for f in s.fields:
        emit_decode_field(out, f, s.versions, msg)
    tail_what = f"{s.path} tagged fields" if s.path else "tagged fields"
    out(f'  if (flexible && !r.SkipTaggedFields()) return r.Fail("{msg.name}", version, '
        f'"{tail_what}");')
    if not s.fields:
        out("  static_cast<void>(v);")
    out("  return Status::OK();")
    out("}")
    out()
    out(f"void EncodeStruct(Writer& w, [[maybe_unused]] int16_t version, "
        f"[[maybe_unused]] bool flexible,")
    out(f"                  {s.cpp_name}& v) {{")
    for f in s.fields:
        emit_encode_field(out, f, s.versions)
    if not s.fields:
        out("  static_cast<void>(v);")
    out("  if (flexible) w.WriteEmptyTaggedFields();")
    out("}")
    out()


def emit_source(apis):
    out = Out()
    out("// Generated by broker/kafka/codegen.py from broker/kafka/schema/*.ks. DO NOT EDIT.")
    out('#include "runnel/kafka/messages.h"')
    out()
    out("#include <algorithm>")
    out("#include <cassert>")
    out("#include <string>")
    out("#include <utility>")
    out()
    out("namespace runnel::kafka {")
    out()
    out("namespace {")
    out()
    out("constexpr ApiInfo kApis[] = {")
    for api in sorted(apis, key=lambda a: a.key):
        out(f'    {{{api.key}, "{api.name}", {api.min}, {api.max}, {api.first_flexible}}},')
    out("};")
    out()
    out("Status BadVersion(std::string_view message, int16_t version, int16_t lo, int16_t hi) {")
    out('  return Status::InvalidArgument("kafka " + std::string(message) + ": version " +')
    out('                                 std::to_string(version) + " is outside " +')
    out('                                 std::to_string(lo) + "-" + std::to_string(hi));')
    out("}")
    out()
    for api in apis:
        for msg in (api.request, api.response):
            for s in msg.structs:
                s.path = parent_path(msg, s)
            msg.root.path = ""
            out(f"// ---- {msg.name} ----")
            out()
            for s in msg.structs + [msg.root]:
                emit_struct_codec(out, s, msg)
    out("}  // namespace")
    out()
    out("const ApiInfo* FindApi(int16_t key) {")
    out("  const auto* it = std::lower_bound(std::begin(kApis), std::end(kApis), key,")
    out("                                    [](const ApiInfo& a, int16_t k) { return a.key < k; });")
    out("  return it != std::end(kApis) && it->key == key ? it : nullptr;")
    out("}")
    out()
    out("std::span<const ApiInfo> AllApis() { return kApis; }")
    out()
    for api in apis:
        for msg in (api.request, api.response):
            n = msg.name
            out(f"Status {n}::Decode(Reader& r, int16_t version) {{")
            out("  if (version < kMinVersion || version > kMaxVersion) {")
            out("    return BadVersion(kName, version, kMinVersion, kMaxVersion);")
            out("  }")
            out(f"  *this = {n}{{}};")
            out("  return DecodeStruct(r, version, version >= kFirstFlexible, *this);")
            out("}")
            out()
            out(f"void {n}::Encode(Writer& w, int16_t version) {{")
            out("  assert(version >= kMinVersion && version <= kMaxVersion);")
            out("  EncodeStruct(w, version, version >= kFirstFlexible, *this);")
            out("}")
            out()
    out("}  // namespace runnel::kafka")
    return out.text()


def write_file(path, text):
    # Always written (never skipped when unchanged): the build tool compares timestamps.
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", required=True, help="directory for messages.h and messages.cc")
    ap.add_argument("schemas", nargs="+", help="schema files (.ks)")
    args = ap.parse_args()

    apis = []
    failed = False
    for path in args.schemas:  # each file's first error, then stop
        try:
            apis.append(parse_file(path))
        except SchemaError as e:
            print(e, file=sys.stderr)
            failed = True
        except OSError as e:
            print(f"codegen.py: {e}", file=sys.stderr)
            failed = True
    if failed:
        return 1
    try:
        by_key, by_name = {}, {}
        for api in apis:
            if api.key in by_key:
                raise SchemaError(api.path, api.line, f"api key {api.key} is also used by "
                                                      f"{by_key[api.key].path}")
            if api.name in by_name:
                raise SchemaError(api.path, api.line, f"api {api.name} is also defined in "
                                                      f"{by_name[api.name].path}")
            by_key[api.key] = api
            by_name[api.name] = api
    except SchemaError as e:
        print(e, file=sys.stderr)
        return 1

    apis.sort(key=lambda a: a.key)
    os.makedirs(args.out_dir, exist_ok=True)
    write_file(os.path.join(args.out_dir, "messages.h"), emit_header(apis))
    write_file(os.path.join(args.out_dir, "messages.cc"), emit_source(apis))
    return 0


if __name__ == "__main__":
    sys.exit(main())
