"""inspector.lm.paths.checked_path: every path a user types, refused with a message naming the rule (issue 22.1)."""

from __future__ import annotations

import json
import os

import pytest

from inspector.errors import CheckpointError, InspectorError
from inspector.lm.paths import (
    CHECKPOINT,
    MAX_QUANT_FILE_BYTES,
    QUANT_FILE,
    SWEEP_OUTPUT,
    SWEEP_RESULTS,
    Access,
    PathError,
    checked_path,
    read_limited,
)
from inspector.quant.config import QuantConfig, QuantConfigError
from inspector.quant.files import load_quant_config, quant_spec, save_quant_config


@pytest.fixture()
def roots(tmp_path):
    """A shared server's layout: a model root, a data root, and a secret file beside them."""
    models, data, outside = tmp_path / "models", tmp_path / "data", tmp_path / "outside"
    for d in (models, data, outside):
        d.mkdir()
    (outside / "secret.json").write_text(json.dumps({"api_token": "hunter2"}))
    return Access(True, (models,), data), models, data, outside


def _refused(typed, use, access, *fragments, replace=False, error=InspectorError) -> str:
    with pytest.raises(error) as info:
        checked_path(typed, use, access, replace=replace)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_inside_the_roots_is_accepted(roots):
    access, models, data, _ = roots
    (models / "m").mkdir()
    save_quant_config(QuantConfig(state_bits=12), data / "q.json")
    assert checked_path(str(models / "m"), CHECKPOINT, access) == (models / "m").resolve()
    assert load_quant_config(data / "q.json", access).state_bits == 12
    assert checked_path(str(data / "new" / "sweep"), SWEEP_OUTPUT, access) == (data / "new" / "sweep").resolve()


def test_outside_the_roots_never_tells_what_is_there(roots):
    access, _, data, outside = roots
    secret = _refused(str(outside / "secret.json"), QUANT_FILE, access, "outside the directories this shared server allows")
    missing = _refused(str(outside / "missing.json"), QUANT_FILE, access)
    assert "api_token" not in secret and "hunter2" not in secret
    assert secret.split(": ", 1)[1] == missing.split(": ", 1)[1]  # the same rule, whether the file exists or not
    with pytest.raises(QuantConfigError) as info:  # the loader says the same, never the file's key names
        quant_spec(str(outside / "secret.json"), access)
    assert "api_token" not in str(info.value) and "outside" in str(info.value)
    _refused(str(outside), SWEEP_OUTPUT, access, "outside", "INSPECTOR_DATA_ROOT")
    _refused(str(outside), SWEEP_RESULTS, access, "outside")
    _refused(str(outside), CHECKPOINT, access, "outside the allowed model directories", error=CheckpointError)
    _refused("/etc/qa-test", SWEEP_OUTPUT, access, "outside")
    assert not os.path.exists("/etc/qa-test")


def test_dot_dot_and_symlinks_cannot_escape(roots):
    access, models, data, outside = roots
    _refused(str(data / ".." / "outside" / "secret.json"), QUANT_FILE, access, "outside")
    (data / "link.json").symlink_to(outside / "secret.json")
    (data / "linkdir").symlink_to(outside)
    message = _refused(str(data / "link.json"), QUANT_FILE, access, "outside")
    assert "api_token" not in message
    _refused(str(data / "linkdir" / "sweep"), SWEEP_OUTPUT, access, "outside")
    (models / "m").symlink_to(outside)
    _refused(str(models / "m"), CHECKPOINT, access, "outside", error=CheckpointError)
    (data / "loop").symlink_to(data / "loop")
    _refused(str(data / "loop"), QUANT_FILE, access)  # a loop: refused with a message, no traceback


def test_home_of_other_users(roots):
    access, *_ = roots
    _refused("~nobody/x", QUANT_FILE, access, "'~' is not expanded on a shared server")
    local = Access.local()
    _refused("~nosuchuser_s22a/x", QUANT_FILE, local, "no user 'nosuchuser_s22a'")
    _refused("~nobody/x", QUANT_FILE, local, "cannot read")  # nobody's home does not exist (or holds no x)


@pytest.mark.parametrize("local", [True, False])
def test_long_names(roots, local):
    access = Access.local() if local else roots[0]
    for use in (CHECKPOINT, QUANT_FILE, SWEEP_OUTPUT, SWEEP_RESULTS):
        _refused("/" + "x" * 4999, use, access, "path too long", "5,000 characters")
        _refused("/tmp/" + "y" * 300, use, access, "longer than 255")
        _refused("/tmp/" + "é" * 200, use, access, "longer than 255")  # 400 bytes: NAME_MAX counts bytes


