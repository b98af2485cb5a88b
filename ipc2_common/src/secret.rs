//! The one-time secret a host gives each worker it spawns.
//!
//! The host generates 32 random bytes per spawn, passes them hex-encoded in
//! the worker's environment, and accepts a connection only if its handshake
//! carries a secret it is still waiting for. Comparison is constant-time so a
//! stranger learns nothing from how fast it is refused.

use std::fmt;
use std::io;

use subtle::ConstantTimeEq;

/// Bytes in a secret.
pub const SECRET_LEN: usize = 32;

/// A one-time handshake secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> io::Result<Self> {
        let mut bytes = [0u8; SECRET_LEN];
        let mut filled = 0;
        while filled < SECRET_LEN {
            filled += rustix::rand::getrandom(
                &mut bytes[filled..],
                rustix::rand::GetRandomFlags::empty(),
            )?;
        }
        Ok(Self(bytes))
    }

    /// The secret's bytes, as they travel in the handshake.
    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// Hex encoding, for the worker's environment.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`Secret::to_hex`]'s output.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != SECRET_LEN * 2 {
            return None;
        }
        let mut bytes = [0u8; SECRET_LEN];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// Constant-time comparison: takes as long whichever bytes differ.
    pub fn matches(&self, other: &[u8; SECRET_LEN]) -> bool {
        self.0[..].ct_eq(&other[..]).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_compare() {
        let secret = Secret::generate().unwrap();
        let parsed = Secret::from_hex(&secret.to_hex()).unwrap();
        assert!(secret.matches(parsed.as_bytes()));
        let other = Secret::generate().unwrap();
        assert!(!secret.matches(other.as_bytes()));
        // One differing bit, first or last, is a mismatch.
        for index in [0, SECRET_LEN - 1] {
            let mut near = *secret.as_bytes();
            near[index] ^= 1;
            assert!(!secret.matches(&near));
        }
        assert!(Secret::from_hex("zz").is_none());
    }
}
