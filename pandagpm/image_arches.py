"""The per-arch rows of the generic images: what differs between
architectures (Debian packages, QEMU machine, console, kernel facts to
read), and which structure members every profile carries.

Pure data, used by :mod:`pandagpm.image` (which re-exports it); adding an
arch adds a row here and, where its kernel needs more than BTF, a module
like :mod:`pandagpm.image_arm` or :mod:`pandagpm.image_i386`.
"""

import dataclasses

__all__ = ["ARCHES", "ArchSpec", "EXTRA_FIELDS", "STRUCT_FIELDS"]


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """What differs between architectures."""

    name: str
    debian_arch: str
    kernel_meta: str        # Debian meta package naming the kernel
    kernel_series: str      # the kernel package must start with this
    kernel_file: str        # file under /boot in the kernel package
    qemu_binary: str
    machine_args: tuple[str, ...]
    console: str
    append: str
    ram_size: int = 512 * 1024 * 1024
    #: A RAM page the kernel is told to leave alone (memmap=4K$addr): the
    #: channel doorbell page, which the host writes directly (see abi.h).
    doorbell_phys: int = 0
    #: Guest-physical region kept from the kernel the same way for the
    #: shared-memory channel rings (gpm/ring_abi.h, docs/rings.md).
    ring_phys: int = 0
    ring_size: int = 0
    #: Kernel symbols read from /proc/kallsyms into the profile.
    symbols: tuple[str, ...] = ()
    #: Of those, the ones the build fails without.
    required_symbols: tuple[str, ...] = ("entry_SYSCALL_64", "current_task",
                                         "__per_cpu_offset", "init_task")
    #: Lines the kernel's /boot/config-* must hold (no modules are loaded).
    config_need: tuple[str, ...] = (
        "CONFIG_SERIAL_8250=y", "CONFIG_SERIAL_8250_CONSOLE=y",
        "CONFIG_BLK_DEV_INITRD=y", "CONFIG_RD_GZIP=y", "CONFIG_DEVTMPFS=y",
        "CONFIG_DEBUG_INFO_BTF=y")
    #: A foreign Debian architecture: packages are asked for as
    #: ``name:debian_arch`` (``dpkg --add-architecture`` must have run).
    foreign: bool = False
    #: Guest-physical address of the first byte of RAM, i.e. of offset 0
    #: of the shared RAM file (0 on x86; 0x40000000 on QEMU's ARM virt).
    ram_base: int = 0
    #: Where the kernel's structure offsets come from: "btf" (the kernel
    #: file's .BTF) or "headers" (the kernel's Debian headers, compiled).
    offsets_from: str = "btf"
    #: Bump when this arch's recipe or profile changes, so its cached
    #: images rebuild without touching the other arches' keys (0: not in
    #: the key, which keeps x86_64's key what it always was).
    recipe_version: int = 0


