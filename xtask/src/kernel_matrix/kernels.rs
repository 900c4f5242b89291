//! Debian's kernel images the matrix boots: for each series, the newest `linux-image-*` package
//! the apt archive has (resolved from `apt-cache pkgnames`, never a hard-coded version that the
//! archive may drop), installed when its image or modules are missing.

use std::{fmt, path::PathBuf};

use anyhow::{bail, Context as _, Result};

use super::apt;
use crate::cmd;

/// The Debian kernel flavour for this machine: the matrix boots x86_64 guests only.
const FLAVOUR: &str = "amd64";

/// A kernel series the matrix tests, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Series {
    /// Debian 12's own kernel (packages `linux-image-6.1.0-N-amd64`).
    #[value(name = "6.1")]
    V6_1,
    /// Debian 12's backported 6.12 (packages `linux-image-6.12.N+deb12-amd64`).
    #[value(name = "6.12")]
    V6_12,
}

/// `--kernel`: a series, or every series the matrix knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelChoice {
    /// Debian 12's 6.1.
    #[value(name = "6.1")]
    V6_1,
    /// Debian 12's backported 6.12.
    #[value(name = "6.12")]
    V6_12,
    /// 6.1 and 6.12.
    All,
}

impl Series {
    pub const ALL: [Series; 2] = [Series::V6_1, Series::V6_12];

    /// `6.1`, `6.12`.
    pub fn name(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The series `--kernel` values name, each once, in the order first named.
pub fn expand(choices: &[KernelChoice]) -> Vec<Series> {
    let mut series = Vec::new();
    for choice in choices {
        let named: &[Series] = match choice {
            KernelChoice::V6_1 => &[Series::V6_1],
            KernelChoice::V6_12 => &[Series::V6_12],
            KernelChoice::All => &Series::ALL,
        };
        for one in named {
            if !series.contains(one) {
                series.push(*one);
            }
        }
    }
    series
}

/// A Debian kernel image package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePackage {
    /// `linux-image-6.1.0-57-amd64`.
    pub package: String,
    /// `6.1.0-57-amd64`: `uname -r` of the kernel, and the suffix of its files in /boot.
    pub release: String,
    /// The version's numbers, for ordering: `6.1.0-57` → [6, 1, 0, 57], `6.12.117+deb12` → [6, 12, 117, 12].
    order: Vec<u64>,
}

impl ImagePackage {
    pub fn image(&self) -> PathBuf {
        PathBuf::from(format!("/boot/vmlinuz-{}", self.release))
    }

    pub fn modules(&self) -> PathBuf {
        PathBuf::from(format!("/lib/modules/{}", self.release))
    }

