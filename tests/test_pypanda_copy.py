"""pandagpm.pypanda.copy_to_guest without PANDA: the console lines it
sends, decoded the way the guest's shell would, give back the file."""

import base64
import gzip
import hashlib
import os
import re

import pytest

from pandagpm.pypanda import copy_to_guest


class FakeConsole:
    """Plays busybox's shell for the commands copy_to_guest sends."""

    def __init__(self):
        self.lines = []
        self.files = {}

    def run_serial_cmd(self, cmd):
        self.lines.append(cmd)
        m = re.fullmatch(r"echo '([^']*)' >> (\S+)", cmd)
        if m:
            self.files[m[2]] = self.files.get(m[2], "") + m[1]
            return ""
        m = re.match(r"base64 -d (\S+) \| gunzip > (\S+);", cmd)
        if m:
            self.files[m[2]] = gzip.decompress(base64.b64decode(
                self.files.pop(m[1])))
            return ""
        m = re.fullmatch(r"md5sum (\S+)", cmd)
        if m:
            return hashlib.md5(self.files[m[1]]).hexdigest() + "  " + m[1]
        return ""


def test_round_trip_and_line_length(tmp_path):
    src = tmp_path / "prog"
    src.write_bytes(os.urandom(50_000))
    con = FakeConsole()
    copy_to_guest(con, src, "/tmp/prog")
    assert con.files["/tmp/prog"] == src.read_bytes()
    # busybox's line editor keeps 1,024 characters.
    assert max(len(ln) for ln in con.lines) < 1024
    assert any(ln.startswith("chmod 755 ") or "chmod 755 /tmp/prog" in ln
               for ln in con.lines)


def test_a_mismatch_raises(tmp_path):
    src = tmp_path / "prog"
    src.write_bytes(b"x" * 100)

    class Lossy(FakeConsole):
        def run_serial_cmd(self, cmd):
            if cmd.startswith("md5sum"):
                return "0" * 32 + "  /tmp/prog"
            return super().run_serial_cmd(cmd)

    with pytest.raises(RuntimeError, match="does not match"):
        copy_to_guest(Lossy(), src, "/tmp/prog")


def test_lines_too_long_are_refused(tmp_path):
    src = tmp_path / "prog"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match="1,024"):
        copy_to_guest(FakeConsole(), src, "/tmp/" + "d" * 300, chunk=768)
