// Tells the end-to-end tests what this machine can give them, so that what
// it cannot is reported as ignored, never as passed:
//
// - PostgreSQL, as for webhooks-postgres's own tests (`cfg(postgres_server)`,
//   `cfg(postgres_tls)`, `cfg(postgres_binaries)`);
// - `cfg(tmpfs)`: a small file system can be mounted for the disk-full
//   test (root on Linux, with `mount`).
//
// This package is not published: no user's build runs this.

use std::path::Path;

#[path = "webhooks-postgres/build.rs"]
mod postgres;

fn main() {
    postgres::main();
    println!("cargo::rustc-check-cfg=cfg(tmpfs)");
    let root =
        std::process::Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let tmpfs = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|known| known.lines().any(|line| line.trim_end().ends_with("tmpfs")));
    let mount = ["/bin/mount", "/usr/bin/mount"].iter().any(|path| Path::new(path).is_file());
    if root && tmpfs && mount {
        println!("cargo::rustc-cfg=tmpfs");
    }
}
