//! Every error a user can hit: one line that says what to do, a non-zero exit, and nothing left
//! installed.

use std::{
    fs::File,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, Result};
use fwlog_tests::{fwlog::fwlog_command, fwlog_bin, NetNsGuard, TestNet};

/// Asserts the error contract and returns the message.
fn assert_fails_cleanly(net: &TestNet, before: &str, output: &Output) -> Result<String> {
    assert!(!output.status.success(), "fwlog should fail: {output:?}");
    let stderr = String::from_utf8(output.stderr.clone())?;
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("fwlog: "), "{stderr}");
    assert!(output.stdout.is_empty(), "no events printed");
    assert_eq!(net.host.saved_rules()?, before, "nothing left in iptables");
    assert!(!net.host.pin_dir().exists(), "no pins left");
    Ok(lines[0].to_string())
}

/// A command that enters `netns` in the child itself (`pre_exec`), so the test can change
/// more of the child's world first.
fn fwlog_in(
    netns: &NetNsGuard,
    prepare: impl Fn() -> std::io::Result<()> + Send + Sync + 'static,
) -> Result<Command> {
    let netns_file = File::open(netns.path()).context("opening the namespace")?;
    let mut command = Command::new(fwlog_bin());
    // SAFETY: only async-signal-safe system calls run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            prepare()?;
            if libc::setns(netns_file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command)
}

#[test]
fn not_root() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let netns_file = File::open(net.host.path())?;
    let mut command = Command::new(fwlog_bin());
    // SAFETY: only async-signal-safe system calls run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let nobody = 65534;
            let ok = libc::setns(netns_file.as_raw_fd(), libc::CLONE_NEWNET) == 0
                && libc::setgroups(0, std::ptr::null()) == 0
                && libc::setgid(nobody) == 0
                && libc::setuid(nobody) == 0;
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let output = command.args(["watch", &net.host_if]).output()?;
    let message = assert_fails_cleanly(&net, &before, &output)?;
    assert_eq!(
        message,
        "fwlog: fwlog watch must run as root (it installs iptables rules and loads eBPF programs): try `sudo fwlog watch ...`"
    );
    Ok(())
}

#[test]
fn interface_does_not_exist() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let output = fwlog_command(&net.host)
        .args(["watch", "nosuch0"])
        .output()?;
    let message = assert_fails_cleanly(&net, &before, &output)?;
    assert_eq!(
        message,
        format!(
            "fwlog: interface \"nosuch0\" does not exist; interfaces here: lo, {}",
            net.host_if
        )
    );
    Ok(())
}

#[test]
fn iptables_missing() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let empty = tempdir("no-iptables")?;
    let output = fwlog_in(&net.host, || Ok(()))?
        .env("PATH", &empty)
        .args(["watch", &net.host_if])
        .output()?;
    let message = assert_fails_cleanly(&net, &before, &output)?;
    assert!(message.starts_with("fwlog: iptables-save not found in PATH: install iptables (Debian/Ubuntu: `apt install iptables`"), "{message}");
    std::fs::remove_dir(&empty)?;
    Ok(())
}

#[test]
fn bpf_match_missing() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    // iptables finds its extensions through XTABLES_LIBDIR: offer every one but libxt_bpf.
    let libdir = tempdir("no-xt-bpf")?;
    let real = [
        "/usr/lib/x86_64-linux-gnu/xtables",
        "/usr/lib64/xtables",
        "/usr/lib/xtables",
    ]
    .into_iter()
    .map(Path::new)
    .find(|dir| dir.join("libxt_bpf.so").exists())
    .context("no iptables extension directory with libxt_bpf.so")?;
    for entry in std::fs::read_dir(real)? {
        let entry = entry?;
        if entry.file_name() != "libxt_bpf.so" {
            std::os::unix::fs::symlink(entry.path(), libdir.join(entry.file_name()))?;
        }
    }
    let output = fwlog_command(&net.host)
        .env("XTABLES_LIBDIR", &libdir)
        .args(["watch", &net.host_if])
        .output()?;
    let message = assert_fails_cleanly(&net, &before, &output)?;
    assert!(
        message.starts_with("fwlog: the iptables bpf match (xt_bpf) is missing for iptables: load the kernel module with `modprobe xt_bpf`"),
        "{message}"
    );
    std::fs::remove_dir_all(&libdir)?;
    Ok(())
}

