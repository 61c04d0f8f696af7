"""Fuzz the C encoder and page transcoder under AddressSanitizer and UBSan (`make fuzz`; not in the suite).

The transcoder reads API answers, which are untrusted input, in C. This builds both C modules with
`-fsanitize=address,undefined` into a temporary directory, then runs itself again with the sanitizer
runtimes preloaded, feeding the modules mutated pages (inserted JSON punctuation, escapes, broken UTF-8,
long digit runs, deletions, truncations, random bytes). A memory error aborts the run with the
sanitizer's report. Every answer is also checked against the standard library: a page the transcoder
takes must be JSON, and its text must be `json.dumps` of each event; the encoder's output must be
`json.dumps`' or None.

    python bench/fuzz_c.py [--seconds 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "src" / "siemconn" / "queue"
MODULES = ("_jsonenc", "_transcode")

SEEDS = [
    b'{"events": [{"id": 1, "a": "\\u00e9\\ud83d\\ude00\\"", "b": [1.5e-7, -0, true, null, {}], "c": {"d": []}}],'
    b' "remaining_count": 0}',
    b'{"events": [{"id": 9, "s": "' + "\u00e9x".encode() * 3000 + b'"}, {"id": 10, "k": [[[[[{"a": 1}]]]]]}],'
    b' "next_checkpoint": 5, "remaining_count": 0}',
    b'{"remaining_count": 0, "x": {"y": [1, 2.5, "z"]}, "events": [{"id": -3}, {}, {"i\\u0064": 4}]}',
]
PIECES = [b'"', b"\\", b"u", b"{", b"}", b"[", b"]", b",", b":", b"\xff", b"\xc3", b"\xa9", b"\xf0\x9f",
          b"\xed\xa0\x80", b"1e", b"-", b".", b"0", b" ", b"\n", b"null", b"\\ud800", b"\\u", b"e+400",
          b"9" * 30]  # fmt: skip


def _build(out: Path) -> None:
    include = sysconfig.get_paths()["include"]
    for name in MODULES:
        subprocess.run(
            ["gcc", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1", "-fPIC", "-shared",
             f"-I{include}", str(C_DIR / f"{name}.c"), "-o", str(out / f"{name}.so")],
            check=True,
        )  # fmt: skip


def _runtime(lib: str) -> str:
    return subprocess.run(
        ["gcc", f"-print-file-name={lib}"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _load(name: str, path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(f"siemconn_fuzz.{name}", str(path))
    spec = importlib.util.spec_from_file_location(f"siemconn_fuzz.{name}", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _mutate(rnd: random.Random, body: bytes) -> bytes:
    buf = bytearray(body)
    for _ in range(rnd.randint(1, 8)):
        i = rnd.randrange(0, len(buf) + 1)
        op = rnd.random()
        if op < 0.4:
            buf[i:i] = rnd.choice(PIECES)
        elif op < 0.7:
            del buf[i : i + rnd.randint(1, 5)]
        elif op < 0.9 and buf:
            buf[min(i, len(buf) - 1)] = rnd.randrange(256)
        else:
            del buf[i:]
    return bytes(buf)


def fuzz(build_dir: Path, seconds: float, seed: int) -> tuple[int, int]:
    """(cases, pages the transcoder answered); raises AssertionError on a wrong answer."""
    encoder, transcoder = (_load(n, build_dir / f"{n}.so") for n in MODULES)
    rnd = random.Random(seed)
    cases = answered = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        body = _mutate(rnd, rnd.choice(SEEDS))
        cases += 1
        got = transcoder.transcode_page(body)
        if got is not None:
            answered += 1
            text, ends, ids, _, _ = got
            assert len(ends) == len(ids) and (not ends or ends[-1] == len(text)), body[:300]
            events = json.loads(body)["events"]
            assert text == "\n".join(json.dumps(e) for e in events), body[:300]
        try:
            value = json.loads(body)
        except ValueError:
            continue
        out = encoder.dumps(value)
        assert out is None or out == json.dumps(value), body[:300]
    return cases, answered


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--build-dir", type=Path, default=None, help=argparse.SUPPRESS)  # the re-run's
    args = ap.parse_args()
    if args.build_dir is not None:
        cases, answered = fuzz(args.build_dir, args.seconds, args.seed)
        print(f"fuzz: {cases:,} cases, {answered:,} pages transcoded, no sanitizer report, no wrong answer")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        _build(Path(tmp))
        env = {
            **os.environ,
            "LD_PRELOAD": f"{_runtime('libasan.so')}:{_runtime('libubsan.so')}",
            "ASAN_OPTIONS": "detect_leaks=0",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        }
        cmd = [sys.executable, __file__, "--seconds", str(args.seconds), "--seed", str(args.seed),
               "--build-dir", tmp]  # fmt: skip
        return subprocess.run(cmd, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
