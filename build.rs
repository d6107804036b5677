// Tells the end-to-end tests what this machine can give them, so that what
// it cannot is reported as ignored, never as passed:
//
// - PostgreSQL, as for the store's own tests in webhooks-postgres-tests
//   (`cfg(postgres_server)`, `cfg(postgres_tls)`, `cfg(postgres_binaries)`);
// - `cfg(chromium)`: a Chromium binary for the portal's browser test
//   (CHROMIUM names one, or Debian's /usr/bin/chromium is there);
// - `cfg(tmpfs)`: a small file system can be mounted for the disk-full
//   test: as root on Linux, a tmpfs is mounted and unmounted here to see
//   (a container may forbid it).
//
// This package is not published: no user's build runs this.

use std::path::Path;

#[path = "webhooks-postgres-tests/build.rs"]
mod postgres;

fn main() {
    postgres::main();
    println!("cargo::rustc-check-cfg=cfg(chromium)");
    println!("cargo::rerun-if-env-changed=CHROMIUM");
    let chromium =
        std::env::var_os("CHROMIUM").filter(|path| !path.is_empty()).unwrap_or("/usr/bin/chromium".into());
    if Path::new(&chromium).is_file() {
        println!("cargo::rustc-cfg=chromium");
    }
    println!("cargo::rustc-check-cfg=cfg(tmpfs)");
    let root =
        std::process::Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let tmpfs = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|known| known.lines().any(|line| line.trim_end().ends_with("tmpfs")));
    let mount = ["/bin/mount", "/usr/bin/mount"].iter().any(|path| Path::new(path).is_file());
    if root && tmpfs && mount && mounts_a_tmpfs() {
        println!("cargo::rustc-cfg=tmpfs");
    }
}

/// Whether a tmpfs can be mounted here, tried on a directory of its own.
fn mounts_a_tmpfs() -> bool {
    let Some(out) = std::env::var_os("OUT_DIR") else { return false };
    let dir = Path::new(&out).join("tmpfs-probe");
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program).args(args).arg(&dir).status().is_ok_and(|status| status.success())
    };
    let mounted = run("mount", &["-t", "tmpfs", "-o", "size=64k", "tmpfs"]);
    if mounted {
        run("umount", &[]);
    }
    mounted
}
