// Tells the tests whether a Chromium binary is there, so that where none is
// the browser tests are reported as ignored rather than passed:
// `cfg(chromium)` when CHROMIUM names an executable file, or when Debian's
// /usr/bin/chromium exists (`.ci/run` installs it).

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(chromium)");
    println!("cargo::rerun-if-env-changed=CHROMIUM");
    let binary =
        std::env::var_os("CHROMIUM").filter(|path| !path.is_empty()).unwrap_or("/usr/bin/chromium".into());
    // Installing or removing it changes its directory (watching a missing
    // file would run this script, and rebuild the tests, every time). A
    // directory that is not there is not watched: cargo would walk its
    // nearest parent, up to the whole file system.
    match Path::new(&binary).parent().filter(|dir| dir.is_dir()) {
        Some(dir) => println!("cargo::rerun-if-changed={}", dir.display()),
        None => println!("cargo::rerun-if-changed=build.rs"),
    }
    if Path::new(&binary).is_file() {
        println!("cargo::rustc-cfg=chromium");
    }
}
