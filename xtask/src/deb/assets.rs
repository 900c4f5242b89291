//! The package's generated files: man pages (gzipped, as Debian policy wants) and the bash,
//! zsh and fish completions, written by the fwlog binary being packaged.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use flate2::{write::GzEncoder, Compression};

use crate::cmd;

/// Writes `dir/man/*.8.gz` and `dir/completions/{fwlog.bash,_fwlog,fwlog.fish}`, the names
/// `[package.metadata.deb]` lists.
pub fn generate(fwlog: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing the old {}", dir.display()))?;
    }
    let man = dir.join("man");
    let mut pages = cmd::tool(&fwlog.to_string_lossy());
    pages.args(["man", "--out"]).arg(&man);
    cmd::output(&mut pages).context("`fwlog man --out` failed")?;
    for page in roff_pages(&man)? {
        gzip(&page)?;
    }

    let completions = dir.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for (shell, name) in [
        ("bash", "fwlog.bash"),
        ("zsh", "_fwlog"),
        ("fish", "fwlog.fish"),
    ] {
        let script = cmd::output(cmd::tool(&fwlog.to_string_lossy()).args(["completions", shell]))
            .with_context(|| format!("`fwlog completions {shell}` failed"))?;
        let path = completions.join(name);
        fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn roff_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut pages = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry.context("reading the man page directory")?.path();
        if path.extension().is_some_and(|ext| ext == "8") {
            pages.push(path);
        }
    }
    anyhow::ensure!(
        !pages.is_empty(),
        "fwlog man wrote no page into {}",
        dir.display()
    );
    Ok(pages)
}

/// `page` -> `page.gz`, best compression and no name or time in the header (`gzip -9n`), so the
/// package is the same from one build to the next.
fn gzip(page: &Path) -> Result<()> {
    let text = fs::read(page).with_context(|| format!("reading {}", page.display()))?;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(&text)?;
    let gzipped = encoder.finish().context("gzipping a man page")?;
    let mut target = page.as_os_str().to_owned();
    target.push(".gz");
    fs::write(&target, gzipped).with_context(|| format!("writing {}", page.display()))?;
    fs::remove_file(page).with_context(|| format!("removing {}", page.display()))
}
