"""The Dockerfile language without a daemon: parser, variable expansion, .dockerignore, Go path patterns.

Expected values follow Docker's documented behaviour; several were checked against dockerd's classic
builder (noted where so)."""

from __future__ import annotations

import pytest

from skiffbox.guest.build.dockerfile import DockerfileError, parse
from skiffbox.guest.build.instructions import load
from skiffbox.guest.util.timefmt import parse_go_duration
from skiffbox.guest.build.dockerignore import Matcher, go_match, has_wildcards, read_patterns
from skiffbox.guest.build.expand import ExpansionError, Lexer


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def test_continuations_comments_and_lines() -> None:
    pf = parse("FROM busybox\n\nRUN echo a \\\n  # a comment inside\n    && echo b\n# trailing\nCMD x\n")
    assert [n.cmd for n in pf.nodes] == ["from", "run", "cmd"]
    run = pf.nodes[1]
    assert run.original == "RUN echo a     && echo b"  # leading spaces of continuation lines are kept
    assert (run.start_line, run.end_line) == (3, 5)
    assert pf.nodes[2].start_line == 7


def test_escape_directive_changes_continuation_and_words() -> None:
    pf = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo `\"q`\"\n")
    assert pf.escape == "`"
    assert pf.directives == {"escape": "`"}
    assert pf.nodes[1].args == ['dir c:\\   && echo `"q`"']


def test_directives_only_at_top_and_once() -> None:
    assert parse("FROM x\n# escape=`\nRUN a \\\n b\n").escape == "\\"
    assert parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n").directives["syntax"] == "docker/dockerfile:1"
    with pytest.raises(DockerfileError, match="only one escape parser directive"):
        parse("# escape=`\n# escape=\\\nFROM x\n")
    with pytest.raises(DockerfileError, match="invalid escape token"):
        parse("# escape=x\nFROM x\n")
    # a comment before ends directive lookup: the escape line is then just a comment
    assert parse("# hello\n# escape=`\nFROM x\n").escape == "\\"


def test_json_and_shell_forms() -> None:
    p = load('FROM x\nCMD ["a", "b c"]\nENTRYPOINT echo hi\nRUN [not json\nSHELL ["/bin/bash", "-c"]\n')
    cmd, ep, run, shell = p.stages[0].instructions
    assert (cmd.args, cmd.json) == (["a", "b c"], True)
    assert (ep.args, ep.json) == (["echo hi"], False)
    assert (run.args, run.json) == (["[not json"], False)
    assert shell.args == ["/bin/bash", "-c"]
    with pytest.raises(DockerfileError, match="line 2: when using JSON array syntax"):
        load('FROM x\nCMD ["a", 1]\n')
    with pytest.raises(DockerfileError, match="SHELL requires the arguments to be in JSON form"):
        load("FROM x\nSHELL /bin/bash -c\n")


def test_env_label_arg_forms() -> None:
    p = load('ARG V=1 W\nFROM x\nENV A=1 B="x y" C=a\\ b\nENV OLD some  value\nLABEL "k 1"=v\nARG Q\n')
    assert [m.kv for m in p.meta_args] == [[("V", "1"), ("W", None)]]
    env1, env2, label, arg = p.stages[0].instructions
    assert env1.kv == [("A", "1"), ("B", '"x y"'), ("C", "a\\ b")]  # quotes stay for expansion
    assert env2.kv == [("OLD", "some  value")]
    assert label.kv == [('"k 1"', "v")]
    assert arg.kv == [("Q", None)]
    with pytest.raises(DockerfileError, match="line 2: Syntax error - can't find = in"):
        load("FROM x\nENV A=1 B\n")
    with pytest.raises(DockerfileError, match="ENV must have two arguments"):
        load("FROM x\nENV A\n")


