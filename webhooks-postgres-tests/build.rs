// Tells the tests whether a PostgreSQL server can be had, so that where
// none can they are reported as ignored rather than passed:
//
// - `cfg(postgres_server)`: WEBHOOKS_POSTGRES_URL names a server, or the
//   machine has PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)
//   for this crate to start one;
// - `cfg(postgres_tls)`: the same, with a CA certificate for the TLS tests
//   (WEBHOOKS_POSTGRES_CA beside the URL, or `openssl` to make one);
// - `cfg(postgres_binaries)`: the server's binaries are there (or can be
//   installed), for the tests that start and stop a server of their own.
//
// The workspace's root package runs it too (as a module of its own build
// script), for its end-to-end tests.

use std::path::Path;

/// What every package install or removal on Debian changes.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

pub fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_server)");
    println!("cargo::rustc-check-cfg=cfg(postgres_tls)");
    println!("cargo::rustc-check-cfg=cfg(postgres_binaries)");
    println!("cargo::rerun-if-env-changed=WEBHOOKS_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=WEBHOOKS_POSTGRES_CA");
    println!("cargo::rerun-if-env-changed=PATH");
    // Installing or removing a Debian package rewrites dpkg's status file:
    // watch that, not a directory (cargo walks a watched directory, and
    // following its links can take it through the whole filesystem). Where
    // there is no such file, the answer stands until `cargo clean`.
    if Path::new(DPKG_STATUS).is_file() {
        println!("cargo::rerun-if-changed={DPKG_STATUS}");
    } else {
        println!("cargo::rerun-if-changed=build.rs");
    }
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| versions.filter_map(Result::ok).any(|v| v.path().join("bin/initdb").is_file()))
        .unwrap_or(false);
    // As root on Debian, the tests install it themselves when missing.
    let root =
        std::process::Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let binaries = installed || (root && Path::new("/usr/bin/apt-get").is_file());
    let (server, tls) = if set("WEBHOOKS_POSTGRES_URL") {
        (true, set("WEBHOOKS_POSTGRES_CA"))
    } else {
        let openssl = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| Path::new(&dir).join("openssl").is_file())
        });
        (binaries, binaries && openssl)
    };
    if binaries {
        println!("cargo::rustc-cfg=postgres_binaries");
    }
    if server {
        println!("cargo::rustc-cfg=postgres_server");
    }
    if tls {
        println!("cargo::rustc-cfg=postgres_tls");
    }
}
