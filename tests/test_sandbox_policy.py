"""The seccomp policy as data: a table that a review reads, and a lint."""

from sandbox import _core

DANGEROUS = {
    "execve",
    "execveat",
    "fork",
    "vfork",
    "clone3",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "unshare",
    "setns",
    "socket",
    "connect",
    "bind",
    "kill",
    "tgkill",
    "tkill",
    "setrlimit",
    "setuid",
    "setresuid",
    "capset",
    "prctl",
    "init_module",
    "finit_module",
    "kexec_load",
    "reboot",
    "open_by_handle_at",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "pidfd_send_signal",
    "pidfd_getfd",
}

EXPECTED = {
    "read": "allow",
    "mmap": "allow",
    "exit_group": "allow",
    "getrandom": "allow",
    "openat": "allow-if",
    "open": "allow-if",
    "clone": "allow-if",
    "prlimit64": "allow-if",
    "socket": "errno",
    "fork": "errno/notify",
    "clone3": "errno",
    "kill": "self-only",
    "tgkill": "self-only",
    "tkill": "self-only",
    "pause": "allow",
    "prctl": "errno/allow-if",
    "setpgid": "errno/allow-if",
    "execve": "kill",
    "ptrace": "kill",
    "mount": "kill",
    "bpf": "kill",
}


def table():
    return {name: (action, err) for name, action, err in _core.policy_table()}


def test_table_actions():
    rules = table()
    for name, action in EXPECTED.items():
        assert rules[name][0] == action, name
    assert rules["clone3"][1] == 38  # ENOSYS: thread libraries fall back to clone


def test_nothing_dangerous_is_allowed():
    rules = table()
    allowed = {n for n, (action, _) in rules.items() if action in ("allow", "allow-if")}
    assert not (allowed & DANGEROUS)
    assert DANGEROUS <= set(rules)  # each is listed, so a review sees its action


def test_policy_dump_is_readable():
    text = _core.policy_dump("plain")
    assert "filter for arch x86_64" in text or "filter for arch" in text
    assert "action ALLOW" in text and "action KILL_PROCESS" in text
    assert _core.policy_dump("threads") != text  # the threads variant differs
    assert "NOTIFY" not in text and "0x7fc00000" not in text


def test_notify_variant_sends_process_creation_to_the_zygote():
    text = _core.policy_dump("notify")
    lines = text.splitlines()

    def rule(syscall):
        """The lines of the PFC dump that belong to one syscall's rule."""
        start = next(i for i, line in enumerate(lines) if f'# filter for syscall "{syscall}"' in line)
        end = next((i for i in range(start + 1, len(lines)) if "# filter for syscall" in lines[i]), len(lines))
        return "\n".join(lines[start:end])

    notify = ("action NOTIFY", "action 0x7fc00000")  # SECCOMP_RET_USER_NOTIF; older libseccomp prints it raw
    for syscall in ("clone", "fork", "vfork"):
        assert any(a in rule(syscall) for a in notify), syscall
    # prctl only as PR_SET_PDEATHSIG (1) with SIGKILL (9); setpgid only (0, 0)
    assert "$a0.lo32 == 1" in rule("prctl") and "$a1.lo32 == 9" in rule("prctl")
    assert "$a0.lo32 == 0" in rule("setpgid") and "$a1.lo32 == 0" in rule("setpgid")
    # prlimit64 sets a limit only on itself (pid 0) and only RLIMIT_CPU (0);
    # the other variants only read limits
    assert "$a0.lo32 == 0" in rule("prlimit64") and "$a1.lo32 == 0" in rule("prlimit64")
    plain = _core.policy_dump("plain")
    plain_prlimit = plain[plain.index('syscall "prlimit64"') :]
    assert "$a0" not in plain_prlimit.split("# filter for syscall")[0]
    assert not any(a in _core.policy_dump("threads") for a in notify)


def test_signals_only_to_the_process_itself():
    """kill and kin pass only with the child's own pid, bound into its copy of
    the program when it loads it; under the notify filter the zygote checks
    (a snapshot's children share its filter, not its pid)."""
    mark = str(0x5EEDF00D)  # as the PFC dump prints it
    for variant in ("plain", "threads"):
        text = _core.policy_dump(variant)
        for syscall in ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            rule = text[text.index(f'syscall "{syscall}"') :].split("# filter for syscall")[0]
            assert mark in rule and "action ALLOW" in rule, (variant, syscall)
    notify = _core.policy_dump("notify")
    kill = notify[notify.index('syscall "kill"') :].split("# filter for syscall")[0]
    assert mark not in kill and ("action NOTIFY" in kill or "0x7fc00000" in kill)
    assert table()["pidfd_send_signal"][0] == "errno"
