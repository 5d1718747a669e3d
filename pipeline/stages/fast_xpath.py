"""trafilatura's element selectors compiled to lxml tag iteration plus fused Python predicates.

trafilatura 2.x picks and prunes page sections with XPath expressions full of EXSLT
`re:test(@class, ...)`. lxml runs each such test as a Python callback that first wraps the
attribute in a Python object, per element and per test: these selectors are about half of
trafilatura's time per page. This module compiles expressions of the small XPath 1.0 subset
trafilatura uses into an equivalent evaluator: candidate elements come from lxml's C-level tag
iteration; within one `or`, every string test on the same attribute (`contains`, `starts-with`,
`= 'literal'`, `re:test`, also through `translate`) becomes one alternation regex searched once
(and its verdict remembered per attribute value: class and id values repeat within a page);
an element carrying none of the attributes a predicate reads is decided without evaluating it.
An expression outside the subset is left to lxml untouched.

Subset: unions of `.//NAME` or `.//*` steps with predicates, `(...)[1]`, a trailing `[1]`;
predicates built from `or`, `and`, `not()`, `self::NAME`, `@a`, `@a|@b`, `= 'literal'`,
`.//NAME` (a descendant exists), `contains`, `starts-with`, `translate` and `re:test`
(with its `'i'` flag). Semantics follow XPath 1.0: an attribute union converts to the string
of its first attribute in document (source) order, a missing attribute to "", a comparison with
a missing attribute is false, `step[1]` is the first matching child of each parent and
`(path)[1]` the first match in document order.

`install()` swaps the compiled selectors into trafilatura's modules in place (lists of XPath
objects are shared between its modules, so their items are replaced); `uninstall()` puts the
originals back. tests/test_fast_xpath.py checks on real pages that every compiled selector
returns the same elements as lxml and that extraction output is byte-identical.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lxml import etree

Elem = Any  # lxml element (HtmlElement or _Element)
Pred = Callable[[Elem], bool]
StrFn = Callable[[Elem], str]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'[^']*'|"[^"]*")
    | (?P<num>\d+)
    | (?P<dslash>\.//)
    | (?P<rootslash>//)
    | (?P<axis>self::)
    | (?P<attr>@[A-Za-z_][\w.-]*)
    | (?P<name>[A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?)
    | (?P<op>!=|[()\[\]|,=*])
    )""",
    re.VERBOSE,
)
# A backreference ties a pattern to its own group numbers: such a pattern is never merged.
_BACKREF = re.compile(r"\\[1-9]|\(\?P=")
_NO_ATTRIBUTES = etree.Element("none")
# Attribute values repeat within a page and across pages of a site (class="menu-item", ...):
# each fused regex remembers its verdict per value, up to this many values (then starts over).
# Bounded so that the ~130 memos stay within a few tens of MiB on an endless stream of pages.
_MEMO_SIZE = 4096