    fn is_installed(&self) -> bool {
        self.image().is_file() && self.modules().is_dir()
    }
}

/// The newest plain image of `series` among package names, one per line (`apt-cache pkgnames`).
/// Plain means the version and the flavour only: not `-dbg`, `-unsigned`, `-cloud-amd64`, `-rt-amd64`.
pub fn newest_image(series: Series, package_names: &str) -> Option<ImagePackage> {
    package_names
        .lines()
        .filter_map(|line| parse_image_package(series, line.trim()))
        .max_by(|a, b| a.order.cmp(&b.order))
}

/// `linux-image-<version>-amd64` whose version is `<series>.N[.N…][-ABI][+debN]`.
fn parse_image_package(series: Series, package: &str) -> Option<ImagePackage> {
    let version = package
        .strip_prefix("linux-image-")?
        .strip_suffix(FLAVOUR)?
        .strip_suffix('-')?;
    let (upstream_and_abi, debian) = match version.split_once('+') {
        Some((before, after)) => (before, Some(after.strip_prefix("deb")?)),
        None => (version, None),
    };
    let (upstream, abi) = match upstream_and_abi.split_once('-') {
        Some((upstream, abi)) => (upstream, Some(abi)),
        None => (upstream_and_abi, None),
    };
    let mut order = Vec::new();
    for part in upstream.split('.') {
        order.push(number(part)?);
    }
    let series_parts = series.name().split('.').map(number);
    if order.len() < 3
        || !series_parts
            .enumerate()
            .all(|(i, part)| part == Some(order[i]))
    {
        return None;
    }
    for part in abi.into_iter().chain(debian) {
        order.push(number(part)?);
    }
    Some(ImagePackage {
        package: package.to_owned(),
        release: format!("{version}-{FLAVOUR}"),
        order,
    })
}

/// A run of ASCII digits (`u64::from_str` would also take a leading `+`).
fn number(part: &str) -> Option<u64> {
    if part.is_empty() || !part.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// The newest image of `series` the apt archive has, installed if it is not yet: resolved again
/// after `apt-get update` before anything is downloaded, so a stale list never picks a version
/// the archive dropped.
pub fn ensure_image(series: Series) -> Result<ImagePackage> {
    if std::env::consts::ARCH != "x86_64" {
        bail!(
            "the kernel matrix boots Debian's amd64 kernels under qemu-system-x86_64; \
             this machine is {}",
            std::env::consts::ARCH
        );
    }
    if let Some(image) = resolve(series)? {
        if image.is_installed() {
            return Ok(image);
        }
    }
    apt::update()?;
    let image = resolve(series)?.with_context(|| {
        format!(
            "the apt archive has no linux-image-{series}…-{FLAVOUR} package: the kernel matrix \
             needs Debian 12's archive (bookworm, bookworm-security and bookworm-updates)"
        )
    })?;
    if !image.is_installed() {
        // No initramfs: virtme-ng boots the guest with one of its own, and
        // update-initramfs would cost a minute per kernel (/etc/kernel/postinst.d/initramfs-tools).
        apt::install(&[&image.package], &[("INITRD", "No")])?;
        if !image.is_installed() {
            bail!(
                "{} is installed but {} or {} is missing; look with `dpkg -L {}`",
                image.package,
                image.image().display(),
                image.modules().display(),
                image.package
            );
        }
    }
    Ok(image)
}

fn resolve(series: Series) -> Result<Option<ImagePackage>> {
    let names = cmd::output(cmd::tool("apt-cache").args(["pkgnames", "linux-image-"]))
        .context("cannot list Debian's kernel packages with apt-cache; is this Debian?")?;
    Ok(newest_image(series, &names))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Package names as `apt-cache pkgnames linux-image-` prints them on Debian 12 (2026-12-01), shuffled.
    const PKGNAMES: &str = "\
linux-image-6.12.117+deb12-amd64-dbg
linux-image-6.1.0-9-amd64
linux-image-6.1.0-57-amd64-unsigned
linux-image-6.12.117+deb12-cloud-amd64
linux-image-6.1.0-57-amd64
linux-image-6.12-amd64
linux-image-6.1.0-56-amd64
linux-image-6.12.9+deb12-amd64
linux-image-6.12.117+deb12-amd64
linux-image-6.12.115+deb12-rt-amd64
linux-image-6.1.0-57-rt-amd64
linux-image-amd64
linux-image-6.12-amd64-signed-template
linux-image-6.12.115+deb12-amd64
linux-image-6.1.0-57-cloud-amd64-dbg
";

    #[test]
    fn the_newest_plain_image_of_each_series_is_chosen() {
        let six_one = newest_image(Series::V6_1, PKGNAMES);
        assert_eq!(
            six_one.as_ref().map(|image| image.package.as_str()),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(
            six_one.as_ref().map(|image| image.release.as_str()),
            Some("6.1.0-57-amd64")
        );
        let six_twelve = newest_image(Series::V6_12, PKGNAMES);
        assert_eq!(
            six_twelve.as_ref().map(|image| image.release.as_str()),
            Some("6.12.117+deb12-amd64")
        );
        assert_eq!(
            six_twelve.map(|image| image.image()),
            Some(PathBuf::from("/boot/vmlinuz-6.12.117+deb12-amd64"))
        );
    }

    #[test]
    fn versions_compare_as_numbers_not_text() {
        let names = "linux-image-6.1.0-9-amd64\nlinux-image-6.1.0-10-amd64\n";
        assert_eq!(
            newest_image(Series::V6_1, names).map(|image| image.package),
            Some("linux-image-6.1.0-10-amd64".to_owned())
        );
    }

    #[test]
    fn one_series_never_takes_anothers_packages() {
        let only_six_twelve = "linux-image-6.12.117+deb12-amd64\nlinux-image-6.10.3-amd64\n";
        assert_eq!(newest_image(Series::V6_1, only_six_twelve), None);
        let only_six_one = "linux-image-6.1.0-57-amd64\n";
        assert_eq!(newest_image(Series::V6_12, only_six_one), None);
    }

    #[test]
    fn meta_packages_and_other_flavours_are_not_images() {
        for name in [
            "linux-image-amd64",
            "linux-image-6.12-amd64",
            "linux-image-6.1.0-57-amd64-dbg",
            "linux-image-6.1.0-57-cloud-amd64",
            "linux-image-6.12.117+deb12-rt-amd64",
            "linux-image-6.12.117+bpo-amd64",
            "linux-image-6.1.0-+57-amd64",
        ] {
            assert_eq!(newest_image(Series::V6_1, name), None, "{name}");
            assert_eq!(newest_image(Series::V6_12, name), None, "{name}");
        }
    }

    #[test]
    fn all_means_every_series_once() {
        assert_eq!(
            expand(&[KernelChoice::V6_12, KernelChoice::All]),
            [Series::V6_12, Series::V6_1]
        );
        assert_eq!(expand(&[KernelChoice::V6_1]), [Series::V6_1]);
    }
}
