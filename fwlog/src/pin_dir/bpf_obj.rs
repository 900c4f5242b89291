//! Opening any pinned BPF object (program, map or link) and reading what the kernel says about
//! an open one in `/proc/self/fdinfo`. aya 0.14 opens pinned programs and maps but not links,
//! and shows neither a namespace link's namespace nor an object's memory, which fdinfo has.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use aya_obj::generated::{bpf_attr, bpf_cmd};

/// `bpf(BPF_OBJ_GET)`: a new file descriptor for the object pinned at `path`.
pub fn open(path: &Path) -> io::Result<OwnedFd> {
    let pathname = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: bpf_attr is a plain C union of integers; all zeroes is its "no options" value.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_4.pathname = pathname.as_ptr() as u64;
    // SAFETY: `attr` and the path it points to outlive the call; the kernel reads `size_of`
    // bytes of `attr` and checks that the fields it does not know are zero.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET as libc::c_long,
            &attr as *const bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf() returned no descriptor"))?;
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The number fdinfo shows for `key` (`memlock`, `netns_ino`, …) of an open BPF object.
pub fn fdinfo(fd: BorrowedFd<'_>, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    fdinfo_value(&text, key)
}

fn fdinfo_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_fdinfo_fields() {
        let link = "pos:\t0\nflags:\t02000000\nmnt_id:\t15\nino:\t2089\nlink_type:\tnetns\n\
                    link_id:\t12\nprog_tag:\t0d7a4a0e2b4e1a62\nprog_id:\t58\n\
                    netns_ino:\t4026532289\nattach_type:\t36\n";
        assert_eq!(super::fdinfo_value(link, "netns_ino"), Some(4_026_532_289));
        assert_eq!(super::fdinfo_value(link, "memlock"), None);
        let map = "map_type:\t27\nmemlock:\t16846848\nmap_id:\t7\n";
        assert_eq!(super::fdinfo_value(map, "memlock"), Some(16_846_848));
    }
}