def _memo_matcher(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    """`bool(pattern.search(value))`, remembered per value."""
    search = pattern.search
    memo: dict[str, bool] = {}
    get = memo.get

    def matches(value: str) -> bool:
        hit = get(value)
        if hit is None:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            hit = memo[value] = search(value) is not None
        return hit

    return matches


class Unsupported(ValueError):
    """The expression uses XPath outside the compiled subset (lxml keeps it)."""


def _tokens(path: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos, end = 0, len(path.rstrip())
    while pos < end:
        m = _TOKEN.match(path, pos)
        if m is None or m.end() == pos:
            raise Unsupported(f"cannot tokenise at {path[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


# --------------------------------------------------------------------------------------------
# Compiled pieces


@dataclass(frozen=True)
class _Str:
    """A string-valued argument: `@a`, `@a|@b`, `translate(...)` of one, or a literal."""

    key: str  # canonical text: tests on the same key share one regex search
    fn: StrFn
    attrs: frozenset[str] | None  # attributes read (None: not attribute-only)
    union: tuple[str, ...] | None = None  # the attributes, when the argument is `@a|@b|...`
    # translate(@attr, src, dst) without deletions: the attribute and the character table
    translated: tuple[str, dict[int, int]] | None = None

    @property
    def attr(self) -> str | None:
        """The single attribute, when the argument is just `@attr`."""
        return self.union[0] if self.union is not None and len(self.union) == 1 else None


def _attr_arg(names: tuple[str, ...]) -> _Str:
    """The argument `@a` or `@a|@b|...`."""
    return _Str("|".join(f"@{n}" for n in names), _attr_string(names), frozenset(names), names)


def _attrs_of(parts: list[_Pred]) -> frozenset[str] | None:
    """The attributes a combination of `parts` reads (None when one reads more)."""
    out: set[str] = set()
    for p in parts:
        if p.attrs is None:
            return None
        out |= p.attrs
    return frozenset(out)


@dataclass(frozen=True)
class _Pred:
    """A predicate with what it depends on, and its regex form when it is a string test."""

    fn: Pred
    attrs: frozenset[str] | None  # attributes read; None: also reads the tag or descendants
    arg: _Str | None = None  # a string test: searching `pattern` in arg's value decides it
    pattern: str | None = None
    exists: frozenset[str] | None = None  # `@a` or `@a|@b`: true when one is present
    dispatched: bool = False  # cheap on elements without attributes: needs no guard


def _attr_string(names: tuple[str, ...]) -> StrFn:
    """string(@a|@b|...): the first present attribute in source order, else ""."""
    if len(names) == 1:
        (name,) = names

        def one(e: Elem) -> str:
            return e.get(name) or ""

        return one
    wanted = frozenset(names)

    def first(e: Elem) -> str:
        for key in e.keys():  # noqa: SIM118 (iterating an element gives its children)
            if key in wanted:
                return e.get(key)
        return ""

    return first


def _string_test(arg: _Str, pattern: str) -> _Pred:
    """A test decided by `re.search(pattern, arg)`; kept mergeable with its siblings."""
    translated = arg.translated
    if translated is not None:
        # contains/starts-with on translate(@a): the same search on @a itself, each literal
        # character widened to the characters translate maps onto it
        name, table = translated
        arg = _attr_arg((name,))
    matches = _memo_matcher(re.compile(pattern))
    fn_arg = arg.fn
    return _Pred(lambda e: matches(fn_arg(e)), arg.attrs, arg, pattern)


def _preimage_pattern(literal: str, table: dict[int, int]) -> str:
    """A regex matching exactly the strings that translate(., table) maps to `literal`."""
    parts = []
    for ch in literal:
        sources = [chr(k) for k, v in table.items() if v == ord(ch)]
        if ord(ch) not in table:
            sources.append(ch)
        if not sources:
            return "(?!)"  # no character translates to ch: never matches
        parts.append(
            re.escape(sources[0])
            if len(sources) == 1
            else "[" + "".join(re.escape(s) for s in sources) + "]"
        )
    return "".join(parts)


def _fuse_or(parts: list[_Pred]) -> _Pred:
    """One predicate for `p1 or p2 or ...`.

    String tests on the same attribute (or attribute union) share one alternation regex, and
    all of them, with attribute-existence tests, are dispatched from one pass over the
    element's attributes in source order: an element pays for the attributes it has, not for
    the tests the expression lists. Other parts are evaluated after, as closures.
    """
    groups: dict[str, tuple[_Str, list[str]]] = {}
    others: list[Pred] = []
    exists: set[str] = set()
    for p in parts:
        if p.exists is not None:
            exists |= p.exists
        elif p.arg is not None and p.pattern is not None and not _BACKREF.search(p.pattern):
            groups.setdefault(p.arg.key, (p.arg, []))[1].append(p.pattern)
        else:
            others.append(p.fn)
    # attribute name -> what seeing it does: (union id, matcher); None means "exists"
    dispatch: dict[str, list[tuple[int, Callable[[str], bool] | None]]] = {}
    for name in exists:
        dispatch.setdefault(name, []).append((-1, None))
    for uid, (arg, patterns) in enumerate(groups.values()):
        merged = "|".join(f"(?:{pat})" for pat in patterns)
        try:
            matches = _memo_matcher(re.compile(merged))
        except re.error:  # e.g. a global inline flag inside one pattern: test them apart
            others.extend(_string_test(arg, pat).fn for pat in patterns)
            continue
        if arg.union is None or matches(""):
            # not a plain attribute (union), or true on a missing one: evaluate as written
            fn_arg = arg.fn
            others.append(lambda e, m=matches, a=fn_arg: m(a(e)))
            continue
        for name in arg.union:
            dispatch.setdefault(name, []).append((uid if len(arg.union) > 1 else -1, matches))
    rest = tuple(others)
    get_actions = dispatch.get

    def fn(e: Elem) -> bool:
        seen: list[int] | None = None  # unions already decided by their first attribute
        for name, value in e.items():
            actions = get_actions(name)
            if actions is None:
                continue
            for uid, matches in actions:
                if matches is None:
                    return True
                if uid >= 0:  # a union's string is its first attribute in source order
                    if seen is None:
                        seen = [uid]
                    elif uid in seen:
                        continue
                    else:
                        seen.append(uid)
                if matches(value):
                    return True
        return any(f(e) for f in rest) if rest else False

    return _Pred(fn, _attrs_of(parts), dispatched=True)


def _guarded(p: _Pred) -> Pred:
    """`p`, decided without evaluation for elements carrying none of the attributes it reads."""
    if p.attrs is None or len(p.attrs) < 2 or p.dispatched:
        return p.fn
    if p.fn(_NO_ATTRIBUTES):
        return p.fn
    names, fn = p.attrs, p.fn
    return lambda e: not names.isdisjoint(e.keys()) and fn(e)


# --------------------------------------------------------------------------------------------
# Parser


class _Parser:
    """Recursive descent over the token list; builds predicates and selectors."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.toks = _tokens(path)
        self.i = 0

    # token helpers
    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def take(self, kind: str, value: str | None = None) -> str:
        k, v = self.peek()
        if k != kind or (value is not None and v != value):
            raise Unsupported(f"expected {value or kind}, found {v or k!r} in {self.path!r}")
        self.i += 1
        return v

    def at(self, kind: str, value: str | None = None) -> bool:
        k, v = self.peek()
        return k == kind and (value is None or v == value)

    # top level
    def parse(self) -> _Selector:
        branches = [self.branch()]
        while self.at("op", "|"):
            self.take("op", "|")
            branches.append(self.branch())
        if not self.at("eof"):
            raise Unsupported(f"trailing tokens in {self.path!r}")
        return _Selector(self.path, branches)

    def branch(self) -> _Branch:
        if self.at("op", "("):
            self.take("op", "(")
            inner = self.branch()
            if not self.at("op", ")"):
                raise Unsupported("union inside parentheses")
            self.take("op", ")")
            self.take("op", "[")
            if self.take("num") != "1":
                raise Unsupported("only [1] positions are compiled")
            self.take("op", "]")
            if inner.first_overall or inner.first_per_parent:
                raise Unsupported("nested positions")
            inner.first_overall = True
            return inner
        if self.at("rootslash"):
            raise Unsupported("absolute paths")
        self.take("dslash")
        tag = "*" if self.at("op", "*") else None
        if tag:
            self.take("op", "*")
        else:
            tag = self.take("name")
        preds: list[Pred] = []
        tags: tuple[str, ...] | None = None if tag == "*" else (tag,)
        first_per_parent = False
        while self.at("op", "["):
            self.take("op", "[")
            if self.at("num"):
                if self.take("num") != "1":
                    raise Unsupported("only [1] positions are compiled")
                self.take("op", "]")
                first_per_parent = True
                if self.at("op", "["):
                    raise Unsupported("predicate after a position")
                break
            start = self.i
            pred = self.or_expr()
            self.take("op", "]")
            # a leading [self::a or self::b] becomes lxml's C-level tag filter
            only_tags = self._self_tags(start, self.i - 1)
            if only_tags is not None and tags is None and not preds:
                tags = only_tags
            else:
                preds.append(_guarded(pred))
        return _Branch(tags, preds, first_per_parent)

    def _self_tags(self, start: int, stop: int) -> tuple[str, ...] | None:
        """The names of a predicate that is only `self::a or self::b ...`, else None."""
        names: list[str] = []
        toks = self.toks[start:stop]
        for j, (kind, value) in enumerate(toks):
            if j % 3 == 0 and kind != "axis":
                return None
            if j % 3 == 1:
                if kind != "name":
                    return None
                names.append(value)
            if j % 3 == 2 and (kind, value) != ("name", "or"):
                return None
        return tuple(names) if len(toks) % 3 == 2 else None

    # boolean expressions
    def or_expr(self) -> _Pred:
        parts = [self.and_expr()]
        while self.at("name", "or"):
            self.take("name", "or")
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else _fuse_or(parts)

    def and_expr(self) -> _Pred:
        parts = [self.unary()]
        while self.at("name", "and"):
            self.take("name", "and")
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        return _Pred(_all_of(tuple(p.fn for p in parts)), _attrs_of(parts))

    def unary(self) -> _Pred:
        if self.at("name", "not") and self.peek(1) == ("op", "("):
            self.take("name")
            self.take("op", "(")
            inner = self.or_expr()
            self.take("op", ")")
            fn = inner.fn
            return _Pred(lambda e: not fn(e), inner.attrs)
        return self.primary()

    def primary(self) -> _Pred:
        kind, value = self.peek()
        if kind == "op" and value == "(":
            self.take("op", "(")
            inner = self.or_expr()
            self.take("op", ")")
            return inner
        if kind == "axis":
            self.take("axis")
            name = self.take("name")
            return _Pred(lambda e: e.tag == name, None)
        if kind == "dslash":  # .//NAME inside a predicate: such a descendant exists
            self.take("dslash")
            name = self.take("name")
            return _Pred(lambda e: next(e.iterdescendants(name), None) is not None, None)
        if kind == "attr":
            names = self.attr_union()
            if self.at("op", "=") or self.at("op", "!="):
                op = self.take("op")
                lit = self.literal()
                if op == "!=" or len(names) != 1:
                    raise Unsupported("comparison of an attribute union")
                (name,) = names
                if lit:  # a missing attribute ("") never equals a non-empty literal
                    arg = _attr_arg(names)
                    return _string_test(arg, rf"\A{re.escape(lit)}\Z")
                return _Pred(lambda e: e.get(name) == lit, frozenset(names))
            present = frozenset(names)
            if len(names) == 1:
                (name,) = names
                return _Pred(lambda e: e.get(name) is not None, present, exists=present)
            return _Pred(
                lambda e: any(e.get(n) is not None for n in names), present, exists=present
            )
        if kind == "name":
            return self.bool_call()
        raise Unsupported(f"unexpected {value!r} in {self.path!r}")

    def attr_union(self) -> tuple[str, ...]:
        names = [self.take("attr")[1:]]
        while self.at("op", "|") and self.peek(1)[0] == "attr":
            self.take("op", "|")
            names.append(self.take("attr")[1:])
        return tuple(names)

    def literal(self) -> str:
        return self.take("str")[1:-1]

    def bool_call(self) -> _Pred:
        fn = self.take("name")
        self.take("op", "(")
        if fn == "contains" or fn == "starts-with":
            arg = self.string_arg()
            self.take("op", ",")
            lit = self.literal()
            self.take("op", ")")
            anchor = r"\A" if fn == "starts-with" else ""
            if arg.translated is not None:
                return _string_test(arg, anchor + _preimage_pattern(lit, arg.translated[1]))
            return _string_test(arg, anchor + re.escape(lit))
        if fn == "re:test":
            arg = self.string_arg()
            self.take("op", ",")
            pattern = self.literal()
            flags = ""
            if self.at("op", ","):
                self.take("op", ",")
                flags = self.literal()
            self.take("op", ")")
            if set(flags) - {"i"}:
                raise Unsupported(f"re:test flags {flags!r}")
            re.compile(pattern)  # an invalid pattern fails here, not per element
            # as lxml's EXSLT regexp: re.search, IGNORECASE for 'i'
            if "i" in flags:
                pattern = f"(?i:{pattern})"
            if arg.translated is not None:  # the regex sees the translated string
                arg = _Str(arg.key, arg.fn, arg.attrs)
            return _string_test(arg, pattern)
        raise Unsupported(f"function {fn}()")

    def string_arg(self) -> _Str:
        kind, _ = self.peek()
        if kind == "attr":
            return _attr_arg(self.attr_union())
        if kind == "name" and self.peek()[1] == "translate":
            self.take("name")
            self.take("op", "(")
            inner = self.string_arg()
            self.take("op", ",")
            src = self.literal()
            self.take("op", ",")
            dst = self.literal()
            self.take("op", ")")
            table: dict[int, int | None] = {}
            for j, ch in enumerate(src):
                table.setdefault(ord(ch), ord(dst[j]) if j < len(dst) else None)
            inner_fn = inner.fn
            translated = None
            if inner.attr is not None and None not in table.values():
                translated = (inner.attr, {k: v for k, v in table.items() if v is not None})
            return _Str(
                f"translate({inner.key},{src!r},{dst!r})",
                lambda e: inner_fn(e).translate(table),
                inner.attrs,
                translated=translated,
            )
        if kind == "str":
            lit = self.literal()
            return _Str(repr(lit), lambda e: lit, frozenset())
        raise Unsupported(f"string argument {self.peek()[1]!r}")


# --------------------------------------------------------------------------------------------
# Evaluation


def _all_of(preds: tuple[Pred, ...]) -> Pred:
    """One predicate true when all of `preds` are (in order, stopping at the first false)."""
    if not preds:
        return lambda e: True
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds
        return lambda e: first(e) and second(e)
    return lambda e: all(p(e) for p in preds)


class _Branch:
    """One `.//tags[preds]` location path of a union, with its position rule."""

    __slots__ = ("tags", "preds", "matches", "first_per_parent", "first_overall")

    def __init__(self, tags: tuple[str, ...] | None, preds: list[Pred], first_per_parent: bool):
        self.tags = tags
        self.preds = tuple(preds)
        self.matches = _all_of(self.preds)
        self.first_per_parent = first_per_parent
        self.first_overall = False

    def candidates(self, node: Elem) -> Iterator[Elem]:
        if self.tags is None:
            return node.iterdescendants(etree.Element)
        return node.iterdescendants(*self.tags)

    def select(self, node: Elem) -> list[Elem]:
        matches = self.matches
        if self.first_overall:
            for e in self.candidates(node):
                if matches(e):
                    return [e]
            return []
        if self.preds:
            found = [e for e in self.candidates(node) if matches(e)]
        else:
            found = list(self.candidates(node))
        if self.first_per_parent and len(found) > 1:
            seen: set[Any] = set()
            kept = []
            for e in found:
                parent = e.getparent()
                if parent not in seen:
                    seen.add(parent)
                    kept.append(e)
            found = kept
        return found


class _Selector:
    """A compiled expression: call it on an element like an lxml XPath object."""

    def __init__(self, path: str, branches: list[_Branch]) -> None:
        self.path = path
        self.branches = tuple(branches)
        simple = all(not (b.first_overall or b.first_per_parent) for b in branches)
        self._single_pass = simple and len(branches) > 1
        if self._single_pass:
            # tag-only branches collapse into one set lookup per element
            self._tag_set = frozenset(
                t for b in branches if not b.preds and b.tags is not None for t in b.tags
            )
            self._rest = tuple(b for b in branches if b.preds or b.tags is None)

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<compiled XPath {self.path.strip()!r}>"

    def __call__(self, node: Elem) -> list[Elem]:
        if isinstance(node, etree._ElementTree):
            raise TypeError("compiled selectors take an element")  # trafilatura never does
        if len(self.branches) == 1:
            return self.branches[0].select(node)
        if self._single_pass:
            tags, rest = self._tag_set, self._rest
            out = []
            for e in node.iterdescendants(etree.Element):
                tag = e.tag
                if tag in tags:
                    out.append(e)
                    continue
                for b in rest:
                    if (b.tags is None or tag in b.tags) and b.matches(e):
                        out.append(e)
                        break
            return out
        # positional branches: evaluate each, then merge in document order
        parts = [b.select(node) for b in self.branches]
        nonempty = [p for p in parts if p]
        if len(nonempty) <= 1:
            return nonempty[0] if nonempty else []
        wanted = {e for p in nonempty for e in p}
        return [e for e in node.iterdescendants(etree.Element) if e in wanted]


def compile_xpath(path: str) -> _Selector:
    """Compile `path`; raises Unsupported outside the subset."""
    return _Parser(path).parse()


# --------------------------------------------------------------------------------------------
# Installation into trafilatura


def _trafilatura_modules() -> tuple[Any, ...]:
    """trafilatura's modules that hold (or import) its XPath selectors.

    Taken from sys.modules: `from trafilatura import baseline` would give the function that
    trafilatura's package exports under that name, not the module.
    """
    import trafilatura.baseline
    import trafilatura.core
    import trafilatura.external
    import trafilatura.htmlprocessing
    import trafilatura.main_extractor
    import trafilatura.metadata
    import trafilatura.settings
    import trafilatura.xpaths  # noqa: F401

    names = ("xpaths", "settings", "baseline", "core", "main_extractor", "htmlprocessing")
    return tuple(sys.modules[f"trafilatura.{n}"] for n in (*names, "external", "metadata"))


# What install() replaced, to put back: (module, attribute, original) and (list, index, original)
_globals_swapped: list[tuple[Any, str, Any]] = []
_items_swapped: list[tuple[list[Any], int, Any]] = []
_counts: dict[str, int] | None = None


def _compiled(xpath: etree.XPath, cache: dict[int, Any]) -> Any:
    if id(xpath) not in cache:
        try:
            cache[id(xpath)] = compile_xpath(xpath.path)
        except Unsupported:
            cache[id(xpath)] = xpath
    return cache[id(xpath)]


def install() -> dict[str, int]:
    """Replace trafilatura's compilable XPath objects (module globals and list items).

    Idempotent. Returns counts: `compiled` selectors swapped in, `kept` left to lxml.
    """
    global _counts
    if _counts is not None:
        return _counts
    cache: dict[int, Any] = {}
    for module in _trafilatura_modules():
        for attr, value in list(vars(module).items()):
            if isinstance(value, etree.XPath):
                new = _compiled(value, cache)
                if new is not value:
                    _globals_swapped.append((module, attr, value))
                    setattr(module, attr, new)
            elif (
                isinstance(value, list)
                and value
                and all(isinstance(v, etree.XPath | _Selector) for v in value)
            ):
                for j, item in enumerate(value):
                    if isinstance(item, etree.XPath):
                        new = _compiled(item, cache)
                        if new is not item:
                            _items_swapped.append((value, j, item))
                            value[j] = new
    compiled = sum(1 for v in cache.values() if isinstance(v, _Selector))
    _counts = {"compiled": compiled, "kept": len(cache) - compiled}
    return _counts


def uninstall() -> None:
    """Give trafilatura its lxml XPath objects back (no-op when not installed)."""
    global _counts
    for module, attr, original in reversed(_globals_swapped):
        setattr(module, attr, original)
    for items, j, original in reversed(_items_swapped):
        items[j] = original
    _globals_swapped.clear()
    _items_swapped.clear()
    _counts = None


def installed() -> bool:
    """Whether trafilatura currently runs the compiled selectors."""
    return _counts is not None