ARCHES: dict[str, ArchSpec] = {
    "x86_64": ArchSpec(
        name="x86_64",
        debian_arch="amd64",
        kernel_meta="linux-image-amd64",
        kernel_series="linux-image-6.1.",
        kernel_file="vmlinuz-",
        qemu_binary="qemu-system-x86_64",
        # TCG only, so nothing but QEMU itself sees the guest's CPUID.
        # qemu64 is a stable CPU model (no la57: 4-level paging) whose
        # AMD vendor string keeps KPTI off; mitigations=off makes sure.
        machine_args=("-machine", "q35", "-accel", "tcg", "-cpu", "qemu64",
                      "-smp", "1", "-m", "512M", "-nodefaults",
                      "-no-user-config", "-display", "none", "-nic", "none",
                      "-no-reboot"),
        console="ttyS0",
        append=("console=ttyS0 nokaslr mitigations=off quiet loglevel=1 "
                "panic=-1 8250.nr_uarts=1 memmap=4K$0x1fe00000 "
                "memmap=16M$0x1ee00000"),
        doorbell_phys=0x1FE00000,
        ring_phys=0x1EE00000,
        ring_size=16 << 20,
        symbols=("entry_SYSCALL_64", "entry_SYSCALL_64_after_hwframe",
                 "do_syscall_64", "current_task", "__per_cpu_offset",
                 "init_task", "page_offset_base", "phys_base", "_text",
                 "_stext", "_etext", "__x64_sys_execve",
                 "__x64_sys_exit_group", "do_exit", "__switch_to",
                 "swapgs_restore_regs_and_return_to_usermode"),
    ),
    # QEMU's "virt" board: RAM from 0x40000000, a PL011 UART (ttyAMA0).
    # The doorbell page is RAM's last page and the 16 MiB below it hold
    # the channel rings, kept from the kernel with mem= (512 MiB - 16 MiB
    # - 4 KiB): memmap= is x86-only, and with mem= the page
    # is not even in the kernel's memory map (see docs/image.md).
    "aarch64": ArchSpec(
        name="aarch64",
        debian_arch="arm64",
        kernel_meta="linux-image-arm64",
        kernel_series="linux-image-6.1.",
        kernel_file="vmlinuz-",
        qemu_binary="qemu-system-aarch64",
        # cortex-a57: a fixed ARMv8.0 model (48-bit VA, 4-level tables)
        # with no pointer authentication, BTI or MTE (pointer
        # authentication's QARMA is slow under TCG and signs return
        # addresses), which both QEMU 10 and PANDA's older QEMU have,
        # and which the kernel does not need KPTI on.  No EL2/EL3: the
        # kernel runs at EL1 without VHE, so TPIDR_EL1 is the per-CPU base.
        machine_args=("-machine", "virt", "-accel", "tcg", "-cpu",
                      "cortex-a57", "-smp", "1", "-m", "512M", "-nodefaults",
                      "-no-user-config", "-display", "none", "-nic", "none",
                      "-no-reboot"),
        console="ttyAMA0",
        append=("console=ttyAMA0 nokaslr mitigations=off quiet loglevel=1 "
                "panic=-1 mem=507900K"),
        doorbell_phys=0x5FFFF000,
        ring_phys=0x5EFFF000,
        ring_size=16 << 20,
        ram_base=0x40000000,
        foreign=True,
        recipe_version=1,
        symbols=("vectors", "el0t_64_sync", "el0t_64_sync_handler",
                 "el0_svc", "do_el0_svc", "el0_svc_common", "invoke_syscall",
                 "ret_to_user", "__entry_task", "__per_cpu_offset",
                 "init_task", "runqueues", "_text", "_stext", "_etext",
                 "_end", "kimage_voffset", "memstart_addr", "swapper_pg_dir",
                 "__arm64_sys_execve", "__arm64_sys_exit_group", "do_exit",
                 "__switch_to", "cpu_switch_to", "sys_call_table"),
        # Data symbols come from the export table (image_arm).
        required_symbols=("el0t_64_sync", "el0_svc", "_stext", "vectors"),
        config_need=("CONFIG_SERIAL_AMBA_PL011=y",
                     "CONFIG_SERIAL_AMBA_PL011_CONSOLE=y",
                     "CONFIG_BLK_DEV_INITRD=y", "CONFIG_RD_GZIP=y",
                     "CONFIG_DEVTMPFS=y", "CONFIG_DEBUG_INFO_BTF=y",
                     "CONFIG_ARM64_VA_BITS=48", "CONFIG_ARM64_PAGE_SHIFT=12",
                     "CONFIG_PGTABLE_LEVELS=4", "CONFIG_THREAD_INFO_IN_TASK=y"),
    ),
    "arm": ArchSpec(
        name="arm",
        debian_arch="armhf",
        kernel_meta="linux-image-armmp",
        kernel_series="linux-image-6.1.",
        kernel_file="vmlinuz-",
        qemu_binary="qemu-system-arm",
        # cortex-a15 (virt's usual CPU for 32-bit kernels): ARMv7-A with
        # the multiprocessing extensions the armmp kernel expects; the
        # kernel is built without LPAE, so it uses short descriptors.
        machine_args=("-machine", "virt", "-accel", "tcg", "-cpu",
                      "cortex-a15", "-smp", "1", "-m", "512M", "-nodefaults",
                      "-no-user-config", "-display", "none", "-nic", "none",
                      "-no-reboot"),
        console="ttyAMA0",
        append=("console=ttyAMA0 mitigations=off quiet loglevel=1 panic=-1 "
                "mem=507900K"),
        doorbell_phys=0x5FFFF000,
        ring_phys=0x5EFFF000,
        ring_size=16 << 20,
        ram_base=0x40000000,
        foreign=True,
        recipe_version=1,
        symbols=("vector_swi", "__vectors_start", "__stubs_start",
                 "vector_bhb_loop8_swi", "vector_bhb_bpiall_swi",
                 "ret_fast_syscall", "ret_to_user", "__entry_task",
                 "__per_cpu_offset", "init_task", "runqueues", "_text",
                 "_stext", "_etext", "_end", "swapper_pg_dir",
                 "__pv_phys_pfn_offset", "__pv_offset", "sys_execve",
                 "sys_exit_group", "do_exit", "__switch_to", "sys_call_table"),
        required_symbols=("vector_swi", "_stext"),
        config_need=("CONFIG_SERIAL_AMBA_PL011=y",
                     "CONFIG_SERIAL_AMBA_PL011_CONSOLE=y",
                     "CONFIG_BLK_DEV_INITRD=y", "CONFIG_RD_GZIP=y",
                     "CONFIG_DEVTMPFS=y", "CONFIG_ARCH_VIRT=y",
                     "CONFIG_VMSPLIT_3G=y", "CONFIG_PAGE_OFFSET=0xC0000000",
                     "CONFIG_THREAD_INFO_IN_TASK=y",
                     "CONFIG_CURRENT_POINTER_IN_TPIDRURO=y",
                     "CONFIG_RANDSTRUCT_NONE=y", "# CONFIG_ARM_LPAE is not set"),
        # Debian's armmp kernel has no BTF (CONFIG_DEBUG_INFO_BTF is off).
        offsets_from="headers",
    ),
    # A PC (i440FX) with a 32-bit CPU: Debian's 686-pae kernel, PAE
    # paging. qemu32 is a stable model with PAE and SEP; with
    # mitigations=off the kernel keeps one set of page tables (no PTI).
    # The vDSO is mapped (the kernel's default), so glibc (AT_SYSINFO)
    # enters the kernel by sysenter through __kernel_vsyscall
    # (entry_SYSENTER_32) and only code that executes int $0x80 itself
    # uses entry_INT80_32; linjector handles both (docs/arch.md). The
    # doorbell is kept out with memmap= as on x86_64.
    "i386": ArchSpec(
        name="i386",
        debian_arch="i386",
        kernel_meta="linux-image-686-pae",
        kernel_series="linux-image-6.1.",
        kernel_file="vmlinuz-",
        qemu_binary="qemu-system-i386",
        machine_args=("-machine", "pc", "-accel", "tcg", "-cpu", "qemu32",
                      "-smp", "1", "-m", "512M", "-nodefaults",
                      "-no-user-config", "-display", "none", "-nic", "none",
                      "-no-reboot"),
        console="ttyS0",
        append=("console=ttyS0 nokaslr mitigations=off quiet "
                "loglevel=1 panic=-1 8250.nr_uarts=1 memmap=4K$0x1fe00000 "
                "memmap=16M$0x1ee00000"),
        doorbell_phys=0x1FE00000,
        ring_phys=0x1EE00000,
        ring_size=16 << 20,
        foreign=True,
        # Text symbols from /proc/kallsyms; the data symbols (the kernel
        # has no CONFIG_KALLSYMS_ALL) from its export table (image_i386).
        symbols=("entry_INT80_32", "entry_SYSENTER_32",
                 "do_int80_syscall_32", "do_fast_syscall_32", "_text",
                 "_stext", "_etext", "__switch_to", "__switch_to_asm",
                 "do_exit", "__ia32_sys_execve", "__ia32_sys_exit_group",
                 "restore_all_switch_stack", "syscall_exit_to_user_mode"),
        required_symbols=("entry_INT80_32", "_stext", "entry_SYSENTER_32",
                          "syscall_exit_to_user_mode"),
        config_need=("CONFIG_SERIAL_8250=y", "CONFIG_SERIAL_8250_CONSOLE=y",
                     "CONFIG_BLK_DEV_INITRD=y", "CONFIG_RD_GZIP=y",
                     "CONFIG_DEVTMPFS=y", "CONFIG_X86_PAE=y",
                     "CONFIG_VMSPLIT_3G=y", "CONFIG_PAGE_OFFSET=0xC0000000",
                     "CONFIG_PHYSICAL_START=0x1000000",
                     "CONFIG_RANDSTRUCT_NONE=y", "CONFIG_SMP=y"),
        # Debian's 686-pae kernel has no BTF (CONFIG_DEBUG_INFO_BTF is
        # off): offsets from its headers, as for arm.
        offsets_from="headers",
    ),
    # QEMU's Malta board with a MIPS32R2 24Kf: Debian's 4kc-malta kernel
    # (32-bit, 4 KiB pages, 2-level tables, no highmem). 256 MiB: all of
    # it is low RAM at guest-physical 0 (Malta maps only 256 MiB there),
    # so RAM file offset = physical address = kseg0 address - 0x80000000.
    # The doorbell is RAM's last page and the channel rings the 16 MiB at
    # 224 MiB, both kept out with two mem= (MIPS has no memmap=; the
    # first mem= replaces the firmware's map): QEMU puts the initrd just
    # below the top of the 256 MiB, so the rings cannot sit under the
    # doorbell as on ARM. The kernel is relocatable with KASLR: nokaslr
    # keeps the profile's addresses.
    "mipsel": ArchSpec(
        name="mipsel",
        debian_arch="mipsel",
        kernel_meta="linux-image-4kc-malta",
        kernel_series="linux-image-6.1.",
        kernel_file="vmlinuz-",
        qemu_binary="qemu-system-mipsel",
        # -icount sleep=off: a restored snapshot otherwise sleeps in
        # `wait` for as long as the guest had run before savevm (16-18 s,
        # measured: no interrupt arrives, not even the UART's); with it
        # an idle CPU moves the virtual clock on to the next timer at
        # once (load to shell 0.3-0.5 s), at the price of an idle guest
        # using a host CPU (docs/image.md).
        machine_args=("-machine", "malta", "-accel", "tcg", "-cpu", "24Kf",
                      "-icount", "shift=auto,sleep=off",
                      "-smp", "1", "-m", "256M", "-nodefaults",
                      "-no-user-config", "-display", "none", "-nic", "none",
                      "-no-reboot"),
        console="ttyS0",
        append=("console=ttyS0 nokaslr quiet loglevel=1 panic=-1 "
                "mem=229376K@0 mem=16380K@0xf000000"),
        ram_size=256 * 1024 * 1024,
        doorbell_phys=0x0FFFF000,
        ring_phys=0x0E000000,
        ring_size=16 << 20,
        foreign=True,
        # Text symbols (and the entry's local labels) from /proc/kallsyms;
        # init_task from the export table, kernelsp and pgd_current from
        # the code that uses them (image_mips).
        symbols=("handle_sys", "loads_done", "syscall_common",
                 "handle_sys64", "except_vec3_generic", "_text", "_stext",
                 "_etext", "_end", "resume", "do_exit", "sys_execve",
                 "sys_exit_group", "sys_call_table"),
        required_symbols=("handle_sys", "loads_done", "_stext"),
        config_need=("CONFIG_SERIAL_8250=y", "CONFIG_SERIAL_8250_CONSOLE=y",
                     "CONFIG_BLK_DEV_INITRD=y", "CONFIG_RD_GZIP=y",
                     "CONFIG_DEVTMPFS=y", "CONFIG_32BIT=y",
                     "CONFIG_CPU_LITTLE_ENDIAN=y", "CONFIG_PAGE_SIZE_4KB=y",
                     "CONFIG_PGTABLE_LEVELS=2", "# CONFIG_HIGHMEM is not set",
                     "CONFIG_RANDSTRUCT_NONE=y", "CONFIG_MEMFD_CREATE=y"),
        # Debian's malta kernels have no BTF: offsets from the headers.
        offsets_from="headers",
        recipe_version=3,
    ),
    # The same board with a MIPS64R2 5KEf: Debian's 5kc-malta kernel
    # (64-bit, 4 KiB pages, 3-level tables), n64 userland; the rest as
    # for mipsel.
    "mips64el": ArchSpec(
        name="mips64el",
        debian_arch="mips64el",
        kernel_meta="linux-image-5kc-malta",
        kernel_series="linux-image-6.1.",
        kernel_file="vmlinuz-",
        qemu_binary="qemu-system-mips64el",
        # -icount sleep=off: a restored snapshot otherwise sleeps in
        # `wait` for as long as the guest had run before savevm (16-18 s,
        # measured: no interrupt arrives, not even the UART's); with it
        # an idle CPU moves the virtual clock on to the next timer at
        # once (load to shell 0.3-0.5 s), at the price of an idle guest
        # using a host CPU (docs/image.md).
        machine_args=("-machine", "malta", "-accel", "tcg", "-cpu", "5KEf",
                      "-icount", "shift=auto,sleep=off",
                      "-smp", "1", "-m", "256M", "-nodefaults",
                      "-no-user-config", "-display", "none", "-nic", "none",
                      "-no-reboot"),
        console="ttyS0",
        append=("console=ttyS0 nokaslr quiet loglevel=1 panic=-1 "
                "mem=229376K@0 mem=16380K@0xf000000"),
        ram_size=256 * 1024 * 1024,
        doorbell_phys=0x0FFFF000,
        ring_phys=0x0E000000,
        ring_size=16 << 20,
        foreign=True,
        # Text symbols (and the entry's local labels) from /proc/kallsyms;
        # init_task from the export table, kernelsp and pgd_current from
        # the code that uses them (image_mips).
        symbols=("handle_sys64", "handle_sys", "handle_sysn32",
                 "syscall_common", "n64_syscall_check", "not_o32_scall",
                 "except_vec3_generic", "_stext", "_etext", "_end",
                 "resume", "do_exit", "sys_execve", "sys_exit_group",
                 "sys_call_table"),
        required_symbols=("handle_sys64", "handle_sys", "_stext"),
        config_need=("CONFIG_SERIAL_8250=y", "CONFIG_SERIAL_8250_CONSOLE=y",
                     "CONFIG_BLK_DEV_INITRD=y", "CONFIG_RD_GZIP=y",
                     "CONFIG_DEVTMPFS=y", "CONFIG_64BIT=y",
                     "CONFIG_CPU_LITTLE_ENDIAN=y", "CONFIG_PAGE_SIZE_4KB=y",
                     "CONFIG_PGTABLE_LEVELS=3", "CONFIG_MIPS_PGD_C0_CONTEXT=y",
                     "CONFIG_RANDSTRUCT_NONE=y", "CONFIG_MEMFD_CREATE=y"),
        # Debian's malta kernels have no BTF: offsets from the headers.
        offsets_from="headers",
        recipe_version=2,
    ),
}

