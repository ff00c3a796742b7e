//! What a customer sees instead of the fleet's own identifiers.
//!
//! Every identifier that could tell one tenant about another (host names, record and
//! action ids, which embed host and VM names, and other tenants' VMs) reaches a
//! customer only as an HMAC-SHA256 of it under one fleet-wide secret, keyed by the
//! viewing customer: stable (the same VM has the same alias on every host and after a
//! migration, because the alias is taken from its uuid), different for every viewer
//! (two customers cannot compare notes), and not reversible by guessing names without
//! the secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The length of the secret, in bytes.
pub const SECRET_LEN: usize = 32;

#[derive(Clone)]
pub struct PublicIds {
    secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for PublicIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicIds { secret: <hidden> }")
    }
}

/// What an identifier names: part of the MAC input, so that a record id and an action
/// id that happen to be equal still get different public ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Record,
    OtherRecord,
    Action,
    Host,
    Neighbour,
    NeighbourOnHost,
}

impl Kind {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Record => b"record",
            Self::OtherRecord => b"other-record",
            Self::Action => b"action",
            Self::Host => b"host",
            Self::Neighbour => b"neighbour",
            Self::NeighbourOnHost => b"neighbour-on-host",
        }
    }
}

impl PublicIds {
    pub fn from_secret(secret: [u8; SECRET_LEN]) -> Self {
        Self { secret }
    }

    fn mac(&self, viewer: &str, kind: Kind, id: &str) -> [u8; 32] {
        // HMAC accepts keys of any length: this cannot fail.
        let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret) else {
            unreachable!("HMAC takes a key of any length")
        };
        for part in [viewer.as_bytes(), kind.tag(), id.as_bytes()] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        m.finalize().into_bytes().into()
    }

    fn token(&self, prefix: &str, viewer: &str, kind: Kind, id: &str, bytes: usize) -> String {
        let mac = self.mac(viewer, kind, id);
        let mut out = String::with_capacity(prefix.len() + 2 * bytes);
        out.push_str(prefix);
        for b in &mac[..bytes] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The id `viewer` knows its own ledger line `record_id` by.
    pub fn record(&self, viewer: &str, record_id: &str) -> String {
        self.token("ln_", viewer, Kind::Record, record_id, 12)
    }

    /// Another customer's line (the other side of an action), named but not findable.
    pub fn other_record(&self, viewer: &str, record_id: &str) -> String {
        self.token("ox_", viewer, Kind::OtherRecord, record_id, 12)
    }

    /// An action as `viewer` sees it (the same action has another id for the neighbour).
    pub fn action(&self, viewer: &str, action_id: &str) -> String {
        self.token("act_", viewer, Kind::Action, action_id, 12)
    }

    /// A host as `viewer` sees it: tells which of its VMs shared a host, nothing more.
    pub fn host(&self, viewer: &str, host: &str) -> String {
        self.token("host_", viewer, Kind::Host, host, 6)
    }

    /// Another customer's VM, from its fleet-wide id (its uuid): the same on every host.
    pub fn neighbour(&self, viewer: &str, vm_id: &str) -> String {
        self.token("#", viewer, Kind::Neighbour, vm_id, 4)
    }

    /// A neighbour known only by a host's own alias for it (a line whose other side
    /// never reached the controller): stable on that host only.
    pub fn neighbour_on_host(&self, viewer: &str, host: &str, host_alias: &str) -> String {
        let id = format!("{host}\u{0}{host_alias}");
        self.token("#", viewer, Kind::NeighbourOnHost, &id, 4)
    }
}

/// The fleet-wide id of a VM: its uuid, or (a VM without one) a hash of its customer
/// and name, which is stable while the VM keeps its name.
pub fn vm_id(uuid: Option<&str>, customer: &str, name: &str) -> String {
    match uuid.filter(|u| !u.is_empty()) {
        Some(u) => u.to_owned(),
        None => {
            use sha2::Digest as _;
            let mut h = Sha256::new();
            h.update(customer.as_bytes());
            h.update([0]);
            h.update(name.as_bytes());
            let d = h.finalize();
            let mut out = String::from("vm-");
            for b in &d[..10] {
                out.push_str(&format!("{b:02x}"));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_viewer_and_differ_between_viewers_and_kinds() {
        let ids = PublicIds::from_secret([7; SECRET_LEN]);
        let a = ids.record("acme", "h1/web/a1/0/charge");
        assert_eq!(a, ids.record("acme", "h1/web/a1/0/charge"));
        assert_ne!(a, ids.record("globex", "h1/web/a1/0/charge"));
        assert_ne!(
            &a[3..],
            &ids.other_record("acme", "h1/web/a1/0/charge")[3..]
        );
        assert_ne!(
            a,
            PublicIds::from_secret([8; SECRET_LEN]).record("acme", "h1/web/a1/0/charge")
        );
        assert!(a.starts_with("ln_") && a.len() == 27 && !a.contains("h1"));
        let n = ids.neighbour("acme", "6f1c");
        assert!(n.starts_with('#') && n.len() == 9, "{n}");
        // Length-prefixed parts: moving a byte from viewer to id changes the MAC.
        assert_ne!(ids.action("ab", "c"), ids.action("a", "bc"));
    }

    #[test]
    fn vm_ids_are_uuids_or_a_hash_of_customer_and_name() {
        assert_eq!(vm_id(Some("u-1"), "acme", "web"), "u-1");
        let a = vm_id(None, "acme", "web");
        assert_eq!(a, vm_id(Some(""), "acme", "web"));
        assert_ne!(a, vm_id(None, "globex", "web"));
        assert!(a.starts_with("vm-") && a.len() == 23);
    }
}
