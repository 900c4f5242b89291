//! An AF_PACKET socket that writes whole Ethernet frames to one interface with `sendmmsg`,
//! bypassing its qdisc: the cheapest sender, so that what a run measures is the receive path.

use std::{
    io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result};

use super::netns::HOST_MAC;

/// Room for the largest frame the bench builds (60 bytes: a UDP datagram of 18 bytes).
pub const FRAME_CAP: usize = 64;

/// An AF_PACKET socket that writes whole Ethernet frames to one interface, bypassing its qdisc.
pub struct PacketSocket {
    fd: OwnedFd,
    to: libc::sockaddr_ll,
}

impl PacketSocket {
    pub fn open(interface: &str) -> Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .with_context(|| format!("no interface {interface} in the peer namespace"))?;
        // Protocol 0: the socket only sends, so the kernel hands it no received frames.
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("opening an AF_PACKET socket");
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: `one` outlives the call and its size is passed along.
        let bypass = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if bypass != 0 {
            return Err(io::Error::last_os_error()).context("setting PACKET_QDISC_BYPASS");
        }
        // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        to.sll_ifindex = i32::try_from(ifindex).context("interface index out of range")?;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&HOST_MAC);
        Ok(PacketSocket { fd, to })
    }

    /// Sends the frames with one sendmmsg; returns how many the kernel took.
    fn send(&self, frames: &[[u8; FRAME_CAP]], lens: &[usize]) -> io::Result<usize> {
        let mut iovecs: Vec<libc::iovec> = frames
            .iter()
            .zip(lens)
            .map(|(frame, &len)| libc::iovec {
                iov_base: frame.as_ptr().cast_mut().cast(),
                iov_len: len,
            })
            .collect();
        let mut messages: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iovec| {
                // SAFETY: mmsghdr is plain old data; all zeroes is a valid value.
                let mut message: libc::mmsghdr = unsafe { zeroed() };
                message.msg_hdr.msg_name = (&self.to as *const libc::sockaddr_ll).cast_mut().cast();
                message.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                message.msg_hdr.msg_iov = iovec;
                message.msg_hdr.msg_iovlen = 1;
                message
            })
            .collect();
        // SAFETY: every message points at `self.to` and at one iovec of `iovecs`, which point
        // into `frames`; all of them outlive the call, and the kernel only reads them.
        let accepted = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                messages.as_mut_ptr(),
                messages.len() as libc::c_uint,
                0,
            )
        };
        if accepted < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(accepted as usize)
    }

    /// Sends every frame, with as few sendmmsg calls as the kernel allows; a frame it refuses
    /// for want of buffers is skipped, as a sender under pressure would. Returns the frames
    /// sent and the frames refused.
    pub fn send_all(&self, frames: &[[u8; FRAME_CAP]], lens: &[usize]) -> Result<(u64, u64)> {
        let count = frames.len().min(lens.len());
        let (mut done, mut sent, mut refused) = (0, 0, 0);
        while done < count {
            match self.send(&frames[done..count], &lens[done..count]) {
                Ok(accepted) => {
                    done += accepted;
                    sent += accepted as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error)
                    if matches!(
                        error.raw_os_error(),
                        Some(libc::ENOBUFS | libc::EAGAIN | libc::ENOMEM)
                    ) =>
                {
                    // The first frame was refused.
                    done += 1;
                    refused += 1;
                }
                Err(error) => return Err(error).context("sendmmsg on the peer's packet socket"),
            }
        }
        Ok((sent, refused))
    }
}