#: Structure members whose offsets go into the profile, from BTF.
STRUCT_FIELDS: dict[str, tuple[str, ...]] = {
    "task_struct": ("pid", "tgid", "comm", "mm", "active_mm", "cred",
                    "real_cred", "real_parent", "parent", "group_leader",
                    "tasks", "flags", "__state", "thread_pid"),
    "cred": ("uid", "gid", "euid", "egid", "suid", "fsuid"),
    "mm_struct": ("pgd", "start_code", "end_code", "start_stack", "arg_start",
                  "arg_end"),
}

#: More members per arch (x86_64's profile keeps exactly the above).
#: ``thread_info`` is task_struct's first member (THREAD_INFO_IN_TASK) and
#: ``stack`` the task's kernel stack; struct rq's ``curr`` (per-CPU
#: ``runqueues``) is a second way to the running task (arm64: struct rq
#: is private to the scheduler, so the headers of the arm image lack it).
EXTRA_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "aarch64": {"task_struct": ("stack", "thread_info"),
                "thread_info": ("flags", "cpu"),
                "rq": ("curr",)},
    "arm": {"task_struct": ("stack", "thread_info"),
            "thread_info": ("flags", "cpu", "tp_value")},
    # MIPS: thread_info (first word: the task) sits at the base of the
    # kernel stack, not in task_struct; pt_regs is what the entry saves.
    "mipsel": {"task_struct": ("stack",),
               "thread_info": ("task", "flags", "cpu")},
    "mips64el": {"task_struct": ("stack",),
                 "thread_info": ("task", "flags", "cpu")},
}
