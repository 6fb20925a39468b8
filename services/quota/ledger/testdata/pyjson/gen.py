#!/usr/bin/env python3
"""Writes vectors.json: request bodies and what Python's json.loads reads in
them, the platform's JSON reader that ledger.ParsePrice must agree with.

Each vector: {"name", "body": base64, "decoded": whether the bytes decode
(json.detect_encoding, then the codec with "surrogatepass"), "object_like":
whether the decoded text starts with "{" once JSON white space and U+FEFF are
skipped, "json": json.loads(body) encoded again by json.dumps (ASCII, NaN and
Infinity as Python writes them), or null when json.loads raises}. Run: python3 gen.py > vectors.json (CPython 3.6 to 3.13).
"""
import base64
import json
import sys

OBJ = '{"batch_size":100}'
NESTED = '{"param":{"batch_size":3,"n_iter":2}}'
SMALL = '{"batch_size":7}'


def enc(text, codec):
    return text.encode(codec, "surrogatepass")


BODIES = [
    ("plain", OBJ.encode()),
    ("utf-8 bom", b"\xef\xbb\xbf" + OBJ.encode()),
    ("utf-8 bom twice", b"\xef\xbb\xbf\xef\xbb\xbf" + OBJ.encode()),
    ("utf-8 bom then space", b"\xef\xbb\xbf \n" + OBJ.encode()),
    ("utf-8 bom, not json", b"\xef\xbb\xbfprompt=cat"),
    ("utf-16 bom", enc(OBJ, "utf-16")),
    ("utf-16-le bom explicit", b"\xff\xfe" + enc(OBJ, "utf-16-le")),
    ("utf-16-be bom", b"\xfe\xff" + enc(OBJ, "utf-16-be")),
    ("utf-16-le", enc(OBJ, "utf-16-le")),
    ("utf-16-be", enc(OBJ, "utf-16-be")),
    ("utf-16-le nested", enc(NESTED, "utf-16-le")),
    ("utf-32 bom", enc(OBJ, "utf-32")),
    ("utf-32-be bom", b"\x00\x00\xfe\xff" + enc(OBJ, "utf-32-be")),
    ("utf-32-le", enc(OBJ, "utf-32-le")),
    ("utf-32-be", enc(OBJ, "utf-32-be")),
    ("utf-16 bom twice", b"\xff\xfe\xff\xfe" + enc(OBJ, "utf-16-le")),
    ("utf-16-le odd length", enc(OBJ, "utf-16-le") + b"\x00"),
    ("utf-32-le truncated", enc(OBJ, "utf-32-le")[:-1]),
    ("utf-32 beyond unicode", b"{\x00\x00\x00\x00\x00\x11\x00"),
    ("utf-16-le lone surrogate in a string", enc('{"a":"\ud800","batch_size":4}', "utf-16-le")),
    ("utf-16-le surrogate pair", enc('{"a":"\U0001f600","batch_size":4}', "utf-16-le")),
    ("utf-16-le lone surrogate outside a string", enc('{"batch_size":4}\ud800', "utf-16-le")),
    ("utf-8 surrogate in a string", b'{"a":"\xed\xa0\x80","batch_size":6}'),
    ("utf-8 surrogate pair as two", b'{"a":"\xed\xa0\x80\xed\xb0\x80","batch_size":6}'),
    ("utf-8 overlong", b'{"a":"\xc0\xaf","batch_size":6}'),
    ("utf-8 truncated", b'{"a":"\xe2\x82","batch_size":6}'),
    ("utf-8 beyond unicode", b'{"a":"\xf4\x90\x80\x80","batch_size":6}'),
    ("latin-1", b'{"prompt":"caf\xe9","batch_size":6}'),
    ("latin-1, not json", b"prompt=caf\xe9"),
    ("two bytes, zero first", b"\x00{"),
    ("two bytes, zero second", b"{\x00"),
    ("three bytes with zero", b"{\x00}"),
    ("nul after the object", OBJ.encode() + b"\x00"),
    ("utf-16-le spaces first", enc("  \n" + OBJ, "utf-16-le")),
    ("utf-16-le not an object", enc("prompt=cat", "utf-16-le")),
    ("utf-16-le keys escaped", enc('{"batch\\u005fsize":9}', "utf-16-le")),
    ("utf-16-be numeric string", enc('{"n_iter":"3","batch_size":2}', "utf-16-be")),
    ("utf-32-le nan", enc('{"batch_size":NaN}', "utf-32-le")),
    ("utf-16-le small", enc(SMALL, "utf-16-le")),
    ("utf-16-le repeated key", enc('{"batch_size":1,"batch_size":8}', "utf-16-le")),
    ("empty", b""),
    ("just a bom", b"\xef\xbb\xbf"),
    ("just a utf-16 bom", b"\xff\xfe"),
]


def vector(name, body):
    v = {"name": name, "body": base64.b64encode(body).decode(), "decoded": True, "object_like": False, "json": None}
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError:
        v["decoded"] = False
        return v
    v["object_like"] = text.lstrip(" \t\r\n\ufeff").startswith("{")
    try:
        v["json"] = json.dumps(json.loads(body), ensure_ascii=True)
    except ValueError:
        pass
    return v


json.dump([vector(n, b) for n, b in BODIES], sys.stdout, indent=1, ensure_ascii=True)
sys.stdout.write("\n")
