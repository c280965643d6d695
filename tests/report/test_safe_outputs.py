"""Never lose a user's data: outputs are checked before the work and written whole or not at all,
results files and folders that are not ours are never cut or deleted, nothing from outside the
model is read or copied, and names from files are shown escaped.

Read-only and full filesystems are real where the kernel lets an unprivileged user namespace
mount a tmpfs (`unshare --user --mount`); permission errors are real as `nobody` (`setpriv`).
Without them those tests skip, and the monkeypatched versions below still run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import tailscope
from tailscope.cli import main
from tailscope.errors import InputError, OutputError
from tailscope.outputs import atomic_write, atomic_write_text
from tailscope.report.store import HEADER
from tailscope.smoothing import SIDECAR

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _model(path: Path, n: int = 3, shape=(60, 40)) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    save_file({f"model.layers.{i}.mlp.down_proj.weight": rng.standard_normal(shape).astype(np.float32) for i in range(n)},
              str(path))
    return path


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture
def no_analysis(monkeypatch):
    """Fail the test if the CLI starts computing: output paths must be refused before."""
    def refuse(*args, **kwargs):
        raise AssertionError("the analysis ran before the output path was checked")

    monkeypatch.setattr("tailscope.analysis.pipeline.analyze", refuse)
    monkeypatch.setattr("tailscope.analysis.pipeline.describe", refuse)


def _one_line_exit_2(argv: list[str], capsys, *fragments: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("tailscope: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


# -- 4. output paths are checked before any work ---------------------------------------------------


def test_out_onto_a_directory_under_a_file_or_with_a_bad_extension(tmp_path, capsys, no_analysis):
    model = _model(tmp_path / "m.safetensors")
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "afile").write_text("x")
    _one_line_exit_2(["analyze", str(model), "--out", str(tmp_path / "dir.csv")], capsys, "is a directory")
    _one_line_exit_2(["analyze", str(model), "--out", str(tmp_path / "afile" / "t.csv")], capsys, "afile is not a directory")
    _one_line_exit_2(["analyze", str(model), "--out", str(tmp_path / "t.xlsx")], capsys, "`out` to end in .csv, .json, .parquet")
    _one_line_exit_2(["analyze", str(model), "--html", str(tmp_path / "afile" / "r.html")], capsys, "`html`")
    _one_line_exit_2(["analyze", str(model), "--plots", str(tmp_path / "afile")], capsys, "`plots` exists and is not a directory")
    _one_line_exit_2(["describe", str(model), "--out", str(tmp_path / "dir.csv")], capsys, "is a directory")
    _one_line_exit_2(["compare", str(model), str(model), "--out", str(tmp_path / "t.txt")], capsys, "`out` to end in")
    _one_line_exit_2(["report", str(model), "--output", str(tmp_path / "dir.csv")], capsys, "is a directory")


def test_out_where_even_root_cannot_write(tmp_path, capsys, no_analysis):
    model = _model(tmp_path / "m.safetensors")
    for target in ("/sys/tailscope-test.csv", "/proc/tailscope-test.csv"):  # EACCES / ENOENT even for root
        _one_line_exit_2(["analyze", str(model), "--out", target], capsys, target, "cannot write `out`")


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "details.csv"
    target.write_text("the previous table\n")

    def fill(tmp: Path) -> None:
        tmp.write_text("half a tab")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="details.csv: cannot write: No space left on device"):
        atomic_write(target, fill)
    assert target.read_text() == "the previous table\n" and _leftovers(tmp_path) == []

    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    with pytest.raises(OutputError, match="Read-only file system"):
        atomic_write_text(target, "new")
    assert target.read_text() == "the previous table\n" and _leftovers(tmp_path) == []


def test_table_html_and_plots_are_written_whole(tmp_path, monkeypatch, capsys):
    model = _model(tmp_path / "m.safetensors")
    out, html = tmp_path / "t.csv", tmp_path / "r.html"
    assert main(["analyze", str(model), "--quiet", "--out", str(out), "--html", str(html), "--plots", str(tmp_path / "p")]) == 0
    assert out.read_text().startswith("layer_id,") and html.read_text().endswith("</html>")
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "p") == []
    import pandas as pd

    real = pd.DataFrame.to_csv
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, path, **kw: (real(self, path, **kw),
                        (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))[0])
    before = out.read_bytes()
    assert main(["analyze", str(model), "--quiet", "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_bytes() == before and _leftovers(tmp_path) == []


# -- real read-only, full and forbidden filesystems ------------------------------------------------------

_NS = ["unshare", "--user", "--map-root-user", "--mount"]


def _namespaces_work() -> bool:
    try:
        return subprocess.run([*_NS, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_namespaces = pytest.mark.skipif(not _namespaces_work(), reason="no unprivileged user+mount namespaces here")


def _on_tiny_fs(tmp_path: Path, tailscope_args: str, *, size: str = "16k", readonly: bool = False) -> subprocess.CompletedProcess:
    """Run `tailscope ARGS` with a fresh tmpfs of `size` at tmp_path/mnt (read-only if asked);
    the tmpfs' final content is copied to tmp_path/after before it vanishes."""
    mnt, after = tmp_path / "mnt", tmp_path / "after"
    mnt.mkdir(parents=True)
    after.mkdir()
    ro = f"mount -o remount,ro {mnt} && " if readonly else ""
    script = (f"mount -t tmpfs -o size={size} tmpfs {mnt} && {ro}{sys.executable} -m tailscope {tailscope_args}; "
              f"rc=$?; cp -a {mnt}/. {after}/; exit $rc")
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([*_NS, "sh", "-c", script], capture_output=True, text=True, timeout=600, env=env)


