"""Stage 1: YAML loading keeps positions and turns every malformed input into a located error."""

from __future__ import annotations

import pytest

from parc.errors import SpecError, UsageError
from parc.loader import MAX_SPEC_BYTES, load_file, load_text


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as exc:
        load_text(text, "s.yaml")
    return [str(p) for p in exc.value.problems]


def test_positions_of_values_and_keys():
    doc = load_text("a:\n  b: [1, 2]\n  c:\n    - x: 1\n", "s.yaml")
    assert doc.values[("a", "b")] == (2, 6)
    assert doc.keys[("a", "c")] == (3, 3)
    assert doc.values[("a", "c", 0)] == (4, 7)
    assert str(doc.locate(("a", "c", 0, "missing"))) == "s.yaml:4:7"


def test_plain_python_types_only():
    doc = load_text("a: 0x10\nb: 1_000\nc: 2024-01-01\nd: 1.5\ne: yes\n", "s.yaml")
    assert doc.data == {"a": 16, "b": 1000, "c": "2024-01-01", "d": 1.5, "e": "yes"}
    assert [type(v) for v in doc.data.values()] == [int, int, str, float, str]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: 1\na: 2\n", 's.yaml:2:1: invalid YAML: found duplicate key "a" with value "2" (original value: "1") '
                         "(each key may appear once in a mapping)"),
        ("a:\n\tb: 1\n", "s.yaml:2:1: invalid YAML: a tab character; YAML indents with spaces only"),
        ("a: [1, 2\n", "s.yaml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ("", "s.yaml:1:1: spec is empty; start from an example in examples/"),
        ("# only a comment\n", "s.yaml:1:1: spec is empty; start from an example in examples/"),
        ("- a\n- b\n", "s.yaml:1:1: a spec is a mapping (apiVersion:, kind:, ...), got a list"),
        ("a: !!python/object:os.system x\n",
         "s.yaml:1:4: a: YAML tag tag:yaml.org,2002:python/object:os.system is not allowed in a spec; remove the tag"),
        ("a: \x00\n", "s.yaml:1:4: invalid YAML: unacceptable character #x0000: special characters are not allowed"),
    ],
)
def test_malformed_yaml(text, expected):
    assert problems(text) == [expected]


def test_alias_bomb_is_bounded():
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    (msg,) = problems("\n".join(lines) + "\n")
    assert "spec expands to more than 100000 nodes (an alias bomb?); parc specs are small" in msg


def test_deep_nesting_is_bounded():
    (msg,) = problems("a: " + "[" * 200 + "]" * 200 + "\n")
    assert "nesting is deeper than 64 levels" in msg


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_file(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match="is a directory, expected a spec file"):
        load_file(tmp_path)


def test_bom_and_non_utf8(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert load_file(p).data == {"a": 1}
    p.write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(SpecError) as exc:
        load_file(p)
    assert str(exc.value.problems[0]) == f"{p}:2:4: not UTF-8 text (byte 0xff); save the file as UTF-8"


def test_oversized_file(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_bytes(b"a: 1\n" + b"#" * (MAX_SPEC_BYTES + 10))
    with pytest.raises(SpecError) as exc:
        load_file(p)
    assert "parc reads specs of at most 1 MiB" in str(exc.value)