def test_flags() -> None:
    p = load("FROM --platform=linux/amd64 x AS Build\nCOPY --from=build --chown=1:2 a b /d/\n"
             "HEALTHCHECK --interval=1m30s --retries=3 CMD [\"true\"]\n")
    st = p.stages[0]
    assert (st.name, st.platform, st.base) == ("build", "linux/amd64", "x")
    copy, hc = st.instructions
    assert copy.flags == {"from": "build", "chown": "1:2"}
    assert copy.args == ["a", "b", "/d/"]
    assert hc.health == {"Test": ["CMD", "true"], "Interval": 90_000_000_000, "Retries": 3}
    with pytest.raises(DockerfileError, match="line 2: unknown flag: nope"):
        load("FROM x\nCOPY --nope=1 a b\n")
    with pytest.raises(DockerfileError, match="unknown flag: help"):  # Docker's quirk: CMD --help
        load("FROM x\nCMD --help\n")
    with pytest.raises(DockerfileError, match="missing a value on flag: from"):
        load("FROM x\nCOPY --from a b\n")


def test_stages_meta_args_and_errors() -> None:
    p = load("ARG B=busybox\nFROM $B AS one\nRUN true\nFROM one\nCOPY --from=0 /a /b\n")
    assert len(p.meta_args) == 1 and len(p.stages) == 2
    assert p.total_steps == 1 + 2 + 2
    assert p.stage_index("ONE") == 0 and p.stage_index("1") == 1 and p.stage_index("two") is None
    with pytest.raises(DockerfileError, match="line 1: unknown instruction: FOO"):
        load("FOO bar\n")
    with pytest.raises(DockerfileError, match="line 1: no build stage in current context"):
        load("RUN true\nFROM x\n")
    with pytest.raises(DockerfileError, match="file with no instructions"):
        load("# only a comment\n\n")
    with pytest.raises(DockerfileError, match="FROM requires either one or three arguments"):
        load("FROM a b\n")
    with pytest.raises(DockerfileError, match="invalid name for build stage"):
        load("FROM a AS 1x\n")
    with pytest.raises(DockerfileError, match="duplicate stage name"):
        load("FROM a AS x\nFROM b AS x\n")


def test_onbuild_and_healthcheck_rules() -> None:
    p = load("FROM x\nONBUILD RUN echo hi\nHEALTHCHECK NONE\n")
    ob, hc = p.stages[0].instructions
    assert ob.trigger == "RUN echo hi"
    assert hc.health == {"Test": ["NONE"]}
    with pytest.raises(DockerfileError, match="Chaining ONBUILD"):
        load("FROM x\nONBUILD ONBUILD RUN x\n")
    with pytest.raises(DockerfileError, match="FROM isn't allowed as an ONBUILD trigger"):
        load("FROM x\nONBUILD FROM y\n")
    with pytest.raises(DockerfileError, match="Unknown type"):
        load("FROM x\nHEALTHCHECK FOO x\n")


def test_crlf_and_bom() -> None:
    p = load("\ufeffFROM x\r\nRUN a \\\r\n b\r\n")
    assert p.stages[0].instructions[0].args == ["a  b"]


def test_go_duration() -> None:
    assert parse_go_duration("1h2m3s") == 3723 * 10**9
    assert parse_go_duration("1.5s") == 1_500_000_000
    assert parse_go_duration("300ms") == 300_000_000
    assert parse_go_duration("0") == 0
    with pytest.raises(ValueError):
        parse_go_duration("5")


# ---------------------------------------------------------------------------------------------
# Expansion
# ---------------------------------------------------------------------------------------------

ENV = {"A": "hello", "EMPTY": "", "P": "/usr/local/bin.tar.gz", "S": "x y"}