def _assert_one_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@needs_namespaces
def test_read_only_filesystem_is_refused_before_computing(tmp_path):
    model = _model(tmp_path / "m.safetensors")
    for name, option, fragment in (("out", "--out {}/t.csv", "cannot write `out`"), ("html", "--html {}/r.html", "cannot write `html`"),
                                   ("results", "--results {}/r.jsonl", "cannot use as a results file")):
        mnt = tmp_path / name / "mnt"
        proc = _on_tiny_fs(tmp_path / name, f"analyze {model} --quiet {option.format(mnt)}", readonly=True)
        _assert_one_line(proc, "Read-only file system", fragment)
        assert proc.stdout == ""  # the table is printed after the analysis: it never ran
    mnt = tmp_path / "smooth" / "mnt"
    proc = _on_tiny_fs(tmp_path / "smooth", f"smooth {model} -o {mnt}/out --method svd", readonly=True)
    _assert_one_line(proc, "Read-only file system")


@needs_namespaces
def test_full_disk_leaves_no_partial_file(tmp_path):
    model = _model(tmp_path / "m.safetensors", n=120, shape=(30, 20))  # a table of ~120 rows: > 16 KB of CSV
    proc = _on_tiny_fs(tmp_path / "out", f"analyze {model} --quiet --out {tmp_path}/out/mnt/t.csv")
    _assert_one_line(proc, "t.csv: cannot write: No space left on device")
    assert list((tmp_path / "out" / "after").iterdir()) == []
    proc = _on_tiny_fs(tmp_path / "res", f"analyze {model} --quiet --results {tmp_path}/res/mnt/r.jsonl")
    _assert_one_line(proc, "cannot append a row", "No space left on device")
    data = (tmp_path / "res" / "after" / "r.jsonl").read_bytes()
    assert data.startswith(HEADER) and data.endswith(b"\n")
    rows = [json.loads(line) for line in data.split(b"\n")[1:-1]]
    assert 5 < len(rows) < 120 and all("row" in r for r in rows)  # every kept row is whole
    proc = _on_tiny_fs(tmp_path / "sm", f"smooth {model} -o {tmp_path}/sm/mnt/out --method svd")
    _assert_one_line(proc, "out: cannot write the checkpoint: No space left on device")
    assert list((tmp_path / "sm" / "after").iterdir()) == []


def _setpriv_works() -> bool:
    try:
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "true"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _setpriv_works(), reason="cannot switch to the nobody user here")
def test_no_permission_as_an_ordinary_user():
    work = Path(tempfile.mkdtemp(prefix="tailscope-perm-", dir="/tmp"))
    try:
        work.chmod(0o755)
        model = _model(work / "m.safetensors")
        model.chmod(0o644)
        locked = work / "locked"
        locked.mkdir(mode=0o555)
        env = {**os.environ, "PYTHONPATH": SRC}
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "tailscope"]
        for args in (["analyze", str(model), "--out", str(locked / "t.csv")], ["analyze", str(model), "--results", str(locked)],
                     ["smooth", str(model), "-o", str(locked / "out"), "--method", "svd"]):
            proc = subprocess.run(cmd + args, capture_output=True, text=True, timeout=600, env=env)
            _assert_one_line(proc, "Permission denied")
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(work)


# -- 3. never destroy a user's file ------------------------------------------------------------------


def test_results_option_never_touches_a_file_that_is_not_ours(tmp_path, capsys):
    model = _model(tmp_path / "m.safetensors")
    notes = tmp_path / "notes.jsonl"
    for content in (b"my notes, no newline", b'{"todo": "buy milk"}\n{"todo": "call mum"}\n', b"\n\n"):
        notes.write_bytes(content)
        err = _one_line_exit_2(["analyze", str(model), "--results", str(notes)], capsys, "is not a tailscope results file")
        assert "refusing to append" in err and notes.read_bytes() == content


