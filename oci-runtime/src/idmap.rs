//! A new user namespace's uid and gid maps: written directly (as root, or one mapping of the
//! caller's own ids after denying `setgroups`) or through the setuid `newuidmap` and
//! `newgidmap` helpers with the caller's subordinate ranges.

use crate::error::{Error, Result};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// How a new user namespace's id maps get written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdMaps {
    /// As root: any maps, written directly.
    Direct,
    /// Not root, one mapping of our own uid and gid: written directly, which the kernel allows
    /// only after `setgroups` is denied in the namespace.
    DirectDenyGroups,
    /// Not root, anything else: the setuid helpers newuidmap and newgidmap, which check the
    /// ranges against /etc/subuid and /etc/subgid.
    Helpers,
}

pub(crate) const NEWUIDMAP: &str = "/usr/bin/newuidmap";
pub(crate) const NEWGIDMAP: &str = "/usr/bin/newgidmap";

pub(crate) fn id_maps(
    spec: &Spec,
) -> (
    Vec<oci_spec::runtime::LinuxIdMapping>,
    Vec<oci_spec::runtime::LinuxIdMapping>,
) {
    let linux = spec.linux().as_ref();
    (
        linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default(),
        linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default(),
    )
}

pub(crate) fn id_maps_method(spec: &Spec) -> Result<IdMaps> {
    let (uids, gids) = id_maps(spec);
    if uids.is_empty() || gids.is_empty() {
        return Err(Error::spec(
            "linux.uidMappings",
            "",
            "a user namespace needs uidMappings and gidMappings",
        ));
    }
    if rustix::process::geteuid().is_root() {
        return Ok(IdMaps::Direct);
    }
    let own = |maps: &[oci_spec::runtime::LinuxIdMapping], id: u32| {
        maps.len() == 1 && maps[0].host_id() == id && maps[0].size() == 1
    };
    if own(&uids, rustix::process::geteuid().as_raw())
        && own(&gids, rustix::process::getegid().as_raw())
    {
        return Ok(IdMaps::DirectDenyGroups);
    }
    if !Path::new(NEWUIDMAP).exists() || !Path::new(NEWGIDMAP).exists() {
        return Err(Error::spec(
            "linux.uidMappings",
            "",
            format!("mapping more than the caller's own uid and gid without root needs {NEWUIDMAP} and {NEWGIDMAP} (Debian package uidmap)"),
        ));
    }
    Ok(IdMaps::Helpers)
}

pub(crate) fn write_id_maps(pid: i32, spec: &Spec, method: IdMaps) -> Result<()> {
    let (uids, gids) = id_maps(spec);
    let w = |file: &str, v: &str| {
        let p = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&p, v).map_err(|e| Error::io("write", p, e))
    };
    let lines = |maps: &[oci_spec::runtime::LinuxIdMapping]| -> String {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    match method {
        IdMaps::Direct => {
            w("uid_map", &lines(&uids))?;
            w("gid_map", &lines(&gids))
        }
        IdMaps::DirectDenyGroups => {
            w("setgroups", "deny")?;
            w("uid_map", &lines(&uids))?;
            w("gid_map", &lines(&gids))
        }
        IdMaps::Helpers => {
            for (helper, maps) in [(NEWUIDMAP, &uids), (NEWGIDMAP, &gids)] {
                let mut cmd = std::process::Command::new(helper);
                cmd.arg(pid.to_string());
                for m in maps.iter() {
                    cmd.arg(m.container_id().to_string())
                        .arg(m.host_id().to_string())
                        .arg(m.size().to_string());
                }
                let out = cmd.output().map_err(|e| Error::io("run", helper, e))?;
                if !out.status.success() {
                    return Err(Error::io(
                        "run",
                        helper,
                        std::io::Error::other(format!(
                            "{}: {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        )),
                    ));
                }
            }
            Ok(())
        }
    }
}
