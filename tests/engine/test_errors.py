"""Engine errors in the words of the command line and of the app."""

from __future__ import annotations


def test_errors_have_words_for_the_app() -> None:
    """Issue 16: dialogs said "run the same command again"."""
    from engine.errors import ChecksumMismatchError, DiskFullError, InsufficientDiskError, TandemError

    for exc in (
        DiskFullError("/d/m.gguf.part", "No space left on device"),
        ChecksumMismatchError("o/r", "m.gguf", "a" * 64, "b" * 64),
        InsufficientDiskError("/d", 10 * 2**30, 2**30),
    ):
        cli, gui = str(exc), exc.for_gui()
        assert "command" in cli or "TANDEM_DATA_DIR" in cli
        assert "command" not in gui and "TANDEM_DATA_DIR" not in gui
    plain = TandemError("something broke")
    assert plain.for_gui() == "something broke"
