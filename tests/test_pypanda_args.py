"""pandagpm.pypanda.machine_args without PANDA: a generic image's QEMU 10
machine arguments in the spelling QEMU 2.9 (PANDA) accepts."""

from types import SimpleNamespace

from pandagpm.pypanda import machine_args


def _img(args):
    return SimpleNamespace(profile={"qemu": {"machine_args": args}})


def test_qemu10_only_options_are_translated():
    got = machine_args(_img([
        "-machine", "malta", "-accel", "tcg", "-cpu", "24Kf",
        "-icount", "shift=auto,sleep=off", "-smp", "1", "-m", "256M",
        "-nodefaults", "-nic", "none", "-no-reboot"]))
    # No -accel or -m (pandare passes -m), no -icount (2.9 refuses
    # sleep=off with shift=auto; its MIPS target aborts with icount).
    assert got == ["-machine", "malta", "-cpu", "24Kf", "-smp", "1",
                   "-nodefaults", "-net", "none", "-no-reboot"]


def test_other_arguments_are_kept_in_order():
    args = ["-machine", "q35", "-cpu", "qemu64", "-display", "none"]
    assert machine_args(_img(args)) == args