def test_devices_fifos_directories_and_size(tmp_path):
    access = Access.local()  # the checks that hold even for a single local user
    _refused("/dev/zero", QUANT_FILE, access, "not a regular file", "device")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    _refused(str(fifo), QUANT_FILE, access, "not a regular file")
    _refused(str(fifo), SWEEP_RESULTS, access, "not a directory")
    _refused(str(tmp_path), QUANT_FILE, access, "without run.json")
    (tmp_path / "run.json").mkdir()
    _refused(str(tmp_path), QUANT_FILE, access, "not a regular file", "a directory")
    big = tmp_path / "big.json"
    big.write_text(" " * (MAX_QUANT_FILE_BYTES + 1))
    _refused(str(big), QUANT_FILE, access, "too large", "65,537 bytes")
    with pytest.raises(QuantConfigError, match="not a regular file"):
        load_quant_config("/dev/zero")
    with pytest.raises(PathError, match="not a regular file"):
        read_limited(fifo, 10)  # a file swapped for a FIFO after the check is still never read
    with pytest.raises(PathError, match="too large"):
        read_limited(big, MAX_QUANT_FILE_BYTES)


def test_existing_results_are_not_overwritten_without_the_choice(tmp_path):
    access = Access.local()
    out = tmp_path / "sweep"
    assert checked_path(str(out), SWEEP_OUTPUT, access) == out.resolve()  # new: fine
    out.mkdir()
    assert checked_path(str(out), SWEEP_OUTPUT, access) == out.resolve()  # empty: fine
    (out / "best_quant_config.json").write_text("{}")
    _refused(str(out), SWEEP_OUTPUT, access, "already holds files", "Replace existing results")
    assert checked_path(str(out), SWEEP_OUTPUT, access, replace=True) == out.resolve()
    _refused(str(out / "best_quant_config.json"), SWEEP_OUTPUT, access, "not a directory")
    assert (out / "best_quant_config.json").read_text() == "{}"


def test_a_local_app_keeps_its_freedom(tmp_path):
    save_quant_config(QuantConfig(act_bits=6), tmp_path / "q.json")
    assert load_quant_config(tmp_path / "q.json").act_bits == 6  # anywhere, with Access.local()
    (tmp_path / "k.json").write_text(json.dumps({"api_token": 1}))
    with pytest.raises(QuantConfigError, match="api_token"):  # the user's own file: its key is named, as help
        load_quant_config(tmp_path / "k.json")


def test_shared_mode_is_decided_by_the_address_or_the_roots(monkeypatch, tmp_path):
    monkeypatch.delenv("INSPECTOR_MODEL_ROOTS", raising=False)
    monkeypatch.setenv("INSPECTOR_DATA_ROOT", str(tmp_path))
    assert not Access.for_server(False).restricted
    assert Access.for_server(True).restricted and Access.for_server(True).model_roots is None
    assert Access.for_server(False).data_root == tmp_path.resolve()
    monkeypatch.setenv("INSPECTOR_MODEL_ROOTS", str(tmp_path / "m"))
    assert Access.for_server(False).restricted
    _refused(str(tmp_path / "x"), CHECKPOINT, Access.for_server(True), "outside the allowed model directories")
    monkeypatch.delenv("INSPECTOR_MODEL_ROOTS")
    _refused(str(tmp_path / "x"), CHECKPOINT, Access.for_server(True), "this server is shared")


def test_a_path_with_an_equals_sign_is_read_as_a_path(tmp_path):
    """quant_spec tells overrides from paths by their form, never by whether a file exists."""
    path = save_quant_config(QuantConfig(state_bits=10), tmp_path / "state=10.json")
    assert quant_spec(str(path)).state_bits == 10
    assert quant_spec("state_bits=10 , act_bits=6") == QuantConfig(state_bits=10, act_bits=6)


def test_cli_paths_give_one_line_errors(capsys, tmp_path):
    """The CLI keeps its freedom but says what is wrong with a device, a long name or a file in the way, without a traceback."""
    from inspector.cli import main

    cases = [
        (["run", "--model", "shakespeare", "--prompt", "R", "--out", "/" + "x" * 5000], "path too long"),
        (["run", "--model", "shakespeare", "--prompt", "R", "--out", "/dev/zero"], "not a directory"),
        (["run", "--model", "shakespeare", "--prompt", "R", "--tokens", "1", "--quant-file", "/dev/zero", "--out",
          str(tmp_path / "o")], "not a regular file"),
    ]
    for argv, said in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()