@pytest.mark.parametrize("word,expected", [
    ("$A", "hello"),
    ("${A}_x", "hello_x"),
    ("$A_x", ""),  # the name runs on: A_x is unset
    ("'$A'", "$A"),
    ('"$A \\$A"', "hello $A"),
    ('"esc \\" q"', 'esc " q'),
    ('"a\\b"', "a\\b"),  # inside double quotes only \" \$ \\ escape
    ("\\$A", "$A"),
    ("a\\ b", "a b"),
    ("${NOPE:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""),
    ("${NOPE-dflt}", "dflt"),
    ("${A:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${NOPE:-$A}", "hello"),
    ("${P#*/}", "usr/local/bin.tar.gz"),
    ("${P##*/}", "bin.tar.gz"),
    ("${P%.*}", "/usr/local/bin.tar"),
    ("${P%%.*}", "/usr/local/bin"),
    ("${P/l/L}", "/usr/Local/bin.tar.gz"),
    ("${P//l/L}", "/usr/LocaL/bin.tar.gz"),
    ("$", "$"),
    ("$1", ""),
    ("trailing\\", "trailing"),
    ("", ""),
])
def test_expansion(word: str, expected: str) -> None:
    assert Lexer().process_word(word, ENV) == expected


def test_expansion_errors_and_words() -> None:
    lx = Lexer()
    for bad, msg in (("${A", "missing '}'"), ("${}", "bad substitution"), ('"open', "double-quote"),
                     ("'open", "single-quote"), ("${A:=x}", "unsupported modifier"),
                     ("${NOPE:?must be set}", "NOPE: must be set"), ("${EMPTY:?}", "is not allowed to be empty")):
        with pytest.raises(ExpansionError, match=msg):
            lx.process_word(bad, ENV)
    assert lx.process_words('$S "q r" t', ENV) == ["x", "y", "q r", "t"]
    assert Lexer("`").process_word("a`$A", ENV) == "a$A"


# ---------------------------------------------------------------------------------------------
# .dockerignore and Go patterns
# ---------------------------------------------------------------------------------------------


def test_dockerignore_rules() -> None:
    pats = read_patterns("# comment\n*.log\n!keep.log\n**/node_modules\ntmp/**\n/abs\n./docs/../docs\n!docs/README.md\n\n  \n")
    assert pats == ["*.log", "!keep.log", "**/node_modules", "tmp/**", "abs", "docs", "!docs/README.md"]
    m = Matcher(pats)
    excluded = {p: m.matches(p) for p in ["x.log", "keep.log", "sub/x.log", "node_modules", "a/b/node_modules/x",
                                          "tmp", "tmp/a", "abs", "abs/inner", "docs/x", "docs/README.md", "src/a.py"]}
    assert excluded == {"x.log": True, "keep.log": False, "sub/x.log": False, "node_modules": True,
                        "a/b/node_modules/x": True, "tmp": False, "tmp/a": True, "abs": True, "abs/inner": True,
                        "docs/x": True, "docs/README.md": False, "src/a.py": False}
    m2 = Matcher(["[a-c]x", "[^d]y", "f.g"])
    assert [m2.matches(p) for p in ["bx", "dx", "ay", "dy", "f.g", "fxg"]] == [True, False, True, False, True, False]
    with pytest.raises(DockerfileError):
        Matcher(["!"])


def test_go_match_and_wildcards() -> None:
    assert go_match("*.txt", "a.txt") and not go_match("*.txt", "d/a.txt")
    assert go_match("d/*", "d/x") and not go_match("d/*", "d/x/y")
    assert go_match("[a-c]?", "bz") and not go_match("[^a]x", "ax")
    assert go_match("a\\*", "a*") and not go_match("a\\*", "ab")
    assert has_wildcards("*.go") and has_wildcards("a[bc]") and not has_wildcards("a\\*b") and not has_wildcards("plain")


def test_an_excluded_directory_is_walked_only_when_an_exception_may_reach_below() -> None:
    """What `skiff build` uses to skip excluded directories while tarring the context (as the docker CLI does)."""
    assert Matcher(["d", "!d/keep"]).may_reinclude_below("d")
    assert Matcher(["d", "!*.md"]).may_reinclude_below("d")
    assert not Matcher(["d", "!e"]).may_reinclude_below("d")
    assert not Matcher(["d"]).may_reinclude_below("d") and not Matcher(["d"]).has_exceptions


@pytest.mark.parametrize("text", ["\\", "\\\n", " \\ \n\\\n", "FROM scratch\n\\"])
def test_lone_continuations_are_no_instruction(text: str) -> None:
    """A Dockerfile of only escape tokens was an IndexError 500 at POST /build (schemathesis): no instruction."""
    nodes = parse(text).nodes
    assert [n.cmd for n in nodes] == (["from"] if "FROM" in text else [])
    if not nodes:
        with pytest.raises(DockerfileError):
            load(text)
