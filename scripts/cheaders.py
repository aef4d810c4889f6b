"""Reads the declarations of liblora4j's C API (native/include/lora4j/*.h) for the generators
scripts/gen_bindings.py and scripts/gen_nocuda.py, so that both see the same entries.

A declaration is `<return type> lora4j_<name>(<parameters>);` at any line breaks; definitions
(ending in '{') and names inside comments are not declarations.
"""
import re

# return type, name, parameters, ';'. The return type stays on the name's line ([\w ]* has no newline).
DECLARATION = re.compile(r"([A-Za-z_][\w ]*?[\w*])\s*\b(lora4j_\w+)\s*\(([^)]*)\)\s*;", re.S)
COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def blank_comments(text):
    """text with every comment replaced by spaces (newlines kept), so offsets still point into text."""
    return COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def strip_comments(text):
    return COMMENT.sub(" ", text)


class Param:
    def __init__(self, ctype, name, doc):
        self.ctype = ctype  # normalised C type: "const float*", "int64_t", "void*"
        self.name = name
        self.doc = doc      # the header's comment on this parameter ("[T, dim] overwritten"), or ""

    @property
    def pointer(self):
        return self.ctype.endswith("*")


class Declaration:
    def __init__(self, header, ret, name, params):
        self.header = header  # path relative to the repository, for messages
        self.ret = ret
        self.name = name
        self.params = params

    def signature(self):
        return "%s %s(%s)" % (self.ret, self.name, ", ".join("%s %s" % (p.ctype, p.name) for p in self.params))


def _ctype(text):
    return " ".join(text.replace("*", " * ").split()).replace(" *", "*")


def declarations(text, header=""):
    """The Declarations of text in order, each parameter with the comment that follows it on its line."""
    code = blank_comments(text)
    line_comments = {}
    for m in re.finditer(r"//([^\n]*)", text):
        line_comments[text.count("\n", 0, m.start())] = m.group(1).strip()
    for m in DECLARATION.finditer(code):
        ret, name = _ctype(m.group(1)), m.group(2)
        params = []
        first_line = code.count("\n", 0, m.start(3))
        # the parameters line by line: a comment on a line belongs to its last parameter; a comment
        # alone on a line continues the previous parameter's
        for i, chunk in enumerate(m.group(3).split("\n")):
            doc = line_comments.get(first_line + i, "")
            pieces = [p.strip() for p in chunk.split(",") if p.strip()]
            if not pieces:
                if doc and params:
                    params[-1].doc = (params[-1].doc + " " + doc).strip()
                continue
            for j, piece in enumerate(pieces):
                if piece == "void" and not params and len(pieces) == 1:
                    continue
                pm = re.match(r"(.*?[\s*])(\w+)$", piece)
                if not pm:
                    raise SystemExit("%s: cannot read parameter '%s' of %s" % (header, piece, name))
                params.append(Param(_ctype(pm.group(1)), pm.group(2), doc if j == len(pieces) - 1 else ""))
        yield Declaration(header, ret, name, params)