def test_results_append_on_a_full_disk_keeps_every_earlier_row(tmp_path, monkeypatch):
    model = _model(tmp_path / "m.safetensors", n=4)
    results = tmp_path / "r.jsonl"
    real_write, calls = os.write, []

    def write(fd: int, data) -> int:  # the third row gets half written, then the disk is full
        calls.append(len(data))
        if len(calls) == 4:  # header, row 0, row 1, then row 2
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OutputError, match=r"r\.jsonl: cannot append a row .*No space left on device"):
        tailscope.analyze(model, progress=False, results=results)
    monkeypatch.undo()
    data = results.read_bytes()
    assert data.startswith(HEADER) and data.endswith(b"\n") and data.count(b"\n") == 3  # header + 2 whole rows
    resumed = tailscope.analyze(model, progress=False, results=results)
    assert resumed.reused == 2 and len(resumed.details) == 4


def _smooth_into(src: Path, dst: Path, **kw) -> None:
    tailscope.smooth(src, dst, method="svd", percent=0.5, **kw)


def test_smooth_overwrite_replaces_only_our_own_output(tmp_path, capsys):
    model = tmp_path / "src"
    model.mkdir()
    _model(model / "model.safetensors")
    out = tmp_path / "out"
    _smooth_into(model, out)
    sidecar = json.loads((out / SIDECAR).read_text())
    assert sidecar["files"] == ["model.safetensors"]
    first = (out / "model.safetensors").stat().st_ino
    _smooth_into(model, out, overwrite=True)  # ours: replaced
    assert (out / "model.safetensors").stat().st_ino != first and _leftovers(tmp_path) == []
    (out / "my-notes.txt").write_text("do not delete")  # the user added a file to it
    with pytest.raises(OutputError, match=r"holds files tailscope did not write \(my-notes.txt\); refusing to delete it"):
        _smooth_into(model, out, overwrite=True)
    assert (out / "my-notes.txt").read_text() == "do not delete"
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    err = _one_line_exit_2(["smooth", str(model), "-o", str(other), "--overwrite"], capsys, "not a tailscope output")
    assert "refusing to delete it" in err and (other / "cat.jpg").read_bytes() == b"\xff\xd8"
    (other / SIDECAR).write_text(json.dumps({"tool": "tailscope.smooth"}))  # a forged or old marker without the list
    with pytest.raises(OutputError, match="no list of the files it wrote"):
        _smooth_into(model, other, overwrite=True)


def test_smooth_checks_its_destination_before_computing(tmp_path, monkeypatch):
    model = _model(tmp_path / "m.safetensors")
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr("tailscope.smoothing.run._smooth", lambda *a: pytest.fail("computed before checking"))
    with pytest.raises(OutputError, match="is not a directory"):
        _smooth_into(model, tmp_path / "afile" / "out")
    with pytest.raises(OutputError, match="cannot write the new checkpoint"):
        _smooth_into(model, Path("/sys/tailscope-out"))


