//! KVM or software emulation for the guests: KVM only where it can run a stock kernel.

use std::{fmt, fs::OpenOptions, path::Path};

/// How qemu runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// qemu's TCG software emulation: always works, many times slower.
    Tcg,
}

/// `--accel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM when /dev/kvm opens and is Intel's or AMD's (kvm_intel, kvm_amd), else software emulation.
    Auto,
    /// KVM, even when it looks unusable.
    Kvm,
    /// Software emulation (TCG), even when KVM would work.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "software emulation (TCG)",
        })
    }
}

/// The kernel modules that make /dev/kvm able to run an unmodified guest kernel. kvm-pvm (a
/// paravirtualised KVM some clouds offer inside their VMs) cannot: stock kernels hang or fail on
/// MSRs there.
const HARDWARE_KVM_MODULES: [&str; 2] = ["kvm_intel", "kvm_amd"];

/// The choice, and why, for the message that names it.
pub fn choose(choice: AccelChoice) -> (Accel, String) {
    match choice {
        AccelChoice::Kvm => (Accel::Kvm, "asked for with --accel kvm".to_owned()),
        AccelChoice::Tcg => (Accel::Tcg, "asked for with --accel tcg".to_owned()),
        AccelChoice::Auto => {
            let opens = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok();
            let loaded = |module: &str| Path::new("/sys/module").join(module).is_dir();
            let hardware: Vec<&str> = HARDWARE_KVM_MODULES
                .into_iter()
                .filter(|module| loaded(module))
                .collect();
            let pvm = loaded("kvm_pvm");
            auto(opens, &hardware, pvm)
        }
    }
}

/// `--accel auto`'s decision from what the host shows.
fn auto(dev_kvm_opens: bool, hardware_modules: &[&str], kvm_pvm: bool) -> (Accel, String) {
    if !dev_kvm_opens {
        return (Accel::Tcg, "/dev/kvm cannot be opened".to_owned());
    }
    match hardware_modules.first() {
        Some(module) => (Accel::Kvm, format!("/dev/kvm is {module}")),
        None if kvm_pvm => (
            Accel::Tcg,
            "/dev/kvm is kvm-pvm, which cannot boot stock kernels".to_owned(),
        ),
        None => (
            Accel::Tcg,
            "neither kvm_intel nor kvm_amd is loaded behind /dev/kvm".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_only_when_it_is_intels_or_amds() {
        assert_eq!(auto(true, &["kvm_intel"], false).0, Accel::Kvm);
        assert_eq!(auto(true, &["kvm_amd"], false).0, Accel::Kvm);
        let (accel, why) = auto(true, &[], true);
        assert_eq!(accel, Accel::Tcg);
        assert!(why.contains("kvm-pvm"), "{why}");
        assert_eq!(auto(true, &[], false).0, Accel::Tcg);
        assert_eq!(auto(false, &["kvm_intel"], false).0, Accel::Tcg);
    }
}
