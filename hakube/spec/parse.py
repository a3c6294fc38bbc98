"""From the bytes of a spec file to plain data, refusing hostile or broken input.

A spec comes from a user's editor, but also from a pasted snippet, a wrong file or an
attacker's merge request, so reading it must stay cheap and must fail clearly:

- only UTF-8 text is read (a binary file, a UTF-16/32 file or stray bytes are named as such);
- at most `MAX_BYTES` are read, whatever the file is (a device, a huge log);
- mappings and lists nest at most `MAX_DEPTH` levels, checked on the parser's event stream
  before anything recursive runs (PyYAML's composer recurses once per level);
- aliases may not blow the document up: the size of the document with every alias
  expanded is counted on the composed node graph, where aliases are shared nodes and
  counting is linear, before anything walks the expanded document (the line index, the
  model's validation), which for a "billion laughs" file costs time and memory
  exponential in the nesting of aliases; recursive aliases are refused;
- a key given twice in one mapping is an error naming both lines (PyYAML keeps the last
  one silently).

Every refusal is a `SpecError` with a line and a fix; nothing here raises anything else.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

from .problems import Problem, SpecError, format_path

MAX_BYTES = 1 << 20  # 1 MiB: a spec of a thousand hosts is far below
MAX_DEPTH = 32  # the spec itself nests 7 levels
MAX_NODES = 50_000  # values in the document with every alias expanded

MERGE_TAG = "tag:yaml.org,2002:merge"
FIX_UTF8 = "save the file as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 in.yaml > cluster.yaml`)"
FIX_TEXT = "give the cluster spec, a UTF-8 YAML text file (`hakube init` writes one)"


def read(path: Path) -> str:
    """The text of a spec file, or a SpecError saying why it cannot be one."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(source, [Problem("", f"file {path} does not exist",
                                         "create one with `hakube init`")]) from None
    except IsADirectoryError:
        raise SpecError(source, [Problem("", f"{path} is a directory, not a file",
                                         "give the path of the cluster spec file")]) from None
    except OSError as e:
        raise SpecError(source, [Problem("", f"cannot read {path}: {e.strerror or e}")]) from None
    if len(data) > MAX_BYTES:
        raise SpecError(source, [Problem("", f"the file is larger than {MAX_BYTES // 1024} KiB; "
                                         "a cluster spec is a few KiB of YAML", FIX_TEXT, line=1)])
    return decode(data, source)