def test_smooth_full_disk_leaves_no_partial_output(tmp_path, monkeypatch):
    model = _model(tmp_path / "m.safetensors")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr("tailscope.smoothing.writer.shutil.copyfile", full)
    with pytest.raises(OutputError, match="out: cannot write the checkpoint: No space left on device"):
        _smooth_into(model, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


# -- 2. nothing from outside the model -----------------------------------------------------------------


def test_smooth_refuses_side_files_and_folders_linked_outside(tmp_path, capsys):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE KEY")
    for link, target in (("notes.txt", secret / "id_rsa"), ("linked", secret)):
        model = tmp_path / f"model-{link}"
        model.mkdir()
        _model(model / "model.safetensors")
        (model / link).symlink_to(target)
        out = tmp_path / f"out-{link}"
        err = _one_line_exit_2(["smooth", str(model), "-o", str(out), "--method", "svd"], capsys, "outside the model directory")
        assert "never copies files from outside the model" in err
        assert not out.exists() and _leftovers(tmp_path) == []
    model = tmp_path / "model-nested"  # a link one level down, inside a copied folder
    (model / "docs").mkdir(parents=True)
    _model(model / "model.safetensors")
    (model / "docs" / "key").symlink_to(secret / "id_rsa")
    with pytest.raises(InputError, match="docs/key: links to .*outside the model directory"):
        _smooth_into(model, tmp_path / "out-nested")


def test_links_inside_the_model_are_copied_as_their_content(tmp_path):
    model = tmp_path / "model"
    (model / "shared").mkdir(parents=True)
    _model(model / "model.safetensors")
    (model / "shared" / "tokenizer.json").write_text('{"v": 1}')
    (model / "tokenizer.json").symlink_to("shared/tokenizer.json")
    (model / "alias").symlink_to("shared")
    (model / "shared" / "loop").symlink_to("..")  # back to the model root: refused, not walked forever
    with pytest.raises(InputError, match="a folder being copied"):
        _smooth_into(model, tmp_path / "out")
    (model / "shared" / "loop").unlink()
    _smooth_into(model, tmp_path / "out")
    out = tmp_path / "out"
    assert not (out / "tokenizer.json").is_symlink() and (out / "tokenizer.json").read_text() == '{"v": 1}'
    assert not (out / "alias").is_symlink() and (out / "alias" / "tokenizer.json").read_text() == '{"v": 1}'


def _hf_cache(tmp_path: Path) -> Path:
    """A Hugging Face cache repo: snapshots/<rev>/* are relative links to ../../blobs/<hash>."""
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    _model(repo / "blobs" / "aaaa1111")
    (repo / "blobs" / "bbbb2222").write_text('{"model_type": "llama"}')
    (snap / "model.safetensors").symlink_to("../../blobs/aaaa1111")
    (snap / "config.json").symlink_to("../../blobs/bbbb2222")
    return snap


def test_hugging_face_cache_snapshots_are_read_and_copied(tmp_path):
    snap = _hf_cache(tmp_path)
    report = tailscope.analyze(snap, progress=False)
    assert len(report.details) == 3 and (report.details["status"] == "success").all()
    _smooth_into(snap, tmp_path / "out")
    config = tmp_path / "out" / "config.json"
    assert not config.is_symlink() and config.read_text() == '{"model_type": "llama"}'
    (snap / "stolen.txt").symlink_to(tmp_path / "hub" / "outside.txt")
    (tmp_path / "hub" / "outside.txt").write_text("secret")
    with pytest.raises(InputError, match="stolen.txt: links to .*outside the model directory"):
        _smooth_into(snap, tmp_path / "out2")


def test_a_snapshot_whose_blobs_folder_is_a_link_is_not_trusted(tmp_path):
    snap = _hf_cache(tmp_path)
    repo = snap.parent.parent
    elsewhere = tmp_path / "elsewhere"
    (repo / "blobs").rename(elsewhere)
    (repo / "blobs").symlink_to(elsewhere)
    with pytest.raises(InputError, match="outside the model directory"):
        tailscope.analyze(snap, progress=False)


def test_peft_adapter_weights_linked_outside_are_refused(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    stem = "base_model.model.layers.0.mlp.up_proj"
    save_file({f"{stem}.lora_A.weight": rng.standard_normal((4, 40)).astype(np.float32),
               f"{stem}.lora_B.weight": rng.standard_normal((60, 4)).astype(np.float32)}, str(tmp_path / "elsewhere.safetensors"))
    (adapter / "adapter_model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    with pytest.raises(InputError, match="adapter_model.safetensors: resolves outside the model directory"):
        tailscope.analyze(adapter, peft=True, progress=False)
    (adapter / "adapter_model.safetensors").unlink()
    shutil.copyfile(tmp_path / "elsewhere.safetensors", adapter / "adapter_model.safetensors")
    assert len(tailscope.analyze(adapter, peft=True, progress=False).details) == 1


# -- 5. names are shown escaped --------------------------------------------------------------------------

HOSTILE = "evil\x1b[2J\x1b]0;pwned\x07\u202etxt.exe"


def test_hostile_names_are_escaped_in_every_text_and_the_html(tmp_path, capsys):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    path = tmp_path / "m.safetensors"
    save_file({f"{HOSTILE}.weight": rng.standard_normal((60, 40)).astype(np.float32)}, str(path))
    html = tmp_path / "r.html"
    assert main(["analyze", str(path), "--quiet", "--html", str(html)]) == 0
    assert main(["describe", str(path)]) == 0
    assert main(["smooth", str(path), "--dry-run", "--method", "svd"]) == 0
    assert main(["compare", str(path), str(path), "--quiet"]) == 0
    shown = capsys.readouterr().out
    page = html.read_text()
    for text in (shown, page):
        assert not any(c in text for c in "\x1b\x07\u202e"), repr(text[:200])
    assert shown.count(r"evil\x1b[2J\x1b]0;pwned\x07\u202etxt.exe") >= 3
    assert r"evil\x1b[2J\x1b]0;pwned\x07\u202etxt.exe" in page
