//! Which machine the lines come from: its name (`host`, Suricata EVE's field; the kernel's host
//! name unless the operator names it) and, when asked, its systemd machine id (`host_id`).

use std::{path::Path, sync::Arc};

use anyhow::{bail, Context as _, Result};

/// Where systemd (and dbus) keep the machine id: 32 lower-case hex digits and a newline
/// (machine-id(5)).
pub const MACHINE_ID_PATH: &str = "/etc/machine-id";
/// Longest host name accepted: a DNS name's 253 characters.
pub const MAX_HOST_NAME: usize = 253;

/// The host every line names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    pub name: Arc<str>,
    pub id: Option<Arc<str>>,
    /// The operator named the host (rather than fwlog asking the kernel).
    pub given: bool,
}

impl HostIdentity {
    /// `name` as given (`--host-name`, `[host] name`), else the kernel's host name; the machine
    /// id from [`MACHINE_ID_PATH`] when `with_id`.
    pub fn resolve(name: Option<&str>, with_id: bool) -> Result<Self> {
        let given = name.is_some();
        let name = match name {
            Some(name) => name.to_string(),
            None => kernel_host_name()?,
        };
        check_host_name(&name).map_err(anyhow::Error::msg)?;
        let id = if with_id {
            Some(read_machine_id(Path::new(MACHINE_ID_PATH))?.into())
        } else {
            None
        };
        Ok(HostIdentity {
            name: name.into(),
            id,
            given,
        })
    }

    /// A fixed identity, as if named by the operator, for tests and golden lines.
    #[cfg(test)]
    pub fn fixed(name: &str, id: Option<&str>) -> Self {
        HostIdentity {
            name: name.into(),
            id: id.map(Into::into),
            given: true,
        }
    }
}

fn kernel_host_name() -> Result<String> {
    let name = nix::unistd::gethostname().context("reading the host name (uname)")?;
    name.into_string().map_err(|raw| {
        anyhow::anyhow!(
            "the host name {raw:?} is not UTF-8: name the host with --host-name or [host] name"
        )
    })
}

/// A host name fwlog will print: 1 to 253 printable characters, no spaces or quotes (it goes
/// into text lines and syslog tags as it is).
pub fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the host name is empty: give one with --host-name or [host] name".into());
    }
    if name.len() > MAX_HOST_NAME {
        return Err(format!(
            "the host name is {} bytes long, more than {MAX_HOST_NAME}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\\'))
    {
        return Err(format!(
            "the host name {name:?} contains {bad:?}: use letters, digits, dots, dashes"
        ));
    }
    Ok(())
}

/// The machine id in `path`, checked: 32 hex digits (machine-id(5)).
pub fn read_machine_id(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the machine id from {} (for host_id; turn it off or run \
             systemd-machine-id-setup)",
            path.display()
        )
    })?;
    let id = text.trim();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "{}: {:?} is not a machine id (32 hex digits, see machine-id(5))",
            path.display(),
            id.chars().take(40).collect::<String>()
        );
    }
    Ok(id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_that_print_safely() {
        assert!(check_host_name("web-1.example.org").is_ok());
        assert!(check_host_name("").is_err());
        assert!(check_host_name("a b").is_err());
        assert!(check_host_name("a\"b").is_err());
        assert!(check_host_name("a\nb").is_err());
        assert!(check_host_name(&"x".repeat(MAX_HOST_NAME + 1)).is_err());
    }

    #[test]
    fn machine_ids_are_checked() {
        let dir = std::env::temp_dir().join(format!("fwlog-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("machine-id");
        std::fs::write(&path, "0123456789ABCDEF0123456789abcdef\n").expect("write");
        assert_eq!(
            read_machine_id(&path).expect("valid"),
            "0123456789abcdef0123456789abcdef"
        );
        std::fs::write(&path, "uninitialized\n").expect("write");
        assert!(read_machine_id(&path).is_err());
        assert!(read_machine_id(&dir.join("absent")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_kernel_host_name_is_used_by_default() {
        let identity = HostIdentity::resolve(None, false).expect("uname works");
        let expected = nix::unistd::gethostname().expect("uname");
        assert_eq!(&*identity.name, expected.to_str().expect("UTF-8"));
        assert_eq!(identity.id, None);
        let named = HostIdentity::resolve(Some("edge-7"), false).expect("valid");
        assert_eq!(&*named.name, "edge-7");
    }
}