def decode(data: bytes, source: str) -> str:
    """UTF-8 bytes -> text (a UTF-8 byte-order mark is allowed and dropped)."""
    for bom, name, order in ((codecs.BOM_UTF32_LE, "UTF-32", "little-endian"),
                             (codecs.BOM_UTF32_BE, "UTF-32", "big-endian"),
                             (codecs.BOM_UTF16_LE, "UTF-16", "little-endian"),
                             (codecs.BOM_UTF16_BE, "UTF-16", "big-endian")):
        if data.startswith(bom):
            raise SpecError(source, [Problem(
                "", f"the file is encoded as {name} ({order}, as its byte-order mark says); "
                "hakube reads UTF-8 only", FIX_UTF8.replace("UTF-16", name), line=1)])
    data = data.removeprefix(codecs.BOM_UTF8)
    nul = data.find(b"\x00")
    if nul >= 0:
        if _looks_utf16(data[:4096]):
            raise SpecError(source, [Problem(
                "", "the file looks like UTF-16 text without a byte-order mark; "
                "hakube reads UTF-8 only", FIX_UTF8, line=1)])
        raise SpecError(source, [Problem(
            "", f"not a text YAML file: it contains a NUL byte (at byte {nul}); is it binary?",
            FIX_TEXT, line=data.count(b"\n", 0, nul) + 1)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        bad = data[e.start:e.start + 1].hex()
        binary = sum(b < 9 or 13 < b < 32 for b in data[:4096])
        if binary:
            raise SpecError(source, [Problem(
                "", "not a text YAML file: it has control bytes and bytes that are not UTF-8; "
                "is it binary?", FIX_TEXT, line=line)]) from None
        raise SpecError(source, [Problem(
            "", f"not valid UTF-8: byte 0x{bad} (at byte {e.start}) starts no UTF-8 character; "
            "the file is in another encoding (Latin-1?)",
            "save the file as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8 in.yaml > cluster.yaml`)",
            line=line)]) from None


def _looks_utf16(head: bytes) -> bool:
    """Every other byte zero, the others text: ASCII written as UTF-16 without a BOM."""
    even, odd = head[0::2], head[1::2]
    for chars, zeros in ((even, odd), (odd, even)):
        if (len(zeros) >= 2 and zeros.count(0) >= 0.9 * len(zeros) and chars.count(0) < 0.1 * len(chars)
                and all(32 <= b < 127 or b in (9, 10, 13) for b in chars if b)):
            return True
    return False


def parse(text: str, source: str) -> tuple[Any, dict[str, int], list[Problem]]:
    """YAML text -> (data, line of every field path, problems that do not stop loading).

    Raises SpecError when the text is no YAML, is hostile (too deep, alias bomb, recursive),
    or is no mapping.
    """
    try:
        _check_depth(text, source)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise SpecError(source, [Problem("", "the file is empty",
                                                 "start from `hakube init`", line=1)])
            _check_size(node, source)
            lines: dict[str, int] = {}
            duplicates: list[Problem] = []
            _index_lines(node, (), lines, duplicates, set())
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        msg = " ".join(x for x in (e.context, e.problem) if x)
        raise SpecError(source, [Problem("", f"malformed YAML: {msg}",
                                         "check indentation and quoting around this line",
                                         line=line)]) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1 if isinstance(e.position, int) else 1
        what = f"character #x{e.character:04x}" if isinstance(e.character, int) else "a character"
        raise SpecError(source, [Problem("", f"malformed YAML: {what} is not allowed in YAML text",
                                         "remove the control character on this line", line=line)]) from None
    except yaml.YAMLError as e:
        raise SpecError(source, [Problem("", f"malformed YAML: {e}",
                                         "check the file around its end", line=1)]) from None
    except RecursionError:  # guarded above; never let one escape as an internal error
        raise SpecError(source, [Problem("", "nesting too deep", _FIX_DEPTH, line=1)]) from None
    if not isinstance(data, dict):
        raise SpecError(source, [Problem("", "the file must be a YAML mapping",
                                         "start from `hakube init`", line=1)])
    return data, lines, duplicates


_FIX_DEPTH = ("a cluster spec nests a few levels; look for unbalanced '[' or '{' "
              "or a pasted document")


def _check_depth(text: str, source: str) -> None:
    """Refuse deep nesting on the event stream: the parser is iterative, the composer not."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(source, [Problem(
                    "", f"nesting too deep: more than {MAX_DEPTH} levels of mappings and lists",
                    _FIX_DEPTH, line=event.start_mark.line + 1)])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_size(root: yaml.Node, source: str) -> None:
    """Count the document's values with aliases expanded, in time linear in the nodes.

    Aliases are shared nodes in the composed graph: each node's expanded size and depth
    are computed once (iteratively, children first), so a billion laughs costs a few
    hundred steps here instead of gigabytes later.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    shared = False
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            on_path.discard(key)
            if size[key] > MAX_NODES or depth[key] > MAX_DEPTH:
                _too_big(node, size[key] > MAX_NODES, shared, source)
            continue
        if key in size:
            shared = True  # reached a second time: an alias
            continue
        if key in on_path:
            raise SpecError(source, [Problem(
                "", "recursive alias: an anchored value contains an alias of itself",
                "replace the alias by the values it stands for", line=node.start_mark.line + 1)])
        on_path.add(key)
        stack.append((node, True))
        for k in reversed(_children(node)):
            if id(k) in on_path:
                raise SpecError(source, [Problem(
                    "", "recursive alias: an anchored value contains an alias of itself",
                    "replace the alias by the values it stands for", line=k.start_mark.line + 1)])
            stack.append((k, False))


def _too_big(node: yaml.Node, by_size: bool, shared: bool, source: str) -> None:
    line = node.start_mark.line + 1
    if by_size and shared:
        msg = (f"aliases expand the document to more than {MAX_NODES} values "
               "(an alias bomb?)")
        fix = "write the values out instead of nesting aliases of aliases"
    elif by_size:
        msg = f"the document has more than {MAX_NODES} values; a cluster spec has a few hundred"
        fix = FIX_TEXT
    else:
        msg = f"nesting too deep: aliases nest mappings and lists more than {MAX_DEPTH} levels"
        fix = _FIX_DEPTH
    raise SpecError(source, [Problem("", msg, fix, line=line)])


def _index_lines(node: yaml.Node, loc: tuple, out: dict[str, int],
                 duplicates: list[Problem], seen: set[int]) -> None:
    """Record the line of every field path, so problems can point into the file; note keys
    given twice in a mapping (each mapping once, however many aliases reach it)."""
    out.setdefault(format_path(loc), node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first_seen = id(node) not in seen
        seen.add(id(node))
        keys: dict[tuple[str, str], int] = {}
        for k, v in node.value:
            key = (*loc, k.value) if isinstance(k, yaml.ScalarNode) else (*loc, "?")
            line = k.start_mark.line + 1
            out[format_path(key)] = line
            if first_seen and isinstance(k, yaml.ScalarNode) and k.tag != MERGE_TAG:
                ident = (k.tag, k.value)
                if ident in keys:
                    where = (f"on line {line}" if keys[ident] == line
                             else f"on lines {keys[ident]} and {line}")
                    duplicates.append(Problem(
                        format_path(key), f"key {k.value!r} is given twice in this mapping, {where}",
                        "keep one of them (YAML readers would silently use the last)", line=line))
                else:
                    keys[ident] = line
            _index_lines(v, key, out, duplicates, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _index_lines(v, (*loc, i), out, duplicates, seen)
