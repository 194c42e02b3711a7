"""The seccomp policy as data: a table that a review reads, and a lint."""
from sandbox import _core

DANGEROUS = {
    "execve", "execveat", "fork", "vfork", "clone3", "ptrace", "process_vm_readv",
    "process_vm_writev", "mount", "umount2", "pivot_root", "chroot", "bpf", "keyctl",
    "add_key", "request_key", "unshare", "setns", "socket", "connect", "bind",
    "kill", "tgkill", "tkill", "setrlimit", "setuid", "setresuid", "capset", "prctl",
    "init_module", "finit_module", "kexec_load", "reboot", "open_by_handle_at",
    "perf_event_open", "userfaultfd", "io_uring_setup", "pidfd_send_signal", "pidfd_getfd",
}

EXPECTED = {
    "read": "allow", "mmap": "allow", "exit_group": "allow", "getrandom": "allow",
    "openat": "allow-if", "open": "allow-if", "clone": "allow-if", "prlimit64": "allow-if",
    "socket": "errno", "fork": "errno", "clone3": "errno", "kill": "errno",
    "execve": "kill", "ptrace": "kill", "mount": "kill", "bpf": "kill",
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
    text = _core.policy_dump(False)
    assert "filter for arch x86_64" in text or "filter for arch" in text
    assert "action ALLOW" in text and "action KILL_PROCESS" in text
    assert _core.policy_dump(True) != text  # the threads variant differs
