//! Who this host is: a fresh UUIDv4 per process start (as wasmCloud hosts) and a friendly name.

use uuid::Uuid;

const ADJECTIVES: [&str; 32] = [
    "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring", "eager", "fancy",
    "gentle", "glad", "golden", "happy", "jolly", "keen", "lively", "lucky", "mellow", "nimble", "proud",
    "quick", "quiet", "rapid", "shiny", "silent", "steady", "swift", "tidy", "vivid", "witty",
];

const NOUNS: [&str; 32] = [
    "badger", "bison", "condor", "crane", "dolphin", "falcon", "ferret", "gecko", "heron", "ibis", "jackal",
    "koala", "lemur", "lynx", "marmot", "narwhal", "ocelot", "otter", "panda", "puffin", "quail", "raven",
    "salmon", "seal", "shrike", "tapir", "toucan", "viper", "walrus", "wombat", "yak", "zebra",
];

/// The host's identity for its whole lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// Unique ID (UUIDv4); names the host's NATS subjects.
    pub id: String,
    /// Human-friendly name, `adjective-noun-NNNN`.
    pub friendly_name: String,
}

impl HostIdentity {
    /// A new random identity.
    pub fn generate() -> Self {
        let id = Uuid::new_v4();
        Self {
            id: id.to_string(),
            friendly_name: friendly_name(Uuid::new_v4().as_bytes()),
        }
    }
}

/// `adjective-noun-NNNN` derived from 16 random bytes.
pub fn friendly_name(random: &[u8; 16]) -> String {
    let adjective = ADJECTIVES[random[0] as usize % ADJECTIVES.len()];
    let noun = NOUNS[random[1] as usize % NOUNS.len()];
    let number = u16::from_le_bytes([random[2], random[3]]) % 10_000;
    format!("{adjective}-{noun}-{number:04}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly_names_have_the_documented_shape() {
        let mut bytes = [0u8; 16];
        assert_eq!(friendly_name(&bytes), "amber-badger-0000");
        bytes[0] = 31;
        bytes[1] = 33;
        bytes[2] = 0x0f;
        bytes[3] = 0x27; // 9999
        assert_eq!(friendly_name(&bytes), "witty-bison-9999");
    }

    #[test]
    fn identities_are_uuid_v4_and_distinct() {
        let a = HostIdentity::generate();
        let b = HostIdentity::generate();
        assert_ne!(a.id, b.id);
        let parsed = Uuid::parse_str(&a.id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        let parts: Vec<&str> = a.friendly_name.split('-').collect();
        assert_eq!(parts.len(), 3, "{}", a.friendly_name);
        assert!(ADJECTIVES.contains(&parts[0]) && NOUNS.contains(&parts[1]));
        assert!(parts[2].len() == 4 && parts[2].bytes().all(|b| b.is_ascii_digit()));
    }
}