#[test]
fn bpffs_not_mounted() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    // A private mount namespace for the child, with a tmpfs hiding bpffs.
    let output = fwlog_in(&net.host, || {
        use nix::{
            mount::{mount, MsFlags},
            sched::{unshare, CloneFlags},
        };
        unshare(CloneFlags::CLONE_NEWNS)?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )?;
        mount(
            Some("none"),
            "/sys/fs/bpf",
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )?;
        Ok(())
    })?
    .args(["watch", &net.host_if])
    .output()?;
    let message = assert_fails_cleanly(&net, &before, &output)?;
    assert_eq!(
        message,
        "fwlog: bpffs is not mounted at /sys/fs/bpf: mount it with `mount -t bpf bpf /sys/fs/bpf`"
    );
    Ok(())
}

#[test]
fn kernel_without_bpf() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    // A seccomp filter makes bpf() fail with ENOSYS, as on a kernel built without it.
    let output = fwlog_in(&net.host, deny_bpf_syscall)?
        .args(["watch", &net.host_if])
        .output()?;
    let message = assert_fails_cleanly(&net, &before, &output)?;
    assert_eq!(
        message,
        "fwlog: this kernel has no BPF support (the bpf() system call is missing or blocked): fwlog needs a kernel built with CONFIG_BPF_SYSCALL"
    );
    Ok(())
}

#[test]
fn kernel_without_ring_buffers() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    // BPF_MAP_CREATE answered with EINVAL, as a kernel before 5.8 answers for a ring buffer.
    let output = fwlog_in(&net.host, || refuse_bpf_command(BPF_MAP_CREATE))?
        .args(["watch", &net.host_if])
        .output()?;
    let message = assert_fails_cleanly(&net, &before, &output)?;
    assert_eq!(
        message,
        "fwlog: this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8 and later), which carries every event: fwlog cannot run here"
    );
    Ok(())
}

/// `bpf(BPF_MAP_CREATE, ...)` (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: u32 = 0;

/// Installs a classic-BPF seccomp filter: bpf(`command`, ...) → EINVAL, everything else
/// allowed.
fn refuse_bpf_command(command: u32) -> std::io::Result<()> {
    fail_bpf(Some(command), libc::EINVAL)
}

/// Installs a classic-BPF seccomp filter: bpf() → ENOSYS, everything else allowed.
fn deny_bpf_syscall() -> std::io::Result<()> {
    fail_bpf(None, libc::ENOSYS)
}

/// A seccomp filter that fails bpf() with `errno` (only for `command`, bpf's first argument,
/// when given) and allows everything else.
fn fail_bpf(command: Option<u32>, errno: i32) -> std::io::Result<()> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const ARCH_OFFSET: u32 = 4; // struct seccomp_data { int nr; __u32 arch; u64 ip; u64 args[6]; }
    const ARG0_OFFSET: u32 = 16; // the low half of args[0] (little-endian)
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    // Built on the stack: this runs between fork and exec, where allocating is not safe.
    let allow = stmt(ret, libc::SECCOMP_RET_ALLOW);
    let mut filter = [allow; 9];
    let mut len = 0;
    let mut push = |instruction| {
        filter[len] = instruction;
        len += 1;
    };
    push(stmt(load, ARCH_OFFSET));
    push(jeq(AUDIT_ARCH_X86_64, 1, 0));
    push(allow);
    push(stmt(load, 0));
    // Not bpf(): on to the last instruction (allow), past the command's check if there is one.
    push(jeq(
        libc::SYS_bpf as u32,
        0,
        if command.is_some() { 3 } else { 1 },
    ));
    if let Some(command) = command {
        push(stmt(load, ARG0_OFFSET));
        push(jeq(command, 0, 1));
    }
    push(stmt(ret, libc::SECCOMP_RET_ERRNO | errno as u32));
    push(allow);
    install_seccomp(&mut filter[..len])
}

fn install_seccomp(filter: &mut [libc::sock_filter]) -> std::io::Result<()> {
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls with a filter that lives until they return.
    let ok = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const _,
            ) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn tempdir(tag: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fwlog-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
