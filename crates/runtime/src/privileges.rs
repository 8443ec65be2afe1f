//! Identity and capabilities of the container's process.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use rustix::thread::{Gid, Uid};

use crate::user::ExecUser;

type Result<T> = std::result::Result<T, String>;

fn to_set(caps: &Option<Capabilities>) -> CapsHashSet {
    caps.iter()
        .flatten()
        .filter_map(|c| {
            // oci-spec displays `CHOWN`; the caps crate parses `CAP_CHOWN`.
            let name = c.to_string();
            let name = if name.starts_with("CAP_") {
                name
            } else {
                format!("CAP_{name}")
            };
            Capability::from_str(&name).ok()
        })
        .collect()
}

/// Drops the bounding set, switches to `user` keeping the capabilities the spec grants, and
/// sets the effective, permitted, inheritable and ambient sets exactly.
pub(crate) fn apply(user: &ExecUser, caps: Option<&LinuxCapabilities>) -> Result<()> {
    let all = caps::all();
    // A capability this process does not have (the host may run berth with a reduced
    // bounding set) cannot be granted; --privileged means "all we have", as on such hosts.
    let have =
        caps::read(None, CapSet::Permitted).map_err(|e| format!("read capabilities: {e}"))?;
    let (bounding, effective, permitted, inheritable, ambient) = match caps {
        Some(c) => (
            to_set(c.bounding()),
            to_set(c.effective()),
            to_set(c.permitted()),
            to_set(c.inheritable()),
            to_set(c.ambient()),
        ),
        None => Default::default(),
    };
    let only_held =
        |set: CapsHashSet| -> CapsHashSet { set.intersection(&have).copied().collect() };
    let (bounding, effective, permitted, inheritable, ambient) = (
        only_held(bounding),
        only_held(effective),
        only_held(permitted),
        only_held(inheritable),
        only_held(ambient),
    );
    for cap in all.difference(&bounding) {
        // A capability the running kernel does not know is not in its bounding set either.
        match caps::drop(None, CapSet::Bounding, *cap) {
            Ok(()) => {}
            Err(e) if caps::runtime::thread_all_supported().contains(cap) => {
                return Err(format!("drop {cap} from the bounding set: {e}"));
            }
            Err(_) => {}
        }
    }
    rustix::thread::set_keep_capabilities(true).map_err(|e| format!("keep capabilities: {e}"))?;
    let groups: Vec<Gid> = user
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    rustix::thread::set_thread_groups(&groups)
        .map_err(|e| format!("setgroups {:?}: {e}", user.additional_gids))?;
    rustix::thread::set_thread_gid(Gid::from_raw(user.gid))
        .map_err(|e| format!("setgid {}: {e}", user.gid))?;
    rustix::thread::set_thread_uid(Uid::from_raw(user.uid))
        .map_err(|e| format!("setuid {}: {e}", user.uid))?;
    rustix::thread::set_keep_capabilities(false).map_err(|e| format!("keep capabilities: {e}"))?;
    // Effective first: it must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, &effective)
        .map_err(|e| format!("set effective capabilities: {e}"))?;
    caps::set(None, CapSet::Permitted, &permitted)
        .map_err(|e| format!("set permitted capabilities: {e}"))?;
    caps::set(None, CapSet::Inheritable, &inheritable)
        .map_err(|e| format!("set inheritable capabilities: {e}"))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("clear ambient capabilities: {e}"))?;
    for cap in ambient {
        caps::raise(None, CapSet::Ambient, cap).map_err(|e| format!("raise ambient {cap}: {e}"))?;
    }
    Ok(())
}
