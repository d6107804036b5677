// Tells the tests whether a Chromium binary is there, so that where none is
// the browser tests are reported as ignored rather than passed:
// `cfg(chromium)` when CHROMIUM names an executable file, or when Debian's
// /usr/bin/chromium exists (`.ci/run` installs it).

use std::path::Path;

/// What every package install or removal on Debian changes.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(chromium)");
    println!("cargo::rerun-if-env-changed=CHROMIUM");
    let binary =
        std::env::var_os("CHROMIUM").filter(|path| !path.is_empty()).unwrap_or("/usr/bin/chromium".into());
    // Installing or removing a Debian package rewrites dpkg's status file:
    // watch that, not a directory (cargo walks a watched directory, and the
    // links in /usr/bin lead it through the whole file system). Elsewhere
    // the answer stands until `cargo clean`.
    if Path::new(DPKG_STATUS).is_file() {
        println!("cargo::rerun-if-changed={DPKG_STATUS}");
    } else {
        println!("cargo::rerun-if-changed=build.rs");
    }
    if Path::new(&binary).is_file() {
        println!("cargo::rustc-cfg=chromium");
    }
}
