//! What this kernel offers fwlog, found by asking it (creating a map, loading a tiny program),
//! not by reading its version: distributions backport features, and configurations leave
//! them out.

use std::io;

use anyhow::{Context as _, Result};
use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{is_helper_supported, is_map_supported, is_program_supported, BpfHelper},
};

/// The BPF ring buffer every event goes through (Linux 5.8).
pub fn ring_buffer() -> Result<bool> {
    is_map_supported(MapType::RingBuf).context("asking the kernel for BPF ring buffers")
}

/// Arrays of maps (Linux 4.12), which hold each CPU's ring buffer of verdicts.
pub fn map_in_map() -> Result<bool> {
    is_map_supported(MapType::ArrayOfMaps).context("asking the kernel for BPF arrays of maps")
}

/// `bpf_ktime_get_boot_ns` (Linux 5.8) for the programs of `program_type`: every record's
/// timestamp.
pub fn boot_clock(program_type: ProgramType) -> Result<bool> {
    is_helper_supported(program_type, BpfHelper::BPF_FUNC_ktime_get_boot_ns)
        .context("asking the kernel for bpf_ktime_get_boot_ns")
}

/// The cgroup socket-address hooks and the helpers they use to name the process (program type
/// from Linux 4.17; pid, comm and cgroup there from 5.7).
pub fn process_hooks() -> Result<bool> {
    if !is_program_supported(ProgramType::CgroupSockAddr)
        .context("asking the kernel for cgroup socket-address programs")?
    {
        return Ok(false);
    }
    for helper in [
        BpfHelper::BPF_FUNC_get_current_pid_tgid,
        BpfHelper::BPF_FUNC_get_current_comm,
        BpfHelper::BPF_FUNC_get_current_cgroup_id,
        BpfHelper::BPF_FUNC_get_socket_cookie,
    ] {
        if !is_helper_supported(ProgramType::CgroupSockAddr, helper)
            .with_context(|| format!("asking the kernel for {helper:?} in cgroup hooks"))?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The atomic fetch-and-or instruction the flow programs use to mark a flow's flags and its
/// end exactly once (BPF_ATOMIC with BPF_FETCH, Linux 5.12): a five-instruction socket filter
/// that ORs into a stack slot. aya has no probe for instructions, so this one is hand-made.
pub fn atomic_fetch_or() -> Result<bool> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    // include/uapi/linux/bpf.h, bpf_common.h
    const ST_MEM_DW: u8 = 0x7a; // BPF_ST | BPF_MEM | BPF_DW
    const STX_ATOMIC_DW: u8 = 0xdb; // BPF_STX | BPF_ATOMIC | BPF_DW
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    const FETCH_OR: i32 = 0x40 | 0x01; // BPF_OR | BPF_FETCH
    const FP: u8 = 10;

    #[repr(C)]
    struct Insn {
        code: u8,
        /// dst in the low nibble, src in the high one.
        regs: u8,
        off: i16,
        imm: i32,
    }
    /// The head of `union bpf_attr` for BPF_PROG_LOAD: the kernel zero-fills what is not
    /// passed (kernel/bpf/syscall.c, bpf_check_uarg_tail_zero).
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
    }
    let insns = [
        // *(u64 *)(r10 - 8) = 0
        Insn {
            code: ST_MEM_DW,
            regs: FP,
            off: -8,
            imm: 0,
        },
        // r1 = 1
        Insn {
            code: MOV64_K,
            regs: 1,
            off: 0,
            imm: 1,
        },
        // r1 = atomic_fetch_or((u64 *)(r10 - 8), r1)
        Insn {
            code: STX_ATOMIC_DW,
            regs: FP | (1 << 4),
            off: -8,
            imm: FETCH_OR,
        },
        // r0 = 0; exit
        Insn {
            code: MOV64_K,
            regs: 0,
            off: 0,
            imm: 0,
        },
        Insn {
            code: EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let license = c"GPL";
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
    };
    // SAFETY: `attr` and the instructions and licence it points to outlive the call; the
    // kernel reads `size_of::<ProgLoad>()` bytes of it and writes nothing back.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the fd the kernel just returned, owned by nobody else.
        unsafe { libc::close(fd as libc::c_int) };
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // The verifier refuses an instruction it does not know.
        Some(libc::EINVAL) => Ok(false),
        _ => Err(error).context("asking the kernel for BPF atomic instructions"),
    }
}
